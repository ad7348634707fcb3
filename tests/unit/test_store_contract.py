"""Store contract: every backend must pass this suite (SQLite on a tmp file, PostgreSQL).

A new backend adds one factory to BACKENDS. Error cases compare the whole
database dump before and after: a failed call must change nothing.
PostgreSQL runs on the throwaway cluster of tests/pg.py (fixture `pg_url`:
a fresh database per test), each backend with and without its cache.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pbx.errors import ConflictError, InputError, NotFoundError
from pbx.records import Attempt, CallRecord, Disposition
from pbx.store import (
    Binding,
    Block,
    Destination,
    Extension,
    OutboxItem,
    Source,
    Store,
    TrackingNumber,
    Trunk,
    Visit,
)
from pbx.store.connect import open_store
from pbx.store.postgres.store import open_postgres

Factory = Callable[[Any], Awaitable[Store]]  # a tmp dir (SQLite) or a database URL


async def _sqlite(tmp_path: Path) -> Store:
    return await open_store(tmp_path / "db" / "pbx.sqlite3")


async def _sqlite_uncached(tmp_path: Path) -> Store:
    return await open_store(tmp_path / "db" / "pbx.sqlite3", cache=False)


async def _postgres(url: str) -> Store:
    return await open_postgres(url)


async def _postgres_uncached(url: str) -> Store:
    return await open_postgres(url, cache=False)


BACKENDS: dict[str, Factory] = {
    "sqlite": _sqlite,
    "sqlite-uncached": _sqlite_uncached,
    "postgres": _postgres,
    "postgres-uncached": _postgres_uncached,
}

NUM = "+12125550123"
NUM2 = "+13125550150"
CALLER = "+14155550102"
T0 = "2024-05-01T10:00:00.000000Z"
T1 = "2024-05-01T10:00:05.000000Z"
T2 = "2024-05-01T10:01:00.000000Z"
T3 = "2024-05-02T09:00:00.000000Z"


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    where = request.getfixturevalue("pg_url") if request.param.startswith("postgres") else tmp_path
    opened = await BACKENDS[request.param](where)
    yield opened
    await opened.close()


async def seed(store: Store) -> None:
    await store.trunks.add(Trunk(name="carrier", host="192.0.2.10", username="u", password="p"))
    await store.destinations.add(Destination(name="sales", target="+14155550101", kind="number"))
    await store.destinations.add(
        Destination(name="support", target="sip:support@192.0.2.20:5070", kind="sip")
    )
    await store.destinations.add(Destination(name="night", target="+14155550109", kind="number"))
    await store.sources.add(Source(name="google", tag="ppc", cost_per_call_cents=1250))
    await store.numbers.add(
        TrackingNumber(
            number=NUM,
            source="google",
            destinations=("sales", "support"),
            after_hours=("night",),
            trunk="carrier",
            strategy="round-robin",
        )
    )


async def unchanged(store: Store, exc: type[Exception], action: Awaitable[Any]) -> str:
    """Run `action`, expect `exc`, and check the database is byte-identical."""
    before = await store.dump()
    with pytest.raises(exc) as info:
        await action
    assert await store.dump() == before
    message = str(info.value)
    assert message
    assert "\n" not in message
    return message


def call(call_id: str, **kw: Any) -> CallRecord:
    base: dict[str, Any] = {
        "id": call_id,
        "inbound_call_id": f"in-{call_id}@192.0.2.10",
        "started_at": T0,
        "caller": CALLER,
        "tracking_number": NUM,
        "source": "google",
    }
    return CallRecord(**(base | kw))


# --- trunks -------------------------------------------------------------------


async def test_trunk_add_get_list(store: Store) -> None:
    added = await store.trunks.add(Trunk(name="carrier", host="192.0.2.10", register=True))
    assert added.id > 0
    assert added.allow == ("192.0.2.10/32",)
    assert added.register is True
    assert await store.trunks.get("carrier") == added
    assert await store.trunks.get(added.id) == added
    assert await store.trunks.get("nope") is None
    other = await store.trunks.add(
        Trunk(name="b", host="sip.example.net", allow=("198.51.100.0/24", "192.0.2.7/32"))
    )
    assert other.allow == ("198.51.100.0/24", "192.0.2.7/32")
    assert [t.name for t in await store.trunks.list()] == ["b", "carrier"]


async def test_trunk_default_allow(store: Store) -> None:
    v6 = await store.trunks.add(Trunk(name="v6", host="2001:db8::1"))
    assert v6.allow == ("2001:db8::1/128",)
    named = await store.trunks.add(Trunk(name="named", host="sip.example.net"))
    assert named.allow == ()


async def test_trunk_duplicate_is_conflict(store: Store) -> None:
    await store.trunks.add(Trunk(name="carrier", host="192.0.2.10"))
    msg = await unchanged(
        store, ConflictError, store.trunks.add(Trunk(name="carrier", host="192.0.2.11"))
    )
    assert "carrier" in msg


async def test_trunk_bad_transport_is_input_error(store: Store) -> None:
    bad = Trunk(name="x", host="192.0.2.10", transport="sctp")  # type: ignore[arg-type]
    await unchanged(store, InputError, store.trunks.add(bad))


async def test_trunk_tls_with_ca_round_trips(store: Store) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    added = await store.trunks.add(
        Trunk(name="secure", host="192.0.2.10", port=5061, transport="tls", tls_ca=pem)
    )
    assert (added.transport, added.tls_ca) == ("tls", pem)
    assert "BEGIN" not in repr(added)  # long, and not worth a repr
    updated = await store.trunks.update("secure", tls_ca="", transport="tcp")
    assert (updated.transport, updated.tls_ca) == ("tcp", "")
    assert (await store.trunks.list())[0] == updated


async def test_trunk_update(store: Store) -> None:
    await store.trunks.add(Trunk(name="carrier", host="192.0.2.10"))
    updated = await store.trunks.update("carrier", port=5080, allow=("203.0.113.0/24",))
    assert (updated.port, updated.allow) == (5080, ("203.0.113.0/24",))
    renamed = await store.trunks.update("carrier", name="main")
    assert renamed.allow == ("203.0.113.0/24",)
    assert await store.trunks.get("carrier") is None
    await store.trunks.add(Trunk(name="other", host="192.0.2.11"))
    await unchanged(store, ConflictError, store.trunks.update("main", name="other"))
    await unchanged(store, InputError, store.trunks.update("main", colour="red"))
    await unchanged(store, InputError, store.trunks.update("main", id=7))
    await unchanged(store, NotFoundError, store.trunks.update("ghost", port=1))


async def test_trunk_remove_in_use(store: Store) -> None:
    await seed(store)
    msg = await unchanged(store, ConflictError, store.trunks.remove("carrier"))
    assert NUM in msg
    assert "use --force to detach them" in msg  # the CLI flag, on every backend
    await store.trunks.remove("carrier", force=True)
    assert await store.trunks.get("carrier") is None
    number = await store.numbers.get(NUM)
    assert number is not None
    assert number.trunk is None
    await unchanged(store, NotFoundError, store.trunks.remove("carrier"))


# --- destinations ---------------------------------------------------------------


async def test_destination_crud(store: Store) -> None:
    d = await store.destinations.add(
        Destination(name="sales", target="+14155550101", kind="number")
    )
    assert await store.destinations.get("sales") == d
    assert await store.destinations.get(d.id) == d
    await unchanged(
        store,
        ConflictError,
        store.destinations.add(Destination(name="sales", target="sip:a@192.0.2.1", kind="sip")),
    )
    moved = await store.destinations.update("sales", target="sip:a@192.0.2.1", kind="sip")
    assert (moved.target, moved.kind) == ("sip:a@192.0.2.1", "sip")
    await unchanged(store, InputError, store.destinations.update("sales", kind="fax"))
    assert [x.name for x in await store.destinations.list()] == ["sales"]
    await store.destinations.remove("sales")
    assert await store.destinations.list() == []
    await unchanged(store, NotFoundError, store.destinations.remove("sales"))


async def test_destination_remove_in_use(store: Store) -> None:
    await seed(store)
    msg = await unchanged(store, ConflictError, store.destinations.remove("sales"))
    assert "use --force to drop it from them" in msg
    assert "sales" in msg
    assert NUM in msg
    await unchanged(store, ConflictError, store.destinations.remove("night"))
    await store.destinations.remove("sales", force=True)
    await store.destinations.remove("night", force=True)
    number = await store.numbers.get(NUM)
    assert number is not None
    assert (number.destinations, number.after_hours) == (("support",), ())


# --- sources --------------------------------------------------------------------


async def test_source_crud(store: Store) -> None:
    s = await store.sources.add(
        Source(name="tv", onsite=False, cost_per_call_cents=500, ga_measurement_id="G-1")
    )
    await store.sources.add(Source(name="web", onsite=True, position=1, referrer="google\\."))
    await store.sources.add(Source(name="aaa", onsite=True, position=2))
    assert await store.sources.get("tv") == s
    assert s.cost_per_call_cents == 500
    assert s.ga_measurement_id == "G-1"
    assert [x.name for x in await store.sources.list()] == ["tv", "web", "aaa"]
    updated = await store.sources.update("web", last_touch=True, tag="organic")
    assert updated.last_touch is True
    assert updated.tag == "organic"
    await unchanged(store, ConflictError, store.sources.add(Source(name="tv")))
    await unchanged(store, InputError, store.sources.update("tv", monthly_budget_cents=-5))
    await unchanged(store, ConflictError, store.sources.update("tv", name="web"))
    await store.sources.remove("aaa")
    assert await store.sources.get("aaa") is None
    await unchanged(store, NotFoundError, store.sources.remove("aaa"))


async def test_source_remove_with_numbers(store: Store) -> None:
    await seed(store)
    msg = await unchanged(store, ConflictError, store.sources.remove("google"))
    assert NUM in msg


# --- numbers ----------------------------------------------------------------------


async def test_number_add_get(store: Store) -> None:
    await seed(store)
    n = await store.numbers.get(NUM)
    assert n is not None
    assert n.source == "google"
    assert n.trunk == "carrier"
    assert n.destinations == ("sales", "support")
    assert n.after_hours == ("night",)
    assert (n.strategy, n.ring_timeout, n.rr_cursor) == ("round-robin", 20, 0)
    assert await store.numbers.get(n.id) == n
    assert await store.numbers.get(NUM2) is None


@pytest.mark.parametrize(
    ("changes", "exc"),
    [
        ({"number": NUM}, ConflictError),
        ({"source": "nope"}, NotFoundError),
        ({"destinations": ("sales", "ghost")}, NotFoundError),
        ({"after_hours": ("ghost",)}, NotFoundError),
        ({"trunk": "ghost"}, NotFoundError),
        ({"destinations": ("sales", "sales")}, InputError),
        ({"strategy": "random"}, InputError),
        ({"ring_timeout": 0}, InputError),
    ],
)
async def test_number_add_errors(
    store: Store, changes: dict[str, Any], exc: type[Exception]
) -> None:
    await seed(store)
    base = TrackingNumber(number=NUM2, source="google", destinations=("sales",))
    await unchanged(store, exc, store.numbers.add(replace(base, **changes)))


async def test_number_update_and_list(store: Store) -> None:
    await seed(store)
    await store.sources.add(Source(name="tv"))
    await store.numbers.add(TrackingNumber(number=NUM2, source="tv", destinations=("night",)))
    n = await store.numbers.update(NUM, destinations=("support", "sales"), ring_timeout=30)
    assert n.destinations == ("support", "sales")
    assert n.ring_timeout == 30
    assert n.after_hours == ("night",)
    n = await store.numbers.update(NUM, after_hours=(), trunk=None, source="tv")
    assert (n.after_hours, n.trunk, n.source) == ((), None, "tv")
    assert [x.number for x in await store.numbers.list()] == [NUM, NUM2]
    assert [x.number for x in await store.numbers.list(source="google")] == []
    assert len(await store.numbers.list(source="tv")) == 2
    await unchanged(store, ConflictError, store.numbers.update(NUM, number=NUM2))
    await unchanged(store, NotFoundError, store.numbers.update(NUM, destinations=("ghost",)))
    await unchanged(store, InputError, store.numbers.update(NUM, colour="red"))
    await unchanged(store, NotFoundError, store.numbers.update("+14155550199", ring_timeout=5))


async def test_number_remove(store: Store) -> None:
    await seed(store)
    await store.blocks.add(Block(pattern="+1415", number=NUM))
    await store.numbers.remove(NUM)
    assert await store.numbers.get(NUM) is None
    assert await store.blocks.list() == []
    await store.sources.remove("google")  # no numbers left
    await unchanged(store, NotFoundError, store.numbers.remove(NUM))


async def test_lookup_bundle(store: Store) -> None:
    await seed(store)
    route = await store.numbers.lookup(NUM)
    assert route is not None
    assert route.number == await store.numbers.get(NUM)
    assert route.source == await store.sources.get("google")
    assert [d.target for d in route.destinations] == ["+14155550101", "sip:support@192.0.2.20:5070"]
    assert [d.kind for d in route.destinations] == ["number", "sip"]
    assert [d.name for d in route.after_hours] == ["night"]
    assert route.trunk == await store.trunks.get("carrier")
    assert route.trunk is not None
    assert route.trunk.password == "p"
    assert await store.numbers.lookup(NUM2) is None


async def test_lookup_without_trunk_and_disabled(store: Store) -> None:
    await seed(store)
    await store.numbers.update(NUM, trunk=None, enabled=False)
    route = await store.numbers.lookup(NUM)
    assert route is not None
    assert route.trunk is None
    assert route.number.enabled is False


async def test_round_robin_cursor(store: Store) -> None:
    await seed(store)
    [listed] = [n for n in await store.numbers.list(source="google") if n.number == NUM]
    assert listed.rr_cursor == 0  # (a cached backend now holds the source's list)
    assert [await store.numbers.advance_cursor(NUM) for _ in range(3)] == [0, 1, 2]
    got = await asyncio.gather(*(store.numbers.advance_cursor(NUM) for _ in range(20)))
    assert sorted(got) == list(range(3, 23))
    number = await store.numbers.get(NUM)
    assert number is not None
    assert number.rr_cursor == 23
    [listed] = [n for n in await store.numbers.list(source="google") if n.number == NUM]
    assert listed.rr_cursor == 23  # the cached list follows the cursor too
    await unchanged(store, NotFoundError, store.numbers.advance_cursor(NUM2))


# --- calls ----------------------------------------------------------------------


async def test_call_roundtrip(store: Store) -> None:
    record = call(
        "c1",
        attempts=(Attempt("+14155550101", 486, T0, T1, "Busy Here"), Attempt("sip:a@192.0.2.1")),
        caller_name='Ann "A" Smith',
        ring_seconds=4.5,
        packets_in_out=10,
        bytes_out_in=1600,
        utm_source="google",
        gclid="abc",
    )
    await store.calls.insert(record)
    assert await store.calls.get("c1") == record
    assert await store.calls.get("c2") is None
    await unchanged(store, ConflictError, store.calls.insert(record))


async def test_call_update(store: Store) -> None:
    await store.calls.insert(call("c1"))
    answered = call("c1", answered_at=T1, disposition=Disposition.ANSWERED, destination="sales")
    await store.calls.update(answered)
    assert await store.calls.get("c1") == answered
    await unchanged(store, NotFoundError, store.calls.update(call("ghost")))


async def test_call_update_of_changed_fields_only(store: Store) -> None:
    """Given the row as written, only what changed is written; other columns keep the row's."""
    ringing = call("c1")
    await store.calls.insert(ringing)
    await store.calls.touch_media(["c1"], T2)  # written by another writer meanwhile
    answered = replace(
        ringing,
        answered_at=T1,
        disposition=Disposition.ANSWERED,
        destination="sales",
        attempts=(Attempt(target="sales", status=200, dialled="+14155550101"),),
    )
    await store.calls.update(answered, ringing)
    assert await store.calls.get("c1") == answered
    rows = json.loads(await store.dump())["calls"]
    assert [r["media_at"] for r in rows] == [T2]  # not rewritten by the update
    await store.calls.update(answered, answered)  # nothing changed: still a valid write
    assert await store.calls.get("c1") == answered
    await unchanged(store, NotFoundError, store.calls.update(call("ghost"), call("ghost")))


