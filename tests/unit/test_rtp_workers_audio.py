"""Audio in the worker-process engine, with real worker processes on 127.0.0.1 (issue 13):
prompts (sent to a worker once), stop, hold, RFC 4733 digits, the stereo recording the
worker writes, and a worker killed while recording."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncio_dgram
import numpy as np
import pytest

from pbx.audio import g711, wav
from pbx.rtp import workers as workers_module
from pbx.rtp.media import MediaError
from pbx.rtp.packet import build_rtp, peek_rtp
from pbx.rtp.workers import WorkerEngine, WorkerSession

HOST = "127.0.0.1"
LOW, HIGH = 46400, 46599  # away from the other relay tests' ranges
WAIT = 5.0
Peer = asyncio_dgram.aio.DatagramServer


@pytest.fixture
async def engine() -> AsyncIterator[WorkerEngine]:
    made = WorkerEngine(HOST, LOW, HIGH, workers=1, stats_interval=0.1)
    await made.start()
    try:
        yield made
    finally:
        made.close()


def tone(freq: float, frames: int, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(frames) / 8000
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2")


def packets(samples: np.ndarray, ssrc: int, pt: int = 0) -> list[bytes]:
    out = []
    for i in range(len(samples) // 160):
        payload = g711.encode_samples(pt, samples[i * 160 : (i + 1) * 160])
        out.append(build_rtp(pt, i, i * 160, ssrc, payload))
    return out


def similar(recorded: np.ndarray, sent: np.ndarray) -> float:
    """Best normalised correlation of `sent` inside `recorded` (allows an offset)."""
    best = 0.0
    for shift in range(0, len(recorded) - len(sent) + 1, 4):
        part = recorded[shift : shift + len(sent)].astype(np.float64)
        denom = np.linalg.norm(part) * np.linalg.norm(sent)
        if denom:
            best = max(best, float(np.dot(part, sent) / denom))
    return best


async def bridged(engine: WorkerEngine, call_id: str) -> tuple[WorkerSession, Peer, Peer]:
    session = await engine.open_session(call_id)
    caller, callee = await asyncio_dgram.bind((HOST, 0)), await asyncio_dgram.bind((HOST, 0))
    session.set_remote("inbound", HOST, caller.sockname[1])
    session.set_remote("outbound", HOST, callee.sockname[1])
    return session, caller, callee


async def through(src: Peer, dst: Peer, to: tuple[str, int], packet: bytes) -> None:
    """Send `packet` until `dst` gets it (set_remote is not acknowledged)."""
    for _ in range(50):
        await src.send(packet, to)
        try:
            await asyncio.wait_for(dst.recv(), 0.1)
        except TimeoutError:
            continue
        return
    raise AssertionError("packet never came through the worker")


async def receive(peer: Peer, count: int) -> list[bytes]:
    return [(await asyncio.wait_for(peer.recv(), WAIT))[0] for _ in range(count)]


def counting_encoder(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the prompts the daemon encodes (= sends to a worker)."""
    calls: list[int] = []
    real = workers_module.encode_prompt

    def encode(pcm: bytes, payload_type: int) -> bytes:
        calls.append(payload_type)
        return real(pcm, payload_type)

    monkeypatch.setattr(workers_module, "encode_prompt", encode)
    return calls


