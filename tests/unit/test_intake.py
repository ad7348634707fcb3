"""Admission and route lookup for new INVITEs, on a real SQLite store in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pbx.call.intake import IntakeContext, Refusal, admit
from pbx.call.model import CallSetup
from pbx.records import Disposition
from pbx.rules.routing import parse_schedule
from pbx.sip.peer import Peer
from pbx.store import Block, Destination, Source, Trunk
from pbx.store.base import TrackingNumber
from pbx.store.connect import open_store
from pbx.store.sqlite.store import SqliteStore
from tests.calls_support import CALLER, LOCAL, T0, TRACKING, TRUNK, WALL0, caller_invite

TUESDAY_NIGHT = WALL0  # 2023-11-14T22:13:20Z, a Tuesday
TUESDAY_NOON = WALL0 - (22 * 3600 + 13 * 60 + 20) + 12 * 3600  # 2023-11-14T12:00:00Z
OFFICE_HOURS = parse_schedule("UTC mon-fri 09:00-17:00").to_json()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await open_store(tmp_path / "pbx.sqlite3")
    await s.trunks.add(Trunk(name="carrier", host="192.0.2.10", username="acct", password="s3cret"))
    await s.sources.add(Source(name="google", tag="ppc"))
    await s.destinations.add(Destination(name="sales", target="+14155550150", kind="number"))
    await s.destinations.add(Destination(name="support", target="+12125550111", kind="number"))
    await s.destinations.add(
        Destination(name="desk", target="sip:agent@198.51.100.30:5070", kind="sip")
    )
    await s.destinations.add(Destination(name="night", target="+12125550199", kind="number"))
    await s.numbers.add(
        TrackingNumber(number=TRACKING, source="google", destinations=("sales", "support"))
    )
    yield s
    await s.close()


def ctx(store: SqliteStore, **kw: object) -> IntakeContext:
    return IntakeContext(store, "US", 25.0, LOCAL, **kw)  # type: ignore[arg-type]


async def run(
    store: SqliteStore, *, wall: float = TUESDAY_NIGHT, source: Peer = TRUNK, **invite: object
) -> CallSetup | Refusal:
    return await admit(ctx(store), caller_invite(**invite), source, T0, wall)  # type: ignore[arg-type]


async def test_non_trunk_source_is_refused_403_without_a_record(store: SqliteStore) -> None:
    result = await run(store, source=Peer("udp", "198.51.100.99", 5060))
    assert isinstance(result, Refusal)
    assert result.status == 403
    assert result.record is None


async def test_disabled_trunk_does_not_admit(store: SqliteStore) -> None:
    await store.trunks.update("carrier", enabled=False)
    result = await run(store)
    assert isinstance(result, Refusal)
    assert result.status == 403


async def test_max_forwards_zero_is_refused_483(store: SqliteStore) -> None:
    result = await run(store, max_forwards=0)
    assert isinstance(result, Refusal)
    assert result.status == 483
    assert result.record is None


async def test_unknown_number_is_refused_404_without_a_record(store: SqliteStore) -> None:
    result = await run(store, dialed="+12125550100")
    assert isinstance(result, Refusal)
    assert result.status == 404
    assert result.record is None


async def test_national_form_of_the_dialed_number_is_found(store: SqliteStore) -> None:
    result = await run(store, dialed="4155550101")
    assert isinstance(result, CallSetup)
    assert result.record.tracking_number == TRACKING


async def test_disabled_number_is_refused_480_with_a_rejected_record(store: SqliteStore) -> None:
    await store.numbers.update(TRACKING, enabled=False)
    result = await run(store)
    assert isinstance(result, Refusal)
    assert result.status == 480
    assert result.record is not None
    assert result.record.disposition is Disposition.REJECTED
    assert result.record.sip_status == 480
    assert result.record.is_final
    assert result.record.source == "google"
    assert result.record.caller == CALLER


async def test_blocked_caller_gets_the_block_status_and_a_blocked_record(
    store: SqliteStore,
) -> None:
    await store.blocks.add(Block(pattern=CALLER))
    result = await run(store)
    assert isinstance(result, Refusal)
    assert result.status == 603
    assert result.record is not None
    assert result.record.disposition is Disposition.BLOCKED
    custom = await admit(ctx(store, block_status=486), caller_invite(), TRUNK, T0, WALL0)
    assert isinstance(custom, Refusal)
    assert custom.status == 486


async def test_block_on_another_number_does_not_apply(store: SqliteStore) -> None:
    other = TrackingNumber(number="+12125550100", source="google", destinations=("sales",))
    await store.numbers.add(other)
    await store.blocks.add(Block(pattern=CALLER, number="+12125550100"))
    assert isinstance(await run(store, dialed="+12125550100"), Refusal)
    assert isinstance(await run(store), CallSetup)


async def test_after_hours_without_a_list_is_rejected(store: SqliteStore) -> None:
    await store.numbers.update(TRACKING, hours=OFFICE_HOURS)
    result = await run(store, wall=TUESDAY_NIGHT)
    assert isinstance(result, Refusal)
    assert result.status == 480
    assert result.record is not None
    assert result.record.disposition is Disposition.REJECTED
    open_ = await run(store, wall=TUESDAY_NOON)
    assert isinstance(open_, CallSetup)


async def test_after_hours_list_is_dialed_when_closed(store: SqliteStore) -> None:
    await store.numbers.update(TRACKING, hours=OFFICE_HOURS, after_hours=("night",))
    result = await run(store, wall=TUESDAY_NIGHT)
    assert isinstance(result, CallSetup)
    assert [t.destination for step in result.steps for t in step] == ["night"]


async def test_setup_for_a_sequential_number(store: SqliteStore) -> None:
    result = await run(store, max_forwards=33)
    assert isinstance(result, CallSetup)
    assert [[t.destination for t in step] for step in result.steps] == [["sales"], ["support"]]
    first = result.steps[0][0]
    assert first.uri == "sip:+14155550150@192.0.2.10:5060"
    assert first.dest == Peer("udp", "192.0.2.10", 5060)
    assert first.trunk == "carrier"
    assert first.credentials is not None
    assert first.credentials.username == "acct"
    assert result.ring_timeout == 20.0  # the number's own
    assert result.max_forwards == 33
    assert result.caller == CALLER
    assert result.caller_id_user is None
    assert result.started == T0
    assert result.record.disposition is Disposition.RINGING
    assert result.record.tag == "ppc"
    assert result.record.trunk == "carrier"
    assert result.record.caller_name == "Alice Example"


async def test_missing_max_forwards_means_70(store: SqliteStore) -> None:
    result = await run(store, max_forwards=None)
    assert isinstance(result, CallSetup)
    assert result.max_forwards == 70


async def test_present_tracking_number(store: SqliteStore) -> None:
    await store.numbers.update(TRACKING, present_tracking_number=True)
    result = await run(store)
    assert isinstance(result, CallSetup)
    assert result.caller_id_user == TRACKING


async def test_simultaneous_is_one_step(store: SqliteStore) -> None:
    await store.numbers.update(TRACKING, strategy="simultaneous")
    result = await run(store)
    assert isinstance(result, CallSetup)
    assert [[t.destination for t in step] for step in result.steps] == [["sales", "support"]]


async def test_round_robin_rotates_across_calls(store: SqliteStore) -> None:
    await store.numbers.update(TRACKING, strategy="round-robin")
    firsts = []
    for _ in range(4):
        result = await run(store)
        assert isinstance(result, CallSetup)
        assert len(result.steps) == 2
        firsts.append(result.steps[0][0].destination)
    assert firsts == ["sales", "support", "sales", "support"]


async def test_strip_plus_and_prefix_shape_the_outbound_uri(store: SqliteStore) -> None:
    await store.trunks.update("carrier", strip_plus=True, prefix="9")
    result = await run(store)
    assert isinstance(result, CallSetup)
    assert result.steps[0][0].uri == "sip:914155550150@192.0.2.10:5060"


async def test_prefix_alone_keeps_the_plus(store: SqliteStore) -> None:
    await store.trunks.update("carrier", prefix="00")
    result = await run(store)
    assert isinstance(result, CallSetup)
    assert result.steps[0][0].uri == "sip:00+14155550150@192.0.2.10:5060"


async def test_number_trunk_overrides_the_inbound_trunk(store: SqliteStore) -> None:
    await store.trunks.add(Trunk(name="outbound", host="198.51.100.40", transport="tcp"))
    await store.numbers.update(TRACKING, trunk="outbound")
    result = await run(store)
    assert isinstance(result, CallSetup)
    first = result.steps[0][0]
    assert first.uri == "sip:+14155550150@198.51.100.40:5060;transport=tcp"
    assert first.dest == Peer("tcp", "198.51.100.40", 5060)
    assert first.credentials is None


async def test_sip_destination_goes_direct(store: SqliteStore) -> None:
    await store.numbers.update(TRACKING, destinations=("desk",))
    result = await run(store)
    assert isinstance(result, CallSetup)
    desk = result.steps[0][0]
    assert desk.uri == "sip:agent@198.51.100.30:5070"
    assert desk.dest == Peer("udp", "198.51.100.30", 5070)
    assert desk.trunk is None


async def test_trunk_host_name_is_resolved_like_a_sip_host(store: SqliteStore) -> None:
    await store.trunks.add(Trunk(name="named", host="localhost", allow=("127.0.0.1/32",)))
    await store.numbers.update(TRACKING, trunk="named")
    result = await run(store)
    assert isinstance(result, CallSetup)
    first = result.steps[0][0]
    assert first.uri == "sip:+14155550150@localhost:5060"
    assert first.dest.host in ("127.0.0.1", "::1")
    assert first.dest.port == 5060


async def test_record_carries_the_cost_in_force_and_the_caller_area(store: SqliteStore) -> None:
    await store.sources.update("google", cost_per_call_cents=1250)
    result = await run(store)
    assert isinstance(result, CallSetup)
    assert result.record.cost_cents == 1250
    assert result.record.caller_location == "New York, NY"  # +1 212, as numbers list says
    await store.sources.update("google", cost_per_call_cents=9900)
    assert result.record.cost_cents == 1250  # a value: a later price is a later call's


async def test_blocked_and_rejected_records_are_never_priced(store: SqliteStore) -> None:
    await store.sources.update("google", cost_per_call_cents=1250)
    await store.blocks.add(Block(pattern=CALLER))
    blocked = await run(store)
    assert isinstance(blocked, Refusal)
    assert blocked.record is not None
    assert blocked.record.cost_cents is None
    await store.blocks.remove(CALLER)
    await store.numbers.update(TRACKING, enabled=False)
    rejected = await run(store)
    assert isinstance(rejected, Refusal)
    assert rejected.record is not None
    assert rejected.record.disposition is Disposition.REJECTED
    assert rejected.record.cost_cents is None


def test_received_from_keeps_only_an_address_the_front_proxy_passed() -> None:
    from pbx.call.intake import received_from
    from pbx.sip.message import Request, parse

    def invite(extra: str) -> Request:
        raw = (
            "INVITE sip:+12125550150@192.0.2.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKr\r\nFrom: <sip:a@b>;tag=1\r\n"
            f"To: <sip:+12125550150@192.0.2.1>\r\nCall-ID: r1\r\nCSeq: 1 INVITE\r\n{extra}"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        message = parse(raw)
        assert isinstance(message, Request)
        return message

    assert received_from(invite("X-Pbx-Received: 203.0.113.10:5060\r\n")) == "203.0.113.10:5060"
    assert received_from(invite("X-Pbx-Received: [2001:db8::1]:5060\r\n")) == "[2001:db8::1]:5060"
    assert received_from(invite("X-Pbx-Received: <script>\r\n")) is None
    assert received_from(invite("")) is None