async def test_call_list_filters(store: Store) -> None:
    await store.calls.insert(call("a", started_at=T0))
    await store.calls.insert(call("b", started_at=T2, disposition=Disposition.BUSY))
    await store.calls.insert(call("c", started_at=T3, source="tv", tracking_number=NUM2))
    assert [c.id for c in await store.calls.list()] == ["c", "b", "a"]
    assert [c.id for c in await store.calls.list(since=T2)] == ["c", "b"]
    assert [c.id for c in await store.calls.list(source="google")] == ["b", "a"]
    assert [c.id for c in await store.calls.list(number=NUM2)] == ["c"]
    assert [c.id for c in await store.calls.list(disposition="busy")] == ["b"]
    assert [c.id for c in await store.calls.list(disposition=Disposition.RINGING)] == ["c", "a"]
    assert [c.id for c in await store.calls.list(limit=1)] == ["c"]
    assert [c.id for c in await store.calls.list(since=T0, source="google", limit=1)] == ["b"]


async def test_mark_interrupted(store: Store) -> None:
    await store.calls.insert(call("ringing"))
    await store.calls.insert(call("answered", answered_at=T1, disposition=Disposition.ANSWERED))
    done = call("done", ended_at=T1, disposition=Disposition.BUSY, hangup_by="callee")
    await store.calls.insert(done)
    talked = call("talked", answered_at=T1, ended_at=T2, disposition=Disposition.ANSWERED)
    await store.calls.insert(talked)
    assert await store.calls.mark_interrupted(T3) == 2
    assert await store.calls.get("talked") == talked
    for cid in ("ringing", "answered"):
        got = await store.calls.get(cid)
        assert got is not None
        assert (got.disposition, got.ended_at, got.hangup_by) == (
            Disposition.INTERRUPTED,
            T3,
            "system",
        )
    assert await store.calls.get("done") == done
    assert await store.calls.mark_interrupted(T3) == 0