async def test_a_prompt_plays_paced_with_its_own_stream_and_is_sent_to_the_worker_once(
    engine: WorkerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded = counting_encoder(monkeypatch)
    prompt = tone(600, 1600).tobytes()  # 0.2 s: 10 packets
    for n in range(2):  # two calls play the same prompt: its audio crosses the channel once
        session, caller, callee = await bridged(engine, f"play-{n}")
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        started = loop.time()
        session.play("inbound", prompt, g711.PT_PCMA, done.set)
        got = await receive(caller, 10)
        await asyncio.wait_for(done.wait(), WAIT)
        elapsed = loop.time() - started
        headers = [peek_rtp(p) for p in got]
        assert all(h is not None for h in headers)
        assert len({h.ssrc for h in headers if h}) == 1
        assert {h.payload_type for h in headers if h} == {8}
        seqs = [h.seq for h in headers if h]
        assert [(s - seqs[0]) & 0xFFFF for s in seqs] == list(range(10))
        stamps = [h.timestamp for h in headers if h]
        assert [(t - stamps[0]) & 0xFFFFFFFF for t in stamps] == [160 * i for i in range(10)]
        assert got[0][1] & 0x80
        assert not any(p[1] & 0x80 for p in got[1:])
        assert 0.15 <= elapsed < 2.0  # paced in real time, not a burst
        decoded = g711.decode_samples(8, b"".join(p[12:] for p in got))
        assert similar(decoded.astype(np.float64), tone(600, 1600)[:1500]) > 0.95
        await session.release()
        caller.close()
        callee.close()
    assert encoded == [g711.PT_PCMA]
    assert len(engine.slots[0].prompts.held) == 1


async def test_stop_playing_cuts_the_prompt_and_no_done_fires(engine: WorkerEngine) -> None:
    session, caller, callee = await bridged(engine, "stop-1")
    first, second = asyncio.Event(), asyncio.Event()
    session.play("outbound", tone(600, 8000).tobytes(), 0, first.set)  # 1 s
    await receive(callee, 1)
    session.stop_playing("outbound")
    session.play("outbound", tone(900, 800).tobytes(), 0, second.set)  # 0.1 s, replaces it
    await asyncio.wait_for(second.wait(), WAIT)
    assert not first.is_set()
    await session.release()
    assert not first.is_set()
    caller.close()
    callee.close()


async def test_bad_prompts_are_media_errors(engine: WorkerEngine) -> None:
    session, caller, callee = await bridged(engine, "bad-1")
    with pytest.raises(MediaError, match="PCMU"):
        session.play("inbound", bytes(320), 18, None)
    with pytest.raises(MediaError, match="75 s"):
        session.play("inbound", bytes(2 * 8000 * 76), 0, None)
    await session.release()
    with pytest.raises(MediaError, match="closed"):
        session.play("inbound", bytes(320), 0, None)
    caller.close()
    callee.close()


async def test_hold_keeps_each_side_from_the_other(engine: WorkerEngine) -> None:
    session, caller, callee = await bridged(engine, "hold-1")
    a_side, b_side = session.address("inbound"), session.address("outbound")
    await through(caller, callee, a_side, build_rtp(0, 1, 160, 1, bytes(160)))
    await through(callee, caller, b_side, build_rtp(0, 1, 160, 2, bytes(160)))
    session.hold(True)
    # A prompt played to the held answerer still reaches it; its done report comes after
    # the hold, over the same ordered stream, so the hold is in force in the worker by then.
    done = asyncio.Event()
    session.play("outbound", tone(500, 160).tobytes(), 0, done.set)
    await asyncio.wait_for(done.wait(), WAIT)
    [prompt] = await receive(callee, 1)
    await caller.send(build_rtp(0, 2, 320, 1, bytes(160)), a_side)
    await callee.send(build_rtp(0, 2, 320, 2, bytes(160)), b_side)
    session.hold(False)
    await through(caller, callee, a_side, build_rtp(0, 3, 480, 1, bytes(160)))
    await engine.wait_stats(WAIT)
    stats = session.snapshot()
    assert stats.inbound.dropped >= 1
    assert stats.outbound.dropped >= 1
    assert peek_rtp(prompt) is not None
    await session.release()
    caller.close()
    callee.close()


async def test_digits_come_back_to_the_daemon_once_each(engine: WorkerEngine) -> None:
    session, caller, callee = await bridged(engine, "dtmf-1")
    b_side = session.address("outbound")
    await through(callee, caller, b_side, build_rtp(0, 100, 160, 9, bytes(160)))
    digits: list[str] = []
    got = asyncio.Event()

    def on_digit(digit: str) -> None:
        digits.append(digit)
        got.set()

    session.watch_digits("outbound", 101, on_digit)
    # The watch is a message like any other: a prompt's done report behind it proves the
    # worker has it (messages are handled in order).
    armed = asyncio.Event()
    session.play("inbound", bytes(320), 0, armed.set)
    await asyncio.wait_for(armed.wait(), WAIT)
    for i in range(6):  # one event: 3 packets, then the end packet three times (§2.5.1.4)
        flags = 0x8A if i >= 3 else 0x0A
        payload = bytes([1, flags]) + (160 * (i + 1)).to_bytes(2, "big")
        await callee.send(build_rtp(101, i, 8000, 9, payload), b_side)
    await asyncio.wait_for(got.wait(), WAIT)
    assert digits == ["1"]
    session.watch_digits("outbound", None, None)
    await session.release()
    assert digits == ["1"]
    caller.close()
    callee.close()


async def test_recording_written_by_the_worker_has_caller_left_answerer_right(
    engine: WorkerEngine, tmp_path: Path
) -> None:
    session, caller, callee = await bridged(engine, "rec-1")
    path = tmp_path / "rec-1.wav"
    a_side, b_side = session.address("inbound"), session.address("outbound")
    await through(caller, callee, a_side, build_rtp(0, 1000, 0, 1, bytes([0xFF]) * 160))
    await through(callee, caller, b_side, build_rtp(8, 1000, 0, 2, bytes([0xD5]) * 160))
    session.start_recording(str(path))
    left, right = tone(440, 8000), tone(1000, 8000)
    for a, b in zip(packets(left, 1), packets(right, 2, pt=8), strict=True):
        await caller.send(a, a_side)
        await callee.send(b, b_side)
        await asyncio.wait_for(callee.recv(), WAIT)
        await asyncio.wait_for(caller.recv(), WAIT)
        await asyncio.sleep(0.02)  # paced like a phone (20 ms ptime), not a race fix
    await session.release()
    result = session.recording_result()
    assert result is not None
    assert result.error is None
    assert result.path == str(path)
    data = path.read_bytes()
    assert result.bytes == len(data)
    assert not wav.needs_repair(data[:44], len(data))
    assert 0.95 <= result.seconds <= 1.6
    audio = np.frombuffer(data[44:], dtype="<i2").reshape(-1, 2)
    assert similar(audio[:, 0], left) > 0.95
    assert similar(audio[:, 1], right) > 0.95
    assert similar(audio[:, 0], right) < 0.5  # the channels are not mixed
    caller.close()
    callee.close()


async def test_unwritable_directory_is_one_media_error_at_once(
    engine: WorkerEngine, tmp_path: Path
) -> None:
    session = await engine.open_session("rec-2")
    with pytest.raises(MediaError, match="cannot write") as info:
        session.start_recording(str(tmp_path / "missing" / "x.wav"))
    assert "\n" not in str(info.value)
    await session.release()
    assert session.recording_result() is None


async def test_a_write_error_in_the_worker_reaches_the_result(engine: WorkerEngine) -> None:
    session, caller, callee = await bridged(engine, "rec-3")
    session.start_recording("/dev/full")  # every write fails with ENOSPC
    a_side = session.address("inbound")
    await through(caller, callee, a_side, packets(tone(440, 160), 1)[0])
    for a in packets(tone(440, 1600), 1)[1:]:
        await caller.send(a, a_side)
        await asyncio.wait_for(callee.recv(), WAIT)  # the call goes on
    await session.release()
    result = session.recording_result()
    assert result is not None
    assert result.error == "No space left on device"
    caller.close()
    callee.close()


async def test_a_worker_killed_while_recording_leaves_a_playable_file_and_says_so(
    engine: WorkerEngine, tmp_path: Path
) -> None:
    failed = asyncio.Event()
    engine.on_failure = lambda call_id, reason: failed.set()
    session, caller, callee = await bridged(engine, "rec-4")
    path = tmp_path / "rec-4.wav"
    a_side = session.address("inbound")
    await through(caller, callee, a_side, packets(tone(440, 160), 1)[0])
    session.start_recording(str(path))
    for a in packets(tone(440, 24000), 1):  # 3 s: more than the worker's 64 KiB buffer (2 s)
        await caller.send(a, a_side)
        await asyncio.wait_for(callee.recv(), WAIT)
        await asyncio.sleep(0.02)  # paced like a phone, not a race fix
    pid = engine.slots[0].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await asyncio.wait_for(failed.wait(), WAIT)
    await session.release()
    result = session.recording_result()
    assert result is not None
    assert result.error == "media worker died"
    data = path.read_bytes()
    assert result.bytes == len(data) > 44
    assert not wav.needs_repair(data[:44], len(data))  # repaired here, not at next start
    assert result.seconds == pytest.approx((len(data) - 44) / 32000, abs=0.001)
    assert result.seconds >= 1.0
    caller.close()
    callee.close()


async def test_closing_the_engine_lets_workers_finish_their_recordings(
    tmp_path: Path,
) -> None:
    """SIGTERM (engine close, daemon drain): the worker closes its sessions first."""
    engine = WorkerEngine(HOST, LOW, HIGH, workers=1, stats_interval=0.1)
    await engine.start()
    try:
        session, caller, callee = await bridged(engine, "rec-5")
        path = tmp_path / "rec-5.wav"
        a_side = session.address("inbound")
        await through(caller, callee, a_side, packets(tone(440, 160), 1)[0])
        session.start_recording(str(path))
        for a in packets(tone(440, 1600), 1):
            await caller.send(a, a_side)
            await asyncio.wait_for(callee.recv(), WAIT)
        await engine.wait_stats(WAIT)
    finally:
        engine.close()  # SIGTERM, reaped
    data = path.read_bytes()
    assert len(data) > 44
    assert not wav.needs_repair(data[:44], len(data))
    caller.close()
    callee.close()
