"""PostgreSQL-specific store behaviour on a real throwaway cluster (tests/pg.py).

Opening and migrations (advisory lock, newer schema refused), connection
errors, the cache seeing a raw SQL edit, outbox claims and the round-robin
cursor across two stores (two nodes), the neutral dump, and the copy from
SQLite (`pbx.store.transfer`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.errors import InputError
from pbx.records import Attempt, CallRecord, Disposition, from_dict
from pbx.store import (
    Binding,
    Block,
    Destination,
    Extension,
    OutboxItem,
    SchemaVersionError,
    Source,
    TrackingNumber,
    Trunk,
    Visit,
)
from pbx.store.base import ApiToken, AuditEntry, CallFilter, User
from pbx.store.connect import open_store
from pbx.store.dump import neutral_json
from pbx.store.postgres.call_log import prefix_bound
from pbx.store.postgres.store import (
    Migration,
    PostgresStore,
    PostgresUnavailableError,
    create_pool,
    load_migrations,
    migrate,
    open_postgres,
)
from pbx.store.transfer import TargetNotEmptyError, copy_sqlite_to
from tests import pg
from tests.unit import test_store_roundtrip as roundtrip_cases  # its hypothesis strategies

_ids = itertools.count()

NUM = "+12125550123"
NUM2 = "+13125550150"
T0 = "2024-05-01T10:00:00.000000Z"
T1 = "2024-05-01T10:00:05.000000Z"
T2 = "2024-05-01T10:01:00.000000Z"
T3 = "2024-05-02T09:00:00.000000Z"


@pytest.fixture
async def two(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database, as two nodes hold it."""
    a = await open_postgres(pg_url, node="node-a")
    b = await open_postgres(pg_url, node="node-b")
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
def empty_url(pg_cluster: pg.Cluster) -> AsyncIterator[str]:
    name = pg_cluster.fresh_db(empty=True)
    yield pg_cluster.url(name)
    pg_cluster.drop_db(name)