async def test_interrupted_call_talks_until_its_last_media(store: Store) -> None:
    """touch_media stamps live records only; the sweep turns the stamp into talk time."""
    answered = call("talking", answered_at=T1, disposition=Disposition.ANSWERED)
    await store.calls.insert(answered)
    await store.calls.insert(call("ringing"))
    await store.calls.insert(call("early", answered_at=T2, disposition=Disposition.ANSWERED,
                                  talk_seconds=2.5))  # fmt: skip
    await store.calls.insert(call("more", answered_at=T1, disposition=Disposition.ANSWERED,
                                  talk_seconds=99.0))  # fmt: skip
    done = call("done", answered_at=T1, ended_at=T2, disposition=Disposition.ANSWERED,
                talk_seconds=55.0)  # fmt: skip
    await store.calls.insert(done)
    await store.calls.touch_media([], T2)  # nothing to stamp: no statement, no error
    await store.calls.touch_media(["talking", "ringing", "more", "done", "nobody"], T2)
    await store.calls.touch_media(["early"], T1)  # media before the answer: ignored
    assert await store.calls.get("done") == done  # a finished record is never stamped
    assert await store.calls.mark_interrupted(T3) == 4
    got = {c.id: c for c in await store.calls.list()}
    assert got["talking"].talk_seconds == 55.0  # T1 -> T2, not to the sweep's T3
    assert got["ringing"].talk_seconds == 0.0  # never answered: no talk time
    assert got["early"].talk_seconds == 2.5  # as written
    assert got["more"].talk_seconds == 99.0  # never less than written
    assert got["done"] == done
    assert {c.disposition for i, c in got.items() if i != "done"} == {Disposition.INTERRUPTED}


