"""SQLite-specific store behaviour: opening, pragmas, migrations, transactions."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import aiosqlite
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.errors import ConflictError, InputError, NotFoundError
from pbx.records import CallRecord, Disposition
from pbx.store import Destination, SchemaVersionError, Trunk
from pbx.store.connect import open_store
from pbx.store.sqlite.db import Statement, Writer, integrity_error, run_batch
from pbx.store.sqlite.store import (
    Migration,
    SqliteStore,
    load_migrations,
    migrate,
    split_statements,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "pbx.sqlite3"


async def _pragma(store: SqliteStore, name: str) -> object:
    async with store._db.read() as tx:
        row = await tx.one(f"PRAGMA {name}")
    assert row is not None
    return row[0]


async def test_open_creates_dirs_and_sets_pragmas(db_path: Path) -> None:
    async with await open_store(db_path) as store:
        assert db_path.exists()  # noqa: ASYNC240 - a one-off check in a test
        assert await _pragma(store, "journal_mode") == "wal"
        assert await _pragma(store, "foreign_keys") == 1
        assert await _pragma(store, "busy_timeout") == 5000
        assert await _pragma(store, "synchronous") == 1  # NORMAL
        assert await store.schema_version() == len(load_migrations())
        assert json.loads(await store.dump())["trunks"] == []  # neutral JSON (issue 11)


async def test_reopen_is_noop_and_keeps_data(db_path: Path) -> None:
    async with await open_store(db_path) as store:
        await store.trunks.add(Trunk(name="carrier", host="192.0.2.10"))
        before = await store.dump()
    async with await open_store(db_path) as store:
        assert await store.dump() == before
        trunk = await store.trunks.get("carrier")
        assert trunk is not None
        assert trunk.allow == ("192.0.2.10/32",)


async def test_newer_schema_is_refused(db_path: Path) -> None:
    async with await open_store(db_path):
        pass
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaVersionError, match="99 is newer"):
        await open_store(db_path)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99


def test_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "0001_initial.sql"


async def test_failed_migration_changes_nothing(tmp_path: Path) -> None:
    good = Migration(1, "0001_a.sql", "CREATE TABLE a (x INTEGER);")
    bad = Migration(2, "0002_b.sql", "CREATE TABLE b (x INTEGER);\nINSERT INTO nowhere VALUES (1);")
    async with aiosqlite.connect(tmp_path / "m.sqlite3", isolation_level=None) as conn:
        assert await migrate(conn, [good]) == 1
        with pytest.raises(sqlite3.OperationalError):
            await migrate(conn, [good, bad])
        assert not conn.in_transaction
        async with conn.execute("PRAGMA user_version") as cur:
            assert (await cur.fetchone()) == (1,)
        async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cur:
            assert [r[0] for r in await cur.fetchall()] == ["a"]
        fixed = Migration(2, "0002_b.sql", "CREATE TABLE b (x INTEGER);")
        assert await migrate(conn, [good, fixed]) == 2
        assert await migrate(conn, [good, fixed]) == 2  # re-run: no-op


async def test_two_openers_of_a_new_file_both_succeed(db_path: Path) -> None:
    first, second = await asyncio.gather(open_store(db_path), open_store(db_path))
    try:
        assert await first.schema_version() == len(load_migrations())
        await first.trunks.add(Trunk(name="carrier", host="192.0.2.10"))
        assert await second.trunks.get("carrier") is not None
    finally:
        await first.close()
        await second.close()


def test_split_statements() -> None:
    sql = "-- head\nCREATE TABLE a (x TEXT DEFAULT ';');\nINSERT INTO a VALUES ('a;b');\n-- tail\n"
    assert split_statements(sql) == [
        "-- head\nCREATE TABLE a (x TEXT DEFAULT ';');",
        "INSERT INTO a VALUES ('a;b');",
    ]
    with pytest.raises(RuntimeError, match="incomplete"):
        split_statements("CREATE TABLE b (x")
    assert len(split_statements(load_migrations()[0].sql)) > 10


async def test_reader_never_sees_an_uncommitted_write(db_path: Path) -> None:
    async with await open_store(db_path) as store:
        inserted, release = asyncio.Event(), asyncio.Event()

        async def writer() -> None:
            async with store._db.write() as tx:
                await tx.insert("INSERT INTO trunks (name, host) VALUES ('ghost', '192.0.2.1')")
                inserted.set()
                await release.wait()
                raise RuntimeError("abandon")

        task = asyncio.create_task(writer())
        await asyncio.wait_for(inserted.wait(), 5)
        reader = asyncio.create_task(store.trunks.list())
        done, _ = await asyncio.wait({reader}, timeout=0.2)
        assert not done  # blocked behind the open transaction
        release.set()
        with pytest.raises(RuntimeError):
            await task
        assert await asyncio.wait_for(reader, 5) == []


async def test_cancelled_write_rolls_back(db_path: Path) -> None:
    async with await open_store(db_path) as store:
        inserted = asyncio.Event()

        async def writer() -> None:
            async with store._db.write() as tx:
                await tx.insert("INSERT INTO trunks (name, host) VALUES ('ghost', '192.0.2.1')")
                inserted.set()
                await asyncio.Event().wait()  # never set: only cancellation ends it

        task = asyncio.create_task(writer())
        await asyncio.wait_for(inserted.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await store.trunks.list() == []
        added = await store.trunks.add(Trunk(name="real", host="192.0.2.2"))
        assert added.name == "real"


async def test_concurrent_writers_stay_consistent(db_path: Path) -> None:
    async with await open_store(db_path) as store:
        names = [f"d{i % 10}" for i in range(40)]  # each name attempted 4 times
        results = await asyncio.gather(
            *(
                store.destinations.add(Destination(name=n, target="+14155550101", kind="number"))
                for n in names
            ),
            *(store.destinations.list() for _ in range(10)),
            return_exceptions=True,
        )
        adds = results[:40]
        assert sum(isinstance(r, Destination) for r in adds) == 10
        assert sum(isinstance(r, ConflictError) for r in adds) == 30
        assert sorted(d.name for d in await store.destinations.list()) == sorted(set(names))
        async with store._db.read() as tx:
            row = await tx.one("PRAGMA integrity_check")
        assert row is not None
        assert row[0] == "ok"


async def test_close_twice_is_harmless(db_path: Path) -> None:
    store = await open_store(db_path)
    await store.close()
    await store.close()


def test_integrity_errors_read_as_one_line() -> None:
    check = integrity_error(sqlite3.IntegrityError("CHECK constraint failed: port > 0"))
    assert type(check) is InputError
    assert str(check) == "invalid value: port > 0 must hold"
    unique = integrity_error(sqlite3.IntegrityError("UNIQUE constraint failed: trunks.name"))
    assert isinstance(unique, ConflictError)
    null = integrity_error(sqlite3.IntegrityError("NOT NULL constraint failed: trunks.host"))
    assert str(null) == "missing value: trunks.host"
    fk = integrity_error(sqlite3.IntegrityError("FOREIGN KEY constraint failed"))
    assert isinstance(fk, ConflictError)


# --- group commit (Db.submit) ---------------------------------------------------


def _record(call_id: str) -> CallRecord:
    return CallRecord(
        id=call_id,
        inbound_call_id=f"in-{call_id}@192.0.2.10",
        started_at="2024-05-01T10:00:00.000000Z",
        caller="+14155550102",
        tracking_number="+12125550123",
        source="google",
    )


async def test_concurrent_call_writes_share_transactions(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "pbx.sqlite3") as store:
        await asyncio.gather(*(store.calls.insert(_record(f"c{i}")) for i in range(50)))
        assert store._db.batches < 50  # grouped: fewer transactions than writes
        assert len(await store.calls.list()) == 50


async def test_a_failing_unit_fails_only_its_waiter(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "pbx.sqlite3") as store:
        await store.calls.insert(_record("dup"))
        results = await asyncio.gather(
            store.calls.insert(_record("a")),
            store.calls.insert(_record("dup")),
            store.calls.update(_record("missing")),
            store.calls.insert(_record("b")),
            return_exceptions=True,
        )
        assert results[0] is None
        assert isinstance(results[1], ConflictError)
        assert isinstance(results[2], NotFoundError)
        assert results[3] is None
        assert {r.id for r in await store.calls.list()} == {"dup", "a", "b"}


async def test_a_failed_transaction_fails_every_waiter(tmp_path: Path) -> None:
    path = tmp_path / "pbx.sqlite3"
    async with await open_store(path) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("PRAGMA busy_timeout = 0")
        await store._db.conn.execute("PRAGMA busy_timeout = 0")
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            results = await asyncio.gather(
                store.calls.insert(_record("x")),
                store.calls.insert(_record("y")),
                return_exceptions=True,
            )
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
        assert await store.calls.list() == []
        await store.calls.insert(_record("z"))  # the writer recovers
        assert [r.id for r in await store.calls.list()] == ["z"]


async def test_finish_with_previous_rewrites_only_what_changed(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "pbx.sqlite3") as store:
        ringing = _record("c")
        await store.calls.insert(ringing)
        async with store._db.single() as tx:  # a column the final row does not change
            await tx.run("UPDATE calls SET tag = 'kept' WHERE id = 'c'")
        final = replace(ringing, disposition=Disposition.ANSWERED, ended_at="2024-05-01T10:01:00Z")
        await store.calls.finish(final, (), ringing)
        got = await store.calls.get("c")
        assert got == replace(final, tag="kept")  # untouched: not in the SET list
        await store.calls.finish(final, ())  # without previous: the whole row
        assert await store.calls.get("c") == final
        missing = _record("gone")  # no ringing row (never written): inserted whole
        await store.calls.finish(replace(missing, ended_at="2024-05-01T10:01:00Z"), (), missing)
        assert (await store.calls.get("gone")) == replace(missing, ended_at="2024-05-01T10:01:00Z")


async def test_close_waits_for_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / "pbx.sqlite3"
    store = await open_store(path)
    pending = asyncio.ensure_future(store.calls.insert(_record("late")))
    await asyncio.sleep(0)  # queued, not yet committed
    await store.close()
    await pending
    async with await open_store(path) as again:
        assert await again.calls.get("late") is not None


async def test_writer_thread_runs_jobs_in_order_and_answers_each_waiter(tmp_path: Path) -> None:
    writer = await Writer.open(tmp_path / "w.sqlite3")
    try:
        ran: list[int] = []
        abandoned = writer.call(ran.append, 1)
        abandoned.cancel()  # the waiter gave up: the job still runs, in its turn
        assert await writer.call(lambda: len(ran)) == 1
        with pytest.raises(sqlite3.OperationalError):  # the job's error reaches its waiter
            await writer.call(writer._conn.execute, "SELEC 1")
        done = await writer.run([[("CREATE TABLE t (x)", ())], [("INSERT INTO t VALUES (1)", ())]])
        assert [d[0][0] for d in done] == [-1, 1]  # type: ignore[index]
    finally:
        await writer.close()
    assert not writer._thread.is_alive()


# --- run_batch: a batch of one unit skips the savepoint (and, for one statement, BEGIN) ---


def _table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    return conn


def _unit(keys: list[int | None]) -> list[Statement]:
    """Inserts of `keys`; None stands for a statement that fails (NOT NULL)."""
    return [("INSERT INTO t (k, v) VALUES (?, ?)", (k, None if k is None else "x")) for k in keys]


def test_one_statement_alone_runs_in_autocommit_and_answers_its_error() -> None:
    conn = _table()
    assert run_batch(conn, [_unit([1])]) == [[(1, 1)]]
    [failed] = run_batch(conn, [_unit([1])])  # duplicate key
    assert isinstance(failed, sqlite3.IntegrityError)
    assert not conn.in_transaction
    assert conn.execute("SELECT k FROM t").fetchall() == [(1,)]


def test_a_unit_alone_is_undone_whole_when_one_statement_fails() -> None:
    conn = _table()
    [failed] = run_batch(conn, [_unit([1, 2, None])])
    assert isinstance(failed, sqlite3.IntegrityError)
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert run_batch(conn, [_unit([1, 2])]) == [[(1, 1), (1, 2)]]


_KEYS = st.lists(st.one_of(st.none(), st.integers(1, 6)), min_size=1, max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(_KEYS, min_size=1, max_size=6))
def test_units_alone_give_what_one_batch_gives(units: list[list[int | None]]) -> None:
    """The fast path changes the hops, never the answers: per unit, the same
    statement results or the same kind of error, and the same rows at the end."""
    alone, batched = _table(), _table()
    one_by_one = [run_batch(alone, [_unit(keys)])[0] for keys in units]
    together = run_batch(batched, [_unit(keys) for keys in units])

    def shape(result: object) -> object:
        return type(result) if isinstance(result, BaseException) else result

    assert [shape(r) for r in one_by_one] == [shape(r) for r in together]
    rows = "SELECT k, v FROM t ORDER BY k"
    assert alone.execute(rows).fetchall() == batched.execute(rows).fetchall()
