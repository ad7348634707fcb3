"""The relay's audio features on real sockets on 127.0.0.1: recording a bridged call into a
stereo WAV, playing a prompt into one leg (issue 13)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncio_dgram
import numpy as np
import pytest

from pbx.audio import g711, wav
from pbx.rtp.packet import build_rtp, peek_rtp
from pbx.rtp.ports import PortPairAllocator
from pbx.rtp.relay import MediaError, MediaRelay

HOST = "127.0.0.1"
WAIT = 2.0


@pytest.fixture
async def relay() -> AsyncIterator[MediaRelay]:
    r = MediaRelay(PortPairAllocator(42400, 42599, quarantine=30.0), HOST)
    yield r
    r.close()


def tone(freq: float, frames: int, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(frames) / 8000
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2")


def packets(samples: np.ndarray, ssrc: int, pt: int = 0) -> list[bytes]:
    out = []
    for i in range(len(samples) // 160):
        payload = g711.encode_samples(pt, samples[i * 160 : (i + 1) * 160])
        out.append(build_rtp(pt, i, i * 160, ssrc, payload))
    return out


async def _bridged(relay: MediaRelay, call_id: str):  # type: ignore[no-untyped-def]
    session = await relay.open_session(call_id)
    caller, callee = await asyncio_dgram.bind((HOST, 0)), await asyncio_dgram.bind((HOST, 0))
    session.set_remote("inbound", HOST, caller.sockname[1])
    session.set_remote("outbound", HOST, callee.sockname[1])
    return session, caller, callee


def _similar(recorded: np.ndarray, sent: np.ndarray) -> float:
    """Best normalised correlation of `sent` inside `recorded` (allows an offset)."""
    best = 0.0
    for shift in range(0, len(recorded) - len(sent) + 1):
        part = recorded[shift : shift + len(sent)].astype(np.float64)
        denom = np.linalg.norm(part) * np.linalg.norm(sent)
        if denom:
            best = max(best, float(np.dot(part, sent) / denom))
    return best


async def test_recording_has_caller_left_and_answerer_right(
    relay: MediaRelay, tmp_path: Path
) -> None:
    session, caller, callee = await _bridged(relay, "rec-1")
    path = tmp_path / "rec-1.wav"
    session.start_recording(str(path))
    left, right = tone(440, 8000), tone(1000, 8000)
    a_side, b_side = (HOST, session.port("inbound")), (HOST, session.port("outbound"))
    for a, b in zip(packets(left, 1), packets(right, 2, pt=8), strict=True):
        await caller.send(a, a_side)
        await callee.send(b, b_side)
        await asyncio.wait_for(callee.recv(), WAIT)
        await asyncio.wait_for(caller.recv(), WAIT)
        await asyncio.sleep(0.02)  # paced like a phone (20 ms ptime), not a race fix
    result = session.stop_recording()
    assert result is not None
    assert result.error is None
    data = path.read_bytes()
    assert result.bytes == len(data)
    assert not wav.needs_repair(data[:44], len(data))
    audio = np.frombuffer(data[44:], dtype="<i2").reshape(-1, 2)
    assert 0.95 <= result.seconds <= 1.3
    assert _similar(audio[:, 0], left) > 0.95
    assert _similar(audio[:, 1], right) > 0.95
    assert _similar(audio[:, 0], right) < 0.5  # the channels are not mixed
    session.close()
    caller.close()
    callee.close()


async def test_unwritable_directory_is_one_media_error(relay: MediaRelay, tmp_path: Path) -> None:
    session = await relay.open_session("rec-2")
    with pytest.raises(MediaError, match="cannot write") as info:
        session.start_recording(str(tmp_path / "missing" / "x.wav"))
    assert "\n" not in str(info.value)
    session.close()


async def test_disk_full_stops_recording_and_says_why(relay: MediaRelay) -> None:
    session, caller, callee = await _bridged(relay, "rec-3")
    session.start_recording("/dev/full")  # every write fails with ENOSPC
    for a in packets(tone(440, 1600), 1):
        await caller.send(a, (HOST, session.port("inbound")))
        await asyncio.wait_for(callee.recv(), WAIT)  # the call goes on
    stats = session.close()
    assert stats.inbound.packets == 10
    result = session.recording_result()
    assert result is not None
    assert result.error == "No space left on device"
    caller.close()
    callee.close()


async def test_play_sends_a_paced_stream_and_mutes_the_other_side(relay: MediaRelay) -> None:
    session, caller, callee = await _bridged(relay, "play-1")
    done = asyncio.Event()
    prompt = tone(600, 1600).tobytes()  # 0.2 s: 10 packets
    loop = asyncio.get_running_loop()
    started = loop.time()
    session.play("inbound", prompt, g711.PT_PCMA, done.set)
    # The callee talks meanwhile: none of it may reach the caller during the prompt.
    await callee.send(build_rtp(0, 1, 160, 77, bytes(160)), (HOST, session.port("outbound")))
    got = []
    while len(got) < 10:
        data, _ = await asyncio.wait_for(caller.recv(), WAIT)
        got.append(data)
    await asyncio.wait_for(done.wait(), WAIT)
    elapsed = loop.time() - started
    headers = [peek_rtp(p) for p in got]
    assert all(h is not None for h in headers)
    assert {h.ssrc for h in headers if h} == {headers[0].ssrc if headers[0] else 0}
    assert {h.payload_type for h in headers if h} == {8}
    seqs = [h.seq for h in headers if h]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == list(range(10))
    stamps = [h.timestamp for h in headers if h]
    assert [(t - stamps[0]) & 0xFFFFFFFF for t in stamps] == [160 * i for i in range(10)]
    assert got[0][1] & 0x80
    assert not any(p[1] & 0x80 for p in got[1:])
    assert 0.15 <= elapsed < 1.0  # paced in real time, not a burst
    assert session.counters["outbound"].dropped == 1  # held back while the prompt played
    decoded = g711.decode_samples(8, b"".join(p[12:] for p in got))
    assert _similar(decoded.astype(np.float64), tone(600, 1600)[:1500]) > 0.95
    # After the prompt the callee is heard again.
    await callee.send(build_rtp(0, 2, 320, 77, bytes(160)), (HOST, session.port("outbound")))
    data, _ = await asyncio.wait_for(caller.recv(), WAIT)
    assert peek_rtp(data) is not None
    assert peek_rtp(data).ssrc == 77
    session.close()
    caller.close()
    callee.close()


async def test_stop_playing_cuts_the_prompt_without_done(relay: MediaRelay) -> None:
    session, caller, callee = await _bridged(relay, "play-2")
    done = asyncio.Event()
    session.play("outbound", tone(600, 8000).tobytes(), 0, done.set)
    await asyncio.wait_for(callee.recv(), WAIT)
    assert session.playing("outbound")
    session.stop_playing("outbound")
    assert not session.playing("outbound")
    assert not done.is_set()
    session.close()
    caller.close()
    callee.close()


async def _dropped(session, count: int) -> None:  # type: ignore[no-untyped-def]
    """Let the loop run until the relay counted `count` drops per leg (bounded)."""
    for _ in range(1000):
        if min(session.counters[leg].dropped for leg in ("inbound", "outbound")) >= count:
            return
        await asyncio.sleep(0)  # yield to the relay's datagram callbacks; not a timed sleep
    raise AssertionError("the relay did not see the held packets")


async def test_hold_keeps_each_side_from_the_other(relay: MediaRelay) -> None:
    session, caller, callee = await _bridged(relay, "hold-1")
    a_side, b_side = (HOST, session.port("inbound")), (HOST, session.port("outbound"))
    session.hold(True)
    await caller.send(build_rtp(0, 1, 160, 1, bytes(160)), a_side)
    await callee.send(build_rtp(0, 1, 160, 2, bytes(160)), b_side)
    await _dropped(session, 1)  # the relay has seen (and held back) both packets
    session.hold(False)
    await caller.send(build_rtp(0, 2, 320, 1, bytes(160)), a_side)
    data, _ = await asyncio.wait_for(callee.recv(), WAIT)
    assert data[2:4] == (2).to_bytes(2, "big")  # the held packet never came
    await callee.send(build_rtp(0, 2, 320, 2, bytes(160)), b_side)
    data, _ = await asyncio.wait_for(caller.recv(), WAIT)
    assert data[2:4] == (2).to_bytes(2, "big")
    assert session.counters["inbound"].dropped == session.counters["outbound"].dropped == 1
    session.close()
    caller.close()
    callee.close()


async def test_watch_digits_reports_each_rfc4733_digit_once(relay: MediaRelay) -> None:
    session, caller, callee = await _bridged(relay, "dtmf-1")
    digits: list[str] = []
    got = asyncio.Event()

    def on_digit(digit: str) -> None:
        digits.append(digit)
        got.set()

    session.watch_digits("outbound", 101, on_digit)
    b_side = (HOST, session.port("outbound"))
    for i in range(6):  # one event: 3 packets, then the end packet three times (§2.5.1.4)
        flags = 0x8A if i >= 3 else 0x0A
        payload = bytes([1, flags]) + (160 * (i + 1)).to_bytes(2, "big")
        await callee.send(build_rtp(101, i, 8000, 9, payload), b_side)
    await callee.send(build_rtp(0, 6, 8160, 9, bytes([1, 0x0A, 0, 160])), b_side)  # PCMU: no
    await asyncio.wait_for(got.wait(), WAIT)
    for _ in range(7):
        await asyncio.wait_for(caller.recv(), WAIT)  # all forwarded: the caller gets them too
    assert digits == ["1"]
    session.watch_digits("outbound", None, None)
    await callee.send(build_rtp(101, 7, 16000, 9, bytes([5, 0x0A, 0, 160])), b_side)
    await asyncio.wait_for(caller.recv(), WAIT)
    assert digits == ["1"]  # no longer watched
    session.close()
    caller.close()
    callee.close()
