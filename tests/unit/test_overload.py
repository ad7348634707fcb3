"""pbx.service.overload: admission gate, concurrent-call slots, rejected records, exemptions."""

from __future__ import annotations

import pytest

from pbx.call.intake import Refusal
from pbx.call.model import CallSetup
from pbx.config import CallSettings, FloodSettings
from pbx.records import CallRecord, Disposition
from pbx.rules.limits import Verdict
from pbx.service.overload import (
    ADMISSION_SLACK,
    CPS,
    MAX_CALL_TASKS,
    OVERLOAD,
    Overload,
    flood_guard,
    trunk_exemption,
)
from pbx.store import Trunk
from tests.logs_support import module_logs

DID = "+12125550100"
WALL = "2026-01-05T10:00:00.000000Z"


def _setup(number: str = DID, trunk: str = "carrier") -> CallSetup:
    record = CallRecord(
        id=f"rec-{number}", inbound_call_id="c1", started_at=WALL, caller="+13125550199",
        tracking_number=number, trunk=trunk, disposition=Disposition.RINGING,
    )  # fmt: skip
    return CallSetup(record=record, caller=record.caller, steps=(), ring_timeout=20.0,
                     started=0.0, started_wall=0.0, local={})  # fmt: skip


def test_gate_caps_tasks_and_cps_per_source() -> None:
    overload = Overload(CallSettings(max_concurrent=2, max_cps_per_source=1.0))
    assert overload.max_tasks == 2 + ADMISSION_SLACK
    assert overload.gate("127.0.0.1", 0, 0.0) is None
    assert overload.gate("127.0.0.1", 0, 0.0) == CPS
    assert overload.gate("127.0.0.3", 0, 0.0) is None
    assert overload.gate("127.0.0.4", 2 + ADMISSION_SLACK, 0.0) == OVERLOAD


def test_unlimited_still_caps_tasks() -> None:
    overload = Overload()
    assert overload.max_tasks == MAX_CALL_TASKS
    assert all(overload.gate("127.0.0.1", 10, float(i)) is None for i in range(100))


def test_acquire_refuses_with_503_retry_after_and_a_rejected_record() -> None:
    overload = Overload(CallSettings(max_per_number=1, retry_after=9))
    first = _setup()
    assert overload.acquire("a", first, WALL) is first
    refused = overload.acquire("b", _setup(), WALL)
    assert isinstance(refused, Refusal)
    assert (refused.status, refused.retry_after) == (503, 9)
    assert refused.reason == "over calls.max_per_number"
    assert refused.record is not None
    assert refused.record.disposition == Disposition.REJECTED
    assert refused.record.sip_status == 503
    assert refused.record.sip_reason == "over calls.max_per_number"
    assert refused.record.ended_at == WALL
    assert overload.active == 1
    overload.release("a")
    assert overload.active == 0
    assert overload.acquire("b", _setup(), WALL) is not None
    assert overload.active == 1


def test_trunk_exemption_follows_trunk_acls() -> None:
    trunks = [
        Trunk(name="carrier", host="198.51.100.7", allow=("203.0.113.0/24",)),
        Trunk(name="old", host="192.0.2.9", enabled=False),
        Trunk(name="plain", host="192.0.2.10"),
    ]
    exempt = trunk_exemption(trunks)
    assert exempt("203.0.113.50")
    assert not exempt("198.51.100.7")  # an explicit allow list is authoritative
    assert exempt("192.0.2.10")  # no list: the IP host itself
    assert not exempt("192.0.2.9")  # disabled trunk
    assert not exempt("127.0.0.2")


def test_flood_guard_from_settings() -> None:
    guard = flood_guard(FloodSettings(rate=1.0, burst=1.0, ban_after=0, ban_seconds=5.0))
    assert guard.check("127.0.0.2", 0.0) == Verdict.PASS
    assert guard.check("127.0.0.2", 0.0) == Verdict.BAN
    assert guard.check("127.0.0.2", 4.0) == Verdict.DROP


async def test_a_lagging_loop_sheds_new_calls_until_it_recovers() -> None:
    """The gate refuses (`loop_lag`) while the monitor sees the loop run late."""
    import asyncio
    import time as _time

    from pbx.config import CallSettings
    from pbx.service.overload import LagMonitor, Overload

    overload = Overload(CallSettings(max_loop_lag=0.05))
    assert overload.lag is not None
    monitor = LagMonitor(overload.lag)
    monitor.start()
    try:
        for _ in range(4):  # block the loop: every sample comes ~0.2 s late
            await asyncio.sleep(0.06)
            _time.sleep(0.2)  # noqa: ASYNC251 - the point: a loop doing too much
        await asyncio.sleep(0.06)
        assert overload.gate("192.0.2.1", 0, 0.0) == "loop_lag"
        for _ in range(100):  # bounded: recovery needs the mean below `low` (hysteresis)
            if not overload.lag.overloaded:
                break
            await asyncio.sleep(0.05)
        assert overload.gate("192.0.2.1", 0, 0.0) is None  # recovered without a restart
    finally:
        monitor.stop()


