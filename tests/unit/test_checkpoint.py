"""Media checkpoints and the crash sweep: an interrupted call keeps its talk time to its last media.

A real MediaRelay session on 127.0.0.1 carries packets; `MediaCheckpoint`
stamps the record in a real SQLite store; `mark_interrupted` (the next
start's sweep) turns that into talk time. The clock is injected.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncio_dgram
import pytest

from pbx.records import CallRecord, Disposition, iso_utc
from pbx.rtp.media import MediaSession
from pbx.rtp.packet import build_rtp
from pbx.rtp.ports import PortPairAllocator
from pbx.rtp.relay import MediaRelay
from pbx.service.checkpoint import MediaCheckpoint
from pbx.store.connect import open_store

HOST = "127.0.0.1"
ANSWERED = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture
async def relay() -> AsyncIterator[MediaRelay]:
    r = MediaRelay(PortPairAllocator(42400, 42499, quarantine=30.0), HOST)
    yield r
    r.close()


def _live(record_id: str) -> CallRecord:
    return CallRecord(
        id=record_id, inbound_call_id=f"in-{record_id}", started_at=iso_utc(ANSWERED - 5),
        answered_at=iso_utc(ANSWERED), caller="+12125550199", tracking_number="+14155550150",
        disposition=Disposition.ANSWERED, talk_seconds=0.0,
    )  # fmt: skip


async def test_interrupted_call_gets_talk_time_to_its_last_media(
    tmp_path: Path, relay: MediaRelay
) -> None:
    now = [ANSWERED]
    async with await open_store(tmp_path / "pbx.sqlite3") as store:
        await store.calls.insert(_live("talking"))
        await store.calls.insert(_live("silent"))
        talking = await relay.open_session("talking")
        silent = await relay.open_session("silent")
        checkpoint = MediaCheckpoint(store, lambda: [talking, silent], clock=lambda: now[0])
        assert await checkpoint.run_once() == []  # nothing flowed yet
        now[0] = ANSWERED + 30
        await _send_through(talking, 5)
        assert await checkpoint.run_once() == ["talking"]
        now[0] = ANSWERED + 60
        await _send_through(talking, 5)
        assert await checkpoint.run_once() == ["talking"]
        now[0] = ANSWERED + 90  # media stopped: no new stamp
        assert await checkpoint.run_once() == []
        swept = await store.calls.mark_interrupted(iso_utc(ANSWERED + 400))  # the crash sweep
        assert swept == 2
        got = {r.id: r for r in await store.calls.list()}
    assert got["talking"].disposition is Disposition.INTERRUPTED
    assert got["talking"].talk_seconds == 60.0  # to its last media, not to the sweep
    assert got["silent"].talk_seconds == 0.0  # no media ever: nothing is invented
    assert got["silent"].ended_at == iso_utc(ANSWERED + 400)


async def _send_through(session: MediaSession, count: int) -> None:
    """Packets caller -> relay inbound leg -> callee, on real sockets."""
    port = session.port("inbound")  # type: ignore[attr-defined]  # MediaRelay's own session
    caller = await asyncio_dgram.bind((HOST, 0))
    callee = await asyncio_dgram.bind((HOST, 0))
    session.set_remote("inbound", HOST, caller.sockname[1])
    session.set_remote("outbound", HOST, callee.sockname[1])
    try:
        for seq in range(count):
            await caller.send(build_rtp(0, seq, seq * 160, 7, b"\x55" * 160), (HOST, port))
            await asyncio.wait_for(callee.recv(), 2.0)
    finally:
        caller.close()
        callee.close()


async def test_touch_media_skips_finished_records(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "pbx.sqlite3") as store:
        done = replace(_live("done"), ended_at=iso_utc(ANSWERED + 10), talk_seconds=10.0)
        await store.calls.finish(done)
        await store.calls.touch_media(["done"], iso_utc(ANSWERED + 500))
        assert await store.calls.mark_interrupted(iso_utc(ANSWERED + 600)) == 0
        (record,) = await store.calls.list()
    assert record.talk_seconds == 10.0
    assert record.disposition is Disposition.ANSWERED