async def test_talk_time_to_media_keeps_milliseconds(store: Store) -> None:
    """Both backends count to the millisecond (SQLite's julianday() resolution)."""
    start, media = "2024-05-01T10:00:05.000400Z", "2024-05-01T10:01:05.123600Z"
    await store.calls.insert(call("ms", answered_at=start, disposition=Disposition.ANSWERED))
    await store.calls.touch_media(["ms"], media)
    await store.calls.mark_interrupted(T3)
    got = await store.calls.get("ms")
    assert got is not None
    assert got.talk_seconds == 60.124  # 05.000 -> 65.124: each time rounded to the ms


async def test_ids_with_prefix(store: Store) -> None:
    for cid in ("ab-1", "ab_2", "abX3", "ab%4", "b-ab", "AB-5"):
        await store.calls.insert(call(cid))
    assert await store.calls.ids_with_prefix("ab", 10) == ["ab%4", "ab-1", "abX3", "ab_2"]
    assert await store.calls.ids_with_prefix("ab", 2) == ["ab%4", "ab-1"]
    assert await store.calls.ids_with_prefix("ab_", 10) == ["ab_2"]  # `_` is no wildcard
    assert await store.calls.ids_with_prefix("AB", 10) == ["AB-5"]  # case counts
    assert await store.calls.ids_with_prefix("ab-1", 10) == ["ab-1"]
    for odd in ("", "ab%", "a*", "a?", "%", "a b", "ab'", "x" * 65):
        assert await store.calls.ids_with_prefix(odd, 10) == []  # never a pattern