async def test_a_busy_loop_refuses_a_share_of_new_calls_until_it_is_idle() -> None:
    """The gate refuses part of the calls (`loop_busy`) while the loop's thread is saturated."""
    import asyncio
    import time as _time

    from pbx.config import CallSettings
    from pbx.service.overload import Overload

    overload = Overload(CallSettings(max_loop_lag=0, max_loop_busy=0.85))
    assert overload.busy is not None
    assert overload.lag is None
    monitor = overload.monitor()
    assert monitor is not None
    monitor.start()
    try:
        for _ in range(200):  # bounded: spin the CPU in 10 ms slices, yielding between them
            if overload.busy.share >= 0.5:
                break
            end = _time.thread_time() + 0.01
            while _time.thread_time() < end:
                pass
            await asyncio.sleep(0)
        verdicts = [overload.gate("192.0.2.1", 0, 0.0) for _ in range(10)]
        assert "loop_busy" in verdicts
        assert None in verdicts or overload.busy.share == 1.0
        for _ in range(100):  # idle: the share drains to 0
            if overload.busy.share == 0.0:
                break
            await asyncio.sleep(0.05)
        assert [overload.gate("192.0.2.1", 0, 0.0) for _ in range(10)] == [None] * 10
    finally:
        monitor.stop()


def test_gate_refusals_are_logged_with_source_and_number_but_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood of refused INVITEs costs at most a few log lines a second per reason."""
    from pbx.service import runner
    from pbx.service.runner import RefusalLog
    from pbx.sip.message import Request, parse
    from pbx.sip.peer import Peer
    from pbx.sip.transaction import RequestReceived, TransactionKey

    raw = (
        b"INVITE sip:+12125550150@192.0.2.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 203.0.113.10;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:+12125550150@192.0.2.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    request = parse(raw)
    assert isinstance(request, Request)
    event = RequestReceived(request, Peer("udp", "203.0.113.10", 5060),
                            TransactionKey("z9hG4bKx", "INVITE", "203.0.113.10:5060"))  # fmt: skip
    refusals = RefusalLog(per_second=2)
    with module_logs(monkeypatch, runner, "pbx.call") as logs:
        for i in range(10):
            refusals.note("overload", event, 100.0 + i * 0.01)
        refusals.note("overload", event, 101.5)
    lines = [entry for entry in logs if entry["event"] == "call.refused"]
    assert len(lines) == 3
    assert lines[0]["source"] == "203.0.113.10"
    assert lines[0]["dialled"] == "+12125550150"
    assert lines[-1]["not_logged_before"] == 8


def test_the_collector_is_tuned_for_short_rare_full_passes() -> None:
    """Start-up objects frozen out of every pass; full passes 10x rarer (call setup p99)."""
    import gc

    from pbx.runtime import FULL_COLLECTION_EVERY, tune_collector

    before = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (before[0], before[1], FULL_COLLECTION_EVERY)
        assert before[2] < FULL_COLLECTION_EVERY
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_full_pass_is_due_only_when_quiet_after_enough_young_passes() -> None:
    from pbx.runtime import FULL_COLLECTION_EVERY, full_pass_due

    assert full_pass_due(FULL_COLLECTION_EVERY, 0)
    assert not full_pass_due(FULL_COLLECTION_EVERY - 1, 0)
    assert not full_pass_due(10 * FULL_COLLECTION_EVERY, 1)


def test_collect_when_quiet_frees_old_cycles_and_waits_for_quiet() -> None:
    import gc
    import weakref

    from pbx.runtime import FULL_COLLECTION_EVERY, collect_when_quiet

    class Node:
        other: object = None

    freed: list[bool] = []
    was_enabled = gc.isenabled()
    gc.disable()  # only the passes below run: an automatic one would free it early
    try:
        cycle = Node()
        cycle.other = cycle
        weakref.finalize(cycle, freed.append, True)
        gc.collect(1)
        gc.collect(1)  # alive through two young passes: in the oldest generation now
        del cycle
        for _ in range(FULL_COLLECTION_EVERY):
            gc.collect(1)  # young passes do not reach it
        assert freed == []
        assert collect_when_quiet(calls_up=3) is None
        assert freed == []
        took = collect_when_quiet(calls_up=0)
        assert took is not None
        assert took >= 0
        assert freed == [True]
        assert collect_when_quiet(calls_up=0) is None  # the count starts again
    finally:
        if was_enabled:
            gc.enable()