async def _versions(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [r[0] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY 1")]
    finally:
        await conn.close()


async def test_open_migrates_an_empty_database_once(empty_url: str) -> None:
    latest = load_migrations()[-1].version
    stores = await asyncio.gather(*(open_postgres(empty_url) for _ in range(3)))
    try:
        assert [await s.schema_version() for s in stores] == [latest] * 3
        await stores[0].trunks.add(Trunk(name="carrier", host="192.0.2.10"))
    finally:
        for s in stores:
            await s.close()
    assert await _versions(empty_url) == list(range(1, latest + 1))
    async with await open_postgres(empty_url) as again:  # reopening is a no-op
        assert [t.name for t in await again.trunks.list()] == ["carrier"]


async def test_newer_schema_is_refused(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("INSERT INTO schema_version (version, name) VALUES (999, 'future')")
        with pytest.raises(SchemaVersionError, match="999"):
            await open_postgres(pg_url)
    finally:
        await conn.execute("DELETE FROM schema_version WHERE version = 999")
        await conn.close()


async def test_a_failed_migration_changes_nothing(empty_url: str) -> None:
    bad = Migration(
        len(load_migrations()) + 1, "9999_bad.sql", "CREATE TABLE half (a int);\nSELECT 1/0;"
    )
    pool = await create_pool(empty_url, 1)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate(pool, [*load_migrations(), bad])
        assert await _versions(empty_url) == [m.version for m in load_migrations()]
        assert await pool.fetchval("SELECT to_regclass('half')") is None
        assert await migrate(pool, load_migrations()) == load_migrations()[-1].version
    finally:
        await pool.close()


async def test_unreachable_server_is_one_line_without_password(pg_cluster: pg.Cluster) -> None:
    port = pg_cluster.port + 1 if pg_cluster.port < 65535 else pg_cluster.port - 1
    url = f"postgresql://pbx:s3cret@127.0.0.1:{port}/pbx"
    with pytest.raises(PostgresUnavailableError) as info:
        await open_postgres(url)
    message = str(info.value)
    assert "\n" not in message
    assert "s3cret" not in message
    assert "pbx:***@127.0.0.1" in message


async def test_tcp_with_the_password_in_the_url(pg_cluster: pg.Cluster, pg_url: str) -> None:
    name = urlsplit(pg_url).path.lstrip("/")
    url = pg_cluster.url(name, tcp=True, password=pg_cluster.password)
    async with await open_postgres(url) as store:
        assert await store.trunks.list() == []
        assert pg_cluster.password not in store.url


async def test_tcp_with_pgpassword_or_pgpass(
    pg_cluster: pg.Cluster, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_cluster.url(urlsplit(pg_url).path.lstrip("/"), tcp=True)
    monkeypatch.setenv("PGPASSWORD", pg_cluster.password)
    async with await open_postgres(url) as store:
        assert await store.trunks.list() == []
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{pg_cluster.port}:*:postgres:{pg_cluster.password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    async with await open_postgres(url) as store:
        assert await store.trunks.list() == []


async def test_a_wrong_password_is_one_line_without_it(
    pg_cluster: pg.Cluster, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    url = pg_cluster.url(urlsplit(pg_url).path.lstrip("/"), tcp=True, password="wrong-secret")
    with pytest.raises(PostgresUnavailableError) as info:
        await open_postgres(url)
    assert "wrong-secret" not in str(info.value)
    assert "password" in str(info.value)
    assert "\n" not in str(info.value)


async def _seed(store: Any) -> None:
    await store.trunks.add(Trunk(name="carrier", host="192.0.2.10", username="u", password="p"))
    await store.destinations.add(Destination(name="sales", target="+14155550101", kind="number"))
    await store.destinations.add(Destination(name="night", target="+14155550109", kind="number"))
    await store.sources.add(Source(name="google", tag="ppc", cost_per_call_cents=1250))
    await store.numbers.add(
        TrackingNumber(
            number=NUM,
            source="google",
            destinations=("sales",),
            after_hours=("night",),
            trunk="carrier",
            strategy="round-robin",
        )
    )


async def test_a_raw_sql_edit_is_seen_by_the_cache(pg_url: str) -> None:
    async with await open_postgres(pg_url) as store:
        await _seed(store)
        route = await store.numbers.lookup(NUM)
        assert route is not None
        assert route.number.enabled
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("UPDATE numbers SET enabled = false WHERE number = $1", NUM)
        finally:
            await conn.close()
        route = await store.numbers.lookup(NUM)
        assert route is not None
        assert not route.number.enabled


async def test_cursor_is_atomic_across_nodes(two: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = two
    await _seed(a)
    got = await asyncio.gather(*(s.numbers.advance_cursor(NUM) for _ in range(15) for s in (a, b)))
    assert sorted(got) == list(range(30))


async def test_tokens_of_one_name_race_across_nodes(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    """Two nodes adding an active token of one name at once: one wins, one ConflictError."""
    tokens = [
        store.tokens.add(ApiToken(name="ci", role="viewer", token_sha256=c * 64, created_at=T0))
        for store, c in zip(two, "ab", strict=True)
    ]
    got = await asyncio.gather(*tokens, return_exceptions=True)
    assert sorted(type(g).__name__ for g in got) == ["ApiToken", "ConflictError"]
    assert len(await two[0].tokens.list()) == 1


async def test_migration_3_counts_the_calls_already_there(empty_url: str) -> None:
    """A schema 2 database with calls: migration 3 fills call_days from them."""
    pool = await create_pool(empty_url, 1)
    try:
        await migrate(pool, load_migrations()[:2])
        # Schema 2's columns only: today's record has fields of later migrations.
        rows = [
            (f"o{i}", f"in{i}@x", started, "+14155550102", NUM, source,
             started if i % 2 else None, "answered" if i % 2 else "ringing")
            for i, (started, source) in enumerate(
                [(T0, "google"), (T1, "google"), (T2, None), (T3, "google"), (T3, "tv")]
            )
        ]  # fmt: skip
        async with pool.acquire() as conn:
            await conn.executemany(
                "INSERT INTO calls (id, inbound_call_id, started_at, caller, tracking_number, "
                "source, answered_at, disposition) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                rows,
            )
        await migrate(pool, load_migrations())
    finally:
        await pool.close()
    async with await open_postgres(empty_url) as store:
        assert await store.call_log.per_source_per_day("2024-05-01", "2024-05-02") == [
            ("2024-05-01", None, 1, 0),
            ("2024-05-01", "google", 2, 1),
            ("2024-05-02", "google", 1, 1),
            ("2024-05-02", "tv", 1, 0),
        ]


def _item(n: int) -> OutboxItem:
    return OutboxItem(
        kind="webhook", payload=json.dumps({"n": n}), target_url="https://h.example/x"
    )


async def test_outbox_claims_are_exclusive_across_nodes(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    items = [await a.outbox.add(_item(n)) for n in range(40)]
    first, second = await asyncio.gather(a.outbox.due(T1, 25), b.outbox.due(T1, 25))
    ids_a, ids_b = {i.id for i in first}, {i.id for i in second}
    assert not ids_a & ids_b  # no item handed to both nodes
    assert ids_a | ids_b == {i.id for i in items}
    assert {i.id for i in await a.outbox.due(T1, 100)} == ids_a  # the claimer sees its own again
    claimed = next(iter(ids_a))
    await a.outbox.mark_failed(claimed, T2, "HTTP 500")  # releases the claim
    assert claimed in {i.id for i in await b.outbox.due(T2, 100)}
    late = "2024-05-01T11:00:00.000000Z"  # after CLAIM_S: a's claims have lapsed
    assert ids_a - {claimed} <= {i.id for i in await b.outbox.due(late, 100)}


async def test_dump_is_neutral_json(pg_url: str) -> None:
    async with await open_postgres(pg_url) as store:
        await _seed(store)
        await store.outbox.add(_item(1))
        await store.outbox.due(T1)  # claims: PostgreSQL-only columns
        text = await store.dump()
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert list(data) == sorted(data)
    assert "schema_version" not in data
    assert "claimed_by" not in data["outbox"][0]
    assert data["trunks"][0]["enabled"] == 1  # booleans in SQLite's 0/1 form
    assert data["numbers"][0]["present_tracking_number"] == 0


async def test_nul_in_text_is_one_line_input_error(pg_url: str) -> None:
    async with await open_postgres(pg_url) as store:
        before = await store.dump()
        with pytest.raises(InputError) as info:
            await store.destinations.add(Destination(name="a\x00b", target="+1", kind="number"))
        assert "\n" not in str(info.value)
        assert await store.dump() == before


# --- call log (pbx/store/postgres/call_log.py) ---------------------------------


@given(st.text(min_size=1), st.text())
def test_prefix_bound_is_exact(prefix: str, other: str) -> None:
    """Every string starting with the prefix lies in [prefix, bound); no other does."""
    bound = prefix_bound(prefix)
    for text in (prefix + other, other, prefix[:-1] + other):
        inside = prefix <= text and (bound is None or text < bound)
        assert inside == text.startswith(prefix), (prefix, text, bound)
    assert bound is None or not any(0xD800 <= ord(c) < 0xE000 for c in bound)


async def test_caller_prefixes_at_the_edges_of_unicode(pg_url: str) -> None:
    callers = ["\ud7ffa", "\ue000b", "\U0010ffff", "\U0010ffffz", "+14155550101"]
    async with await open_postgres(pg_url) as store:
        for i, caller in enumerate(callers):
            await store.calls.insert(
                CallRecord(id=f"e{i}", inbound_call_id=f"in{i}@x", started_at=T0,
                           caller=caller, tracking_number=NUM)
            )  # fmt: skip
        for prefix in ("\ud7ff", "\U0010ffff", "+1415"):
            page = await store.call_log.page(CallFilter(caller_prefix=prefix), 50)
            assert sorted(r.caller for r in page) == sorted(
                c for c in callers if c.startswith(prefix)
            ), prefix
        before = await store.dump()
        with pytest.raises(InputError) as info:
            await store.call_log.page(CallFilter(caller_prefix="+1\x00"), 50)
        assert "\n" not in str(info.value)
        assert await store.dump() == before


async def test_calls_have_the_sqlite_indexes(tmp_path: Path, pg_url: str) -> None:
    """Migration 3 mirrors SQLite's call indexes (PostgreSQL adds only its own two)."""
    path = tmp_path / "pbx.sqlite3"
    await (await open_store(path)).close()
    conn = sqlite3.connect(path)
    try:
        lite = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'calls' "
                "AND sql IS NOT NULL"
            )
        }
    finally:
        conn.close()
    async with await open_postgres(pg_url) as store:
        rows = await store.pool.fetch(
            "SELECT indexname::text AS name FROM pg_indexes WHERE tablename = 'calls'"
        )
    assert {r["name"] for r in rows} - {"calls_pkey", "calls_node_live"} == lite


# --- round trips (property) -----------------------------------------------------


def _has_nul(row: object) -> bool:
    """A NUL in a plain text field (attempts are JSON text, where NUL is escaped)."""
    return any(isinstance(v, str) and "\x00" in v for v in vars_of(row).values())


def vars_of(row: object) -> dict[str, object]:
    return {f.name: getattr(row, f.name) for f in fields(row)}  # type: ignore[arg-type]


async def _roundtrip(url: str, row: CallRecord | Visit) -> tuple[object, str | None]:
    async with await open_postgres(url) as store:
        try:
            if isinstance(row, CallRecord):
                await store.calls.insert(row)
                return await store.calls.get(row.id), None
            await store.visits.add(row)
            return await store.visits.get(row.id), None
        except InputError as exc:
            return None, str(exc)


_PROPERTY = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_PROPERTY
@given(record=roundtrip_cases._record)
def test_call_record_round_trip(pg_url: str, record: CallRecord) -> None:
    """Equal after a round trip; a NUL in text (PostgreSQL refuses it) is a one-line InputError."""
    record = replace(record, id=f"c{next(_ids)}")
    got, error = asyncio.run(_roundtrip(pg_url, record))
    if _has_nul(record):
        assert error is not None
        assert "\n" not in error
    else:
        assert got == record


@_PROPERTY
@given(visit=roundtrip_cases._visit)
def test_visit_round_trip(pg_url: str, visit: Visit) -> None:
    visit = replace(visit, id=f"v{next(_ids)}")
    got, error = asyncio.run(_roundtrip(pg_url, visit))
    if _has_nul(visit):
        assert error is not None
    else:
        assert got == visit


async def test_migration_5_prices_old_calls_and_keeps_both_digests(empty_url: str) -> None:
    """A schema 4 database: old calls get their source's cost (never blocked or rejected
    ones, never over a cost already kept), extensions keep both digests, no media_at."""
    pool = await create_pool(empty_url, 1)
    try:
        await migrate(pool, load_migrations()[:4])
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO sources (name, cost_per_call_cents) VALUES ('google', 1250), "
                "('free', NULL);"
                "INSERT INTO extensions (name, ha1_md5, ha1_sha256, realm) "
                "VALUES ('desk', 'a', 'b', 'pbx')"
            )
            await conn.executemany(
                "INSERT INTO calls (id, inbound_call_id, started_at, caller, tracking_number, "
                "source, disposition, cost_cents) VALUES ($1, $1, $2, '+14155550102', $3, $4, "
                "$5, $6)",
                [("paid", T0, NUM, "google", "answered", None),
                 ("kept", T0, NUM, "google", "busy", 300),
                 ("blocked", T0, NUM, "google", "blocked", None),
                 ("rejected", T0, NUM, "google", "rejected", None),
                 ("free", T0, NUM, "free", "no-answer", None),
                 ("gone", T0, NUM, "deleted", "answered", None),
                 ("none", T0, NUM, None, "failed", None)],
            )  # fmt: skip
        await migrate(pool, load_migrations())
    finally:
        await pool.close()
    async with await open_postgres(empty_url) as store:
        costs = {c.id: c.cost_cents for c in await store.calls.list()}
        assert costs == {"paid": 1250, "kept": 300, "blocked": None, "rejected": None,
                         "free": None, "gone": None, "none": None}  # fmt: skip
        desk = await store.extensions.get("desk")
        assert desk is not None
        assert desk.digest == "both"
        assert {r["media_at"] for r in json.loads(await store.dump())["calls"]} == {None}


_INSTANTS = st.integers(0, 4_102_444_800 * 1_000_000)  # microseconds, 1970..2100


def _iso(micros: int) -> str:
    seconds, frac = divmod(micros, 1_000_000)
    return f"{dt.datetime.fromtimestamp(seconds, dt.UTC):%Y-%m-%dT%H:%M:%S}.{frac:06d}Z"


def _sqlite_talk(answered: str, media: str, talk: float) -> float:
    """SQLite's sweep arithmetic (pbx/store/sqlite/activity.py), on the same values."""
    conn = sqlite3.connect(":memory:")
    try:
        (got,) = conn.execute(
            "SELECT CASE WHEN ?2 > ?1 THEN max(?3, "
            "round((julianday(?2) - julianday(?1)) * 86400.0, 3)) ELSE ?3 END",
            (answered, media, talk),
        ).fetchone()
    finally:
        conn.close()
    return float(got)


async def _pg_talks(url: str, cases: list[tuple[str, str, float]]) -> list[float]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pbx_talk_to_media(a, m, t) AS s FROM unnest($1::text[], $2::text[], "
            "$3::float8[]) WITH ORDINALITY AS c(a, m, t, n) ORDER BY n",
            *(list(col) for col in zip(*cases, strict=True)),
        )
    finally:
        await conn.close()
    return [float(r["s"]) for r in rows]


@_PROPERTY
@given(
    cases=st.lists(
        st.tuples(_INSTANTS, st.integers(-10_000_000, 20_000_000_000), st.sampled_from([0.0, 7.5])),
        min_size=1,
        max_size=20,
    )
)
def test_talk_time_to_media_is_sqlites(pg_url: str, cases: list[tuple[int, int, float]]) -> None:
    """PostgreSQL's pbx_talk_to_media gives SQLite's figure for any pair of record times."""
    texts = [(_iso(a), _iso(max(0, a + d)), talk) for a, d, talk in cases]
    want = [_sqlite_talk(*case) for case in texts]
    assert asyncio.run(_pg_talks(pg_url, texts)) == want


async def test_talk_time_ignores_times_it_cannot_read(pg_url: str) -> None:
    """Not the records' form, or not a date: the seconds as written, the sweep goes on."""
    cases = [
        ("2024-13-01T00:00:00.000000Z", "2024-14-01T00:00:00.000000Z", 3.0),  # no such month
        (T0, "now", 4.0),  # PostgreSQL would read it as the current time
        (T0, "2024-05-01T10:00:09.5", 5.0),  # no zone
        (T0, T1, 1.0),
    ]
    assert await _pg_talks(pg_url, cases) == [3.0, 4.0, 5.0, 5.0]


# --- copy from SQLite -----------------------------------------------------------


def _sqlite_neutral_dump(path: Path) -> str:
    """The neutral dump (pbx.store.dump) read straight from a SQLite file.

    Stands in for the SQLite store's dump() until it emits the same format.
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        names = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        tables = {
            name: [dict(r) for r in conn.execute(f'SELECT * FROM "{name}"')] for (name,) in names
        }
    finally:
        conn.close()
    return neutral_json(tables)


async def _fill(store: Any) -> None:
    await _seed(store)
    await store.trunks.add(Trunk(name="v6", host="2001:db8::1", register=True))
    await store.sources.add(Source(name="tv", onsite=True, position=1, referrer="tv\\."))
    await store.numbers.add(TrackingNumber(number=NUM2, source="tv", destinations=("night",)))
    await store.destinations.remove("sales", force=True)  # ids with a gap
    await store.blocks.add(Block(pattern="+1415"))
    await store.blocks.add(Block(pattern="+14155550102", number=NUM))
    await store.extensions.add(
        Extension(name="alice", ha1_md5="a" * 32, ha1_sha256="b" * 64, realm="pbx")
    )
    await store.extensions.set_binding(
        Binding(extension="alice", contact="sip:a@127.0.0.1:5062", expires_at=T2, cseq=3)
    )
    await store.visits.add(
        Visit(id="v1", visitor_id="x", started_at=T0, last_seen_at=T1, expires_at=T2,
              number=NUM, lat=37.77, lon=-122.42, fallback=True)
    )  # fmt: skip
    record = CallRecord(
        id="c1", inbound_call_id="in@192.0.2.10", started_at=T0, caller="+14155550102",
        tracking_number=NUM, attempts=(Attempt("+14155550101", 486, T0, T1, "Busy"),),
        ring_seconds=4.5, cost_cents=1250,
    )  # fmt: skip
    await store.calls.insert(record)
    final = replace(record, ended_at=T2, disposition=Disposition.BUSY, hangup_by="callee")
    await store.calls.finish(final, [_item(1), replace(_item(2), kind="ga4")])
    await store.outbox.mark_failed(1, None, "HTTP 410")
    await store.numbers.advance_cursor(NUM)
    moved = replace(record, id="c2", inbound_call_id="in2@192.0.2.10", source="tv")
    await store.calls.insert(moved)
    await store.calls.update(replace(moved, started_at=T3))  # leaves a call_days row at 0
    await store.calls.touch_media(["c2"], T3)  # calls.media_at: a column, not a record field
    await store.extensions.add(
        Extension(name="desk", ha1_md5="c" * 32, ha1_sha256="d" * 64, realm="pbx", digest="md5")
    )
    await store.users.add(
        User(name="ann", role="admin", password_hash="$argon2id$h", created_at=T0)
    )
    await store.users.add(User(name="bob", role="viewer", password_hash="h2", created_at=T1))
    await store.users.remove("ann")  # ids with a gap
    token = await store.tokens.add(
        ApiToken(name="ci", role="viewer", token_sha256="a" * 64, created_at=T0)
    )
    await store.tokens.touch(token.id, T1)
    await store.tokens.revoke("ci", T2)
    await store.tokens.add(ApiToken(name="ci", role="admin", token_sha256="b" * 64, created_at=T2))
    await store.audit.add(AuditEntry(at=T0, actor="ann", action="users.add", subject="bob"))


def record_of(dumped: str, call_id: str) -> CallRecord:
    """A call record rebuilt from a dump's `calls` row."""
    row = next(r for r in json.loads(dumped)["calls"] if r["id"] == call_id)
    row["attempts"] = json.loads(row["attempts"])
    return from_dict(row)


async def test_copy_sqlite_to_postgres(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "pbx.sqlite3"
    async with await open_store(path) as source:
        await _fill(source)
    counts = await copy_sqlite_to(path, pg_url)
    assert all(src == dst for _, src, dst in counts)
    assert dict((t, n) for t, n, _ in counts)["calls"] == 2
    async with await open_postgres(pg_url) as target:
        copied = await target.dump()
        assert copied == _sqlite_neutral_dump(path)
        tables = json.loads(copied)
        assert {r["id"]: r["media_at"] for r in tables["calls"]} == {"c1": None, "c2": T3}
        assert {r["name"]: r["digest"] for r in tables["extensions"]} == {
            "alice": "both",
            "desk": "md5",
        }
        assert {"day": "2024-05-01", "source": "tv", "calls": 0, "answered": 0} in (
            json.loads(copied)["call_days"]
        )  # copied as it was, not rebuilt from calls
        # ids were kept and the sequences moved past them
        added = await target.trunks.add(Trunk(name="late", host="192.0.2.99"))
        assert added.id == 3
        assert (await target.outbox.add(_item(9))).id == 3
        user = User(name="cy", role="viewer", password_hash="h3", created_at=T2)
        assert (await target.users.add(user)).id == 3
        entry = await target.audit.add(AuditEntry(at=T2, actor="cy", action="x"))
        assert entry.id == 2
        await target.trunks.remove("late")
        # the call_days triggers are back on after the copy
        await target.calls.insert(replace(record_of(copied, "c2"), id="c3", started_at=T2))
        days = await target.call_log.per_source_per_day("2024-05-01", "2024-05-01")
        assert ("2024-05-01", "tv", 1, 0) in days
        before = await target.dump()
        with pytest.raises(TargetNotEmptyError) as info:
            await copy_sqlite_to(f"sqlite:///{path}", pg_url)
        assert "\n" not in str(info.value)
        assert await target.dump() == before


async def test_same_writes_give_the_same_dump_on_both_backends(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "pbx.sqlite3"
    async with await open_store(path) as source:
        await _fill(source)
    async with await open_postgres(pg_url) as target:
        await _fill(target)
        assert await target.dump() == _sqlite_neutral_dump(path)


async def test_copy_refuses_a_foreign_database_before_writing(
    tmp_path: Path, empty_url: str
) -> None:
    path = tmp_path / "pbx.sqlite3"
    async with await open_store(path) as source:
        await _fill(source)
    conn = await asyncpg.connect(empty_url)
    try:
        await conn.execute("CREATE TABLE inventory (sku text)")
        with pytest.raises(TargetNotEmptyError, match="no pbx store"):
            await copy_sqlite_to(path, empty_url)
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert [t["table_name"] for t in tables] == ["inventory"]
    finally:
        await conn.close()


async def test_copy_refuses_a_missing_source(tmp_path: Path, pg_url: str) -> None:
    with pytest.raises(InputError, match="no SQLite store"):
        await copy_sqlite_to(tmp_path / "nope.sqlite3", pg_url)