async def test_acquiring_a_node_name_sweeps_its_dead_incarnation(store: Store) -> None:
    """The start-up crash sweep, through the node interface every backend has."""
    await store.calls.insert(call("left", node="n1"))
    lease = await store.nodes.acquire_node("n1", 30, now=T3)
    assert (lease.name, lease.interrupted) == ("n1", 1)
    got = await store.calls.get("left")
    assert got is not None
    assert (got.disposition, got.node) == (Disposition.INTERRUPTED, "n1")
    assert await store.nodes.renew("n1", 30, now=T3) >= T3
    assert await store.nodes.sweep_expired(now=T3) == {}  # n1's lease is live
    assert "n1" in await store.nodes.live(now=T3)
    await store.nodes.release("n1")


def _outbox(kind: str = "webhook") -> OutboxItem:
    payload = json.dumps({"event": "call"})
    return OutboxItem(kind=kind, payload=payload, target_url="https://hooks.example.com/x")  # type: ignore[arg-type]


async def test_finish_writes_row_and_outbox(store: Store) -> None:
    await store.calls.insert(call("c1"))
    final = call("c1", ended_at=T2, disposition=Disposition.NO_ANSWER, hangup_by="system")
    await store.calls.finish(final, [_outbox(), _outbox("ga4")])
    assert await store.calls.get("c1") == final
    due = await store.outbox.due(T3)
    assert sorted(i.kind for i in due) == ["ga4", "webhook"]
    # finish also lands a row that was never inserted (the ringing write failed).
    await store.calls.finish(call("c2", disposition=Disposition.FAILED))
    got = await store.calls.get("c2")
    assert got is not None
    assert got.disposition is Disposition.FAILED


async def test_finish_is_atomic(store: Store) -> None:
    await store.calls.insert(call("c1"))
    final = call("c1", ended_at=T2, disposition=Disposition.BUSY)
    # The second outbox item breaks a constraint: neither the row nor the first item land.
    await unchanged(store, InputError, store.calls.finish(final, [_outbox(), _outbox("smtp")]))
    got = await store.calls.get("c1")
    assert got is not None
    assert got.disposition is Disposition.RINGING
    assert await store.outbox.due(T3) == []


# --- visits ---------------------------------------------------------------------


def visit(vid: str, **kw: Any) -> Visit:
    base: dict[str, Any] = {
        "id": vid,
        "visitor_id": "v-1",
        "started_at": T0,
        "last_seen_at": T0,
        "expires_at": T2,
        "number": NUM,
        "source": "google",
    }
    return Visit(**(base | kw))


async def test_visits(store: Store) -> None:
    a = await store.visits.add(visit("a", lat=37.77, lon=-122.42, utm_campaign="spring"))
    assert await store.visits.get("a") == a
    assert a.fallback is False
    assert a.lat == 37.77
    await store.visits.add(visit("b", visitor_id="v-2", started_at=T1, last_seen_at=T1))
    assert [v.id for v in await store.visits.list()] == ["b", "a"]
    assert [v.id for v in await store.visits.list(limit=1)] == ["b"]
    assert (await store.visits.active(NUM, T0)) == await store.visits.get("b")
    updated = await store.visits.update("a", last_seen_at=T2, expires_at=T3)
    assert updated.last_seen_at == T2
    active = await store.visits.active(NUM, T2)
    assert active is not None
    assert active.id == "a"
    assert await store.visits.active(NUM, T3) is None
    assert await store.visits.active(NUM2, T0) is None
    latest = await store.visits.latest_for_visitor("v-2")
    assert latest is not None
    assert latest.id == "b"
    assert await store.visits.latest_for_visitor("v-9") is None
    await unchanged(store, ConflictError, store.visits.add(visit("a")))
    await unchanged(store, InputError, store.visits.update("a", colour="red"))
    await unchanged(store, NotFoundError, store.visits.update("zz", city="Paris"))


async def test_visits_fallback_holds_nothing_and_held_until(store: Store) -> None:
    await store.visits.add(visit("x", expires_at=T1))
    await store.visits.add(visit("y", visitor_id="v-2", expires_at=T2))
    await store.visits.add(
        visit("z", visitor_id="v-3", last_seen_at=T1, expires_at=T3, fallback=True)
    )
    await store.visits.add(visit("w", visitor_id="v-4", number=NUM2, expires_at=T3, fallback=True))
    active = await store.visits.active(NUM, T0)
    assert active is not None
    assert active.id == "y"  # z is newer but a fallback visit
    assert await store.visits.active(NUM, T2) is None
    assert await store.visits.active(NUM2, T0) is None
    assert await store.visits.held_until([NUM, NUM2, "+14155550101"]) == {NUM: T2}
    assert await store.visits.held_until([]) == {}


async def test_add_holding_takes_the_first_free_candidate(store: Store) -> None:
    free = "+14155550101"
    await store.visits.add(visit("held", expires_at=T2))  # NUM held until T2
    await store.visits.add(visit("fb", visitor_id="v-2", number=NUM2, expires_at=T3,
                                 fallback=True))  # fmt: skip  # a fallback visit holds nothing
    got = await store.visits.add_holding(visit("h1", visitor_id="v-3", number=None),
                                         [NUM, NUM2, free], T1)  # fmt: skip
    assert got is not None
    assert (got.id, got.number, got.fallback) == ("h1", NUM2, False)
    assert await store.visits.get("h1") == got
    got = await store.visits.add_holding(visit("h2", visitor_id="v-4"), [NUM, NUM2, free], T1)
    assert got is not None
    assert got.number == free
    before = await store.dump()
    assert await store.visits.add_holding(visit("h3"), [NUM, NUM2, free], T1) is None
    assert await store.visits.add_holding(visit("h4"), [], T1) is None
    assert await store.dump() == before  # an exhausted pool adds nothing
    got = await store.visits.add_holding(visit("h5"), [NUM, NUM2], T2)  # NUM's hold ended at T2
    assert got is not None
    assert got.number == NUM
    await unchanged(store, ConflictError, store.visits.add_holding(visit("h5"), ["+1"], T1))


async def test_concurrent_holds_never_share_a_number(store: Store) -> None:
    """50 visits at once ask for a pool of 10: ten get one number each, forty get None,
    and each call runs on its own (no lock between the callers' reads and the hold)."""
    pool = [f"+1212555{n:04d}" for n in range(100, 110)]
    held = await store.visits.held_until(pool)  # every caller read the same free pool
    ranked = [n for n in pool if n not in held]

    async def hold(n: int) -> Visit | None:
        return await store.visits.add_holding(visit(f"c{n}", visitor_id=f"visitor{n}",
                                                    number=None), ranked, T1)  # fmt: skip

    got = await asyncio.gather(*(hold(n) for n in range(50)))
    numbers = [v.number for v in got if v is not None]
    assert sorted(numbers) == pool  # every number once
    assert len([v for v in got if v is None]) == 40
    for number in pool:
        active = await store.visits.active(number, T1)
        assert active is not None
        assert active.number == number


# --- outbox ---------------------------------------------------------------------


async def test_outbox_lifecycle(store: Store) -> None:
    now = await store.outbox.add(_outbox())
    later = await store.outbox.add(replace(_outbox(), next_attempt_at=T2))
    assert now.id > 0
    assert now.attempts == 0
    assert now.gave_up is False
    assert await store.outbox.backlog() == 2
    assert [i.id for i in await store.outbox.due(T1)] == [now.id]
    assert [i.id for i in await store.outbox.due(T2)] == [now.id, later.id]
    assert [i.id for i in await store.outbox.due(T2, limit=1)] == [now.id]
    await store.outbox.mark_failed(now.id, T3, "HTTP 500")
    failed = await store.outbox.get(now.id)
    assert failed is not None
    assert (failed.attempts, failed.next_attempt_at, failed.last_error) == (1, T3, "HTTP 500")
    assert [i.id for i in await store.outbox.due(T2)] == [later.id]
    await store.outbox.mark_delivered(later.id, T2)
    delivered = await store.outbox.get(later.id)
    assert delivered is not None
    assert delivered.delivered_at == T2
    await store.outbox.mark_failed(now.id, None, "HTTP 410")
    gone = await store.outbox.get(now.id)
    assert gone is not None
    assert gone.gave_up is True
    assert gone.attempts == 2
    assert await store.outbox.backlog() == 0
    assert await store.outbox.due("9999-01-01T00:00:00.000000Z") == []
    await unchanged(store, NotFoundError, store.outbox.mark_delivered(999, T2))
    await unchanged(store, NotFoundError, store.outbox.mark_failed(999, T2, "x"))
    assert await store.outbox.get(999) is None


# --- blocks and extensions ------------------------------------------------------


async def test_blocks(store: Store) -> None:
    await seed(store)
    g = await store.blocks.add(Block(pattern="+1415555"))
    n = await store.blocks.add(Block(pattern=CALLER, number=NUM))
    assert g.id > 0
    assert n.number == NUM
    assert len(await store.blocks.list()) == 2
    assert await store.blocks.list(number=NUM) == [n]
    await unchanged(store, ConflictError, store.blocks.add(Block(pattern="+1415555")))
    await unchanged(store, NotFoundError, store.blocks.add(Block(pattern="+1", number=NUM2)))
    assert {b.pattern for b in await store.blocks.matching(CALLER, NUM)} == {"+1415555", CALLER}
    assert await store.blocks.matching(CALLER, NUM2) == [g]
    assert await store.blocks.matching("+12125550100", NUM) == []
    await store.blocks.remove("+1415555")
    await unchanged(store, NotFoundError, store.blocks.remove("+1415555"))
    await unchanged(store, NotFoundError, store.blocks.remove(CALLER))  # only per-number exists
    await store.blocks.remove(CALLER, NUM)
    assert await store.blocks.list() == []


async def test_extension_digest_choice(store: Store) -> None:
    ha1 = {"ha1_md5": "a" * 32, "ha1_sha256": "b" * 64, "realm": "pbx"}
    both = await store.extensions.add(Extension(name="desk", **ha1))
    assert both.digest == "both"  # the default: SHA-256 then MD5
    old = await store.extensions.add(Extension(name="old", digest="md5", **ha1))
    assert (await store.extensions.get("old")) == old
    assert old.digest == "md5"
    changed = await store.extensions.update("desk", digest="sha-256")
    assert changed.digest == "sha-256" == (await store.extensions.get(both.id)).digest  # type: ignore[union-attr]
    assert [e.digest for e in await store.extensions.list()] == ["sha-256", "md5"]
    await unchanged(store, InputError, store.extensions.update("desk", digest="sha1"))
    await unchanged(
        store,
        InputError,
        store.extensions.add(Extension(name="x", digest="SHA-256", **ha1)),  # type: ignore[arg-type]
    )


async def test_extensions_and_bindings(store: Store) -> None:
    ext = await store.extensions.add(
        Extension(name="alice", ha1_md5="a" * 32, ha1_sha256="b" * 64, realm="pbx", max_contacts=2)
    )
    assert await store.extensions.get("alice") == ext == await store.extensions.get(ext.id)
    await unchanged(store, ConflictError, store.extensions.add(replace(ext, id=0)))
    await unchanged(store, InputError, store.extensions.update("alice", max_contacts=0))
    assert (await store.extensions.update("alice", max_contacts=3)).max_contacts == 3
    await store.extensions.set_binding(
        Binding(extension="alice", contact="sip:a@127.0.0.1:5062", expires_at=T1)
    )
    await store.extensions.set_binding(
        Binding(
            extension="alice", contact="sip:a@127.0.0.1:5064", expires_at=T3, call_id="x", cseq=2
        )
    )
    await store.extensions.set_binding(
        Binding(extension="alice", contact="sip:a@127.0.0.1:5062", expires_at=T2)
    )
    contacts = await store.extensions.bindings("alice")
    assert [(b.contact, b.expires_at) for b in contacts] == [
        ("sip:a@127.0.0.1:5064", T3),
        ("sip:a@127.0.0.1:5062", T2),
    ]
    assert [b.contact for b in await store.extensions.bindings("alice", now=T2)] == [
        "sip:a@127.0.0.1:5064"
    ]
    await store.extensions.remove_binding("alice", "sip:a@127.0.0.1:5062")
    await unchanged(
        store, NotFoundError, store.extensions.remove_binding("alice", "sip:a@127.0.0.1:5062")
    )
    await unchanged(
        store,
        NotFoundError,
        store.extensions.set_binding(Binding(extension="bob", contact="sip:b@x", expires_at=T1)),
    )
    await store.destinations.add(Destination(name="desk", target="ext:alice", kind="extension"))
    await unchanged(store, ConflictError, store.extensions.remove("alice"))
    await unchanged(store, ConflictError, store.extensions.update("alice", name="alicia"))
    await store.destinations.remove("desk")
    await store.extensions.remove("alice")
    assert await store.extensions.list() == []
    assert await store.extensions.bindings("alice") == []


# --- users, tokens, audit, call log (issue 14) --------------------------------

from pbx.store.base import ApiToken, AuditEntry, CallFilter, User  # noqa: E402


async def test_users_crud(store: Store) -> None:
    user = await store.users.add(
        User(name="ann", role="admin", password_hash="$argon2id$x", created_at=T0)
    )
    assert user.id
    assert await store.users.get("ann") == user
    assert "argon2" not in repr(user)
    await unchanged(store, ConflictError, store.users.add(replace(user, id=0)))
    await unchanged(store, InputError, store.users.add(replace(user, name="bob", role="root")))  # type: ignore[arg-type]
    await unchanged(store, InputError, store.users.update("ann", shoe_size=9))
    await unchanged(store, NotFoundError, store.users.update("bob", role="viewer"))
    assert (await store.users.update("ann", role="viewer")).role == "viewer"
    await store.users.add(User(name="bob", role="viewer", password_hash="h", created_at=T1))
    assert [u.name for u in await store.users.list()] == ["ann", "bob"]
    await store.users.remove("ann")
    await unchanged(store, NotFoundError, store.users.remove("ann"))
    assert await store.users.get("ann") is None


async def test_tokens_lifecycle(store: Store) -> None:
    token = await store.tokens.add(
        ApiToken(name="ci", role="viewer", token_sha256="a" * 64, created_at=T0)
    )
    assert "a" * 64 not in repr(token)
    assert await store.tokens.find("a" * 64) == token == await store.tokens.get("ci")
    assert await store.tokens.find("b" * 64) is None
    await unchanged(
        store, ConflictError, store.tokens.add(replace(token, id=0, token_sha256="b" * 64))
    )
    await store.tokens.touch(token.id, T1)
    assert (await store.tokens.get("ci")).last_used_at == T1  # type: ignore[union-attr]
    revoked = await store.tokens.revoke("ci", T2)
    assert revoked.revoked_at == T2
    await unchanged(store, NotFoundError, store.tokens.revoke("ci", T3))
    again = await store.tokens.add(
        ApiToken(name="ci", role="admin", token_sha256="c" * 64, created_at=T3)
    )
    assert await store.tokens.get("ci") == again  # the active one wins
    assert (await store.tokens.find("a" * 64)).revoked_at == T2  # type: ignore[union-attr]
    assert [(t.name, t.revoked_at) for t in await store.tokens.list()] == [
        ("ci", T2),
        ("ci", None),
    ]


async def test_audit_newest_first_and_paging(store: Store) -> None:
    for i in range(5):
        await store.audit.add(
            AuditEntry(
                at=T0,
                actor="ann",
                action="sources.update",
                subject=f"s{i}",
                detail=json.dumps({"tag": str(i)}),
            )
        )
    rows = await store.audit.list(limit=3)
    assert [r.subject for r in rows] == ["s4", "s3", "s2"]
    older = await store.audit.list(limit=3, before_id=rows[-1].id)
    assert [r.subject for r in older] == ["s1", "s0"]
    assert json.loads(older[0].detail) == {"tag": "1"}


def _stamp(day: int, second: int) -> str:
    return f"2024-05-{day:02d}T10:00:{second:02d}.000000Z"


async def _calls_for_log(store: Store) -> list[CallRecord]:
    made = []
    for i in range(12):
        record = call(
            f"c{i:02d}",
            started_at=_stamp(1 + i % 3, i),
            caller=f"+1415555{i % 2}1{i:02d}",
            source="google" if i % 2 else "tv",
            tracking_number=NUM if i % 4 else NUM2,
            disposition=Disposition.ANSWERED if i % 3 else Disposition.BUSY,
            answered_at=_stamp(1 + i % 3, i + 1) if i % 3 else None,
            ended_at=_stamp(1 + i % 3, i + 30) if i != 11 else None,
        )
        await store.calls.insert(record)
        made.append(record)
    return made


async def test_call_log_keyset_pages_match_a_full_sort(store: Store) -> None:
    made = await _calls_for_log(store)
    expected = sorted(made, key=lambda r: (r.started_at, r.id), reverse=True)
    seen: list[CallRecord] = []
    where = CallFilter()
    while page := await store.call_log.page(where, 5):
        seen += page
        where = CallFilter(before=(page[-1].started_at, page[-1].id))
    assert [r.id for r in seen] == [r.id for r in expected]
    google = await store.call_log.page(CallFilter(source="google", since=_stamp(2, 0)), 50)
    assert {r.id for r in google} == {
        r.id for r in made if r.source == "google" and r.started_at >= _stamp(2, 0)
    }
    prefix = await store.call_log.page(CallFilter(caller_prefix="+14155551"), 50)
    assert {r.id for r in prefix} == {r.id for r in made if r.caller.startswith("+14155551")}
    busy = await store.call_log.page(CallFilter(disposition="busy", until=_stamp(3, 0)), 50)
    assert {r.id for r in busy} == {
        r.id for r in made if r.disposition == "busy" and r.started_at < _stamp(3, 0)
    }
    to_num2 = await store.call_log.page(CallFilter(number=NUM2), 50)
    assert {r.id for r in to_num2} == {r.id for r in made if r.tracking_number == NUM2}


async def test_call_log_counts_facts_and_live(store: Store) -> None:
    made = await _calls_for_log(store)
    calls, answered = await store.call_log.totals(_stamp(1, 0), _stamp(4, 0))
    assert await store.call_log.signature(_stamp(1, 0), _stamp(4, 0)) == (
        calls,
        answered,
        max(r.started_at for r in made),
    )
    assert (calls, answered) == (12, sum(1 for r in made if r.disposition == "answered"))
    per_day = await store.call_log.per_source_per_day("2024-05-01", "2024-05-01")
    day1 = [r for r in made if r.started_at < _stamp(2, 0)]
    assert sum(n for _, _, n, _ in per_day) == len(day1)
    assert sum(a for _, _, _, a in per_day) == sum(1 for r in day1 if r.disposition == "answered")
    assert {(d, s) for d, s, _, _ in per_day} == {("2024-05-01", r.source) for r in day1}
    facts = await store.call_log.facts(_stamp(2, 0), _stamp(3, 0))
    assert sorted(f.started_at for f in facts) == sorted(
        r.started_at for r in made if _stamp(2, 0) <= r.started_at < _stamp(3, 0)
    )
    prior = await store.call_log.prior_callers(_stamp(1, 5), ["+14155550100", "+14155559999"])
    assert prior == {"+14155550100"}
    assert [r.id for r in await store.call_log.live()] == ["c11"]


async def _per_day_from_rows(store: Store) -> list[tuple[str, str | None, int, int]]:
    counts: dict[tuple[str, str | None], list[int]] = {}
    for r in await store.calls.list():
        entry = counts.setdefault((r.started_at[:10], r.source), [0, 0])
        entry[0] += 1
        entry[1] += r.answered_at is not None
    return sorted(((d, s, n, a) for (d, s), (n, a) in counts.items()),
                  key=lambda t: (t[0], t[1] or ""))  # fmt: skip


async def test_per_day_counts_follow_every_write(store: Store) -> None:
    made = await _calls_for_log(store)
    await store.calls.insert(call("anon", started_at=_stamp(2, 59), source=None))
    assert await store.call_log.per_source_per_day("2024-05-01", "2024-05-31") == (
        await _per_day_from_rows(store)
    )
    live = made[11]  # answered, not ended
    await store.calls.update(replace(live, source="tv", answered_at=None))
    await store.calls.finish(replace(live, source="google", answered_at=T1, ended_at=T2))
    await store.calls.update(replace(made[0], started_at=_stamp(4, 0)))  # moves a day
    await store.calls.insert(call("ring", started_at=_stamp(3, 1), disposition=Disposition.RINGING))
    await store.calls.mark_interrupted(T3)
    assert await store.call_log.per_source_per_day("2024-05-01", "2024-05-31") == (
        await _per_day_from_rows(store)
    )
    day2 = await store.call_log.per_source_per_day("2024-05-02", "2024-05-02")
    assert {d for d, _, _, _ in day2} == {"2024-05-02"}
    assert None in {s for _, s, _, _ in day2}


async def test_touch_media_stamps_more_calls_than_one_statement_takes(store: Store) -> None:
    """600 live calls (past SQLite's 500 ids per statement) all get their stamp."""
    ids = [f"live{i:04d}" for i in range(600)]
    for call_id in ids:
        await store.calls.insert(call(call_id, answered_at=T1, disposition=Disposition.ANSWERED))
    await store.calls.touch_media(ids, T2)
    assert await store.calls.mark_interrupted(T3) == 600
    last = await store.calls.get(ids[-1])
    assert last is not None
    assert last.talk_seconds > 0  # talk time up to the stamp: the last id was stamped too
