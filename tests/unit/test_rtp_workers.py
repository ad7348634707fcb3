"""WorkerEngine with real worker processes on 127.0.0.1 (and a fake worker for faults)."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncio_dgram
import pytest
from structlog.testing import capture_logs

from pbx.config import default_workers
from pbx.rtp.control import (
    FROM_WORKER,
    HEADER_SIZE,
    VERSION,
    Arm,
    Close,
    ControlError,
    Decoder,
    Hello,
    Open,
    Ready,
    SetRemote,
    encode,
    split_ports,
)
from pbx.rtp.media import MediaError
from pbx.rtp.packet import build_rtp
from pbx.rtp.workers import LAZY_FLUSH, WorkerEngine, WorkerSession, _Slot

HOST = "127.0.0.1"
LOW, HIGH = 46000, 46199  # away from test_rtp_relay's range
WAIT = 5.0
FAKE = str(Path(__file__).with_name("fake_media_worker.py"))
Peer = asyncio_dgram.aio.DatagramServer


def counting(target: int, into: list[str]) -> tuple[Callable[[str, str], None], asyncio.Event]:
    """An on_failure callback recording call ids, and an event set at `target` calls."""
    reached = asyncio.Event()

    def on_failure(call_id: str, reason: str) -> None:
        into.append(f"{call_id}:{reason}")
        if len(into) >= target:
            reached.set()

    return on_failure, reached


def gone(pid: int) -> bool:
    """True once `pid` is no process at all (exited and reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
async def engines() -> AsyncIterator[Callable[..., WorkerEngine]]:
    made: list[WorkerEngine] = []

    def make(**options: object) -> WorkerEngine:
        options.setdefault("workers", 1)
        options.setdefault("stats_interval", 0.1)
        engine = WorkerEngine(HOST, LOW, HIGH, **options)  # type: ignore[arg-type]
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


async def peers() -> tuple[Peer, Peer]:
    return await asyncio_dgram.bind((HOST, 0)), await asyncio_dgram.bind((HOST, 0))


def audio(seq: int, ssrc: int) -> bytes:
    return build_rtp(0, seq, seq * 160, ssrc, bytes([seq % 256]) * 160)


async def connect(session: WorkerSession, caller: Peer, callee: Peer) -> None:
    session.set_remote("inbound", HOST, caller.sockname[1])
    session.set_remote("outbound", HOST, callee.sockname[1])


async def through(src: Peer, dst: Peer, to: tuple[str, int], packet: bytes) -> int:
    """Send `packet` until `dst` gets it (set_remote is not acknowledged); tries used."""
    for attempt in range(1, 50):
        await src.send(packet, to)
        try:
            data, _ = await asyncio.wait_for(dst.recv(), 0.1)
        except TimeoutError:
            continue
        assert data == packet
        return attempt
    raise AssertionError("packet never came through the worker")


async def relay_both_ways(session: WorkerSession, caller: Peer, callee: Peer, n: int) -> int:
    """Prime both directions, then `n` packets each way; returns probes dropped."""
    a_side, b_side = session.address("inbound"), session.address("outbound")
    dropped = await through(caller, callee, a_side, audio(0, 1)) - 1
    dropped += await through(callee, caller, b_side, audio(0, 2)) - 1
    for seq in range(1, n + 1):
        await caller.send(audio(seq, 1), a_side)
        data, src = await asyncio.wait_for(callee.recv(), WAIT)
        assert (data, src) == (audio(seq, 1), b_side)
        await callee.send(audio(seq, 2), b_side)
        data, src = await asyncio.wait_for(caller.recv(), WAIT)
        assert (data, src) == (audio(seq, 2), a_side)
    return dropped


def test_default_workers_is_one_per_core_beyond_the_first() -> None:
    assert default_workers() == max(1, len(os.sched_getaffinity(0)) - 1)


def test_split_ports_gives_disjoint_whole_pairs() -> None:
    assert split_ports(40000, 40011, 2) == [(40000, 40005), (40006, 40011)]
    assert split_ports(40001, 40010, 3) == [(40002, 40005), (40006, 40007), (40008, 40009)]
    with pytest.raises(ControlError, match="cannot give 3"):
        split_ports(40000, 40003, 3)
    with pytest.raises(MediaError, match="cannot give 3"):
        WorkerEngine(HOST, 40000, 40003, workers=3)


async def test_relays_both_ways_with_counters_periodic_and_final(
    engines: Callable[..., WorkerEngine],
) -> None:
    engine = engines()
    await engine.start()
    session = await engine.open_session("call-1")
    assert len(engine) == 1
    assert {session.port("inbound"), session.port("outbound")} <= set(range(LOW, HIGH, 2))
    caller, callee = await peers()
    await connect(session, caller, callee)
    dropped = await relay_both_ways(session, caller, callee, 20)
    # Periodic counters: every packet so far shows up in a Stats batch.
    await engine.wait_stats(WAIT)
    assert session.snapshot().outbound.packets == 21
    assert session.snapshot().inbound.packets == 21
    before = session.close()
    assert session.closed
    assert len(engine) == 0
    final = await session.final_stats(WAIT)
    assert before.inbound.packets <= final.inbound.packets
    for leg in (final.inbound, final.outbound):
        assert (leg.packets, leg.bytes, leg.rtcp_packets) == (21, 21 * 172, 0)
    assert final.inbound.dropped + final.outbound.dropped == dropped
    assert session.snapshot() == final
    assert engine.session("call-1") is None
    caller.close()
    callee.close()


async def test_sessions_go_to_the_least_busy_worker(engines: Callable[..., WorkerEngine]) -> None:
    engine = engines(workers=2)
    await engine.start()
    sessions = [await engine.open_session(f"call-{i}") for i in range(4)]
    assert sorted(s.worker for s in sessions) == [0, 0, 1, 1]
    slices = split_ports(LOW, HIGH, 2)
    for s in sessions:
        low, high = slices[s.worker]
        assert low <= s.port("inbound") <= high
        assert low <= s.port("outbound") <= high
    sessions[0].close()
    sessions[2].close()
    nxt = await engine.open_session("call-4")
    assert nxt.worker in {sessions[0].worker, sessions[2].worker}


async def test_bad_input_raises_media_error(engines: Callable[..., WorkerEngine]) -> None:
    engine = engines()
    await engine.start()
    session = await engine.open_session("call-1")
    with pytest.raises(MediaError, match="not an IP address"):
        session.set_remote("inbound", "example.com", 4000)
    with pytest.raises(MediaError, match="not reachable"):
        session.set_remote("inbound", "::1", 4000)
    with pytest.raises(MediaError, match="out of range"):
        session.set_remote("inbound", HOST, 70000)
    with pytest.raises(MediaError, match="already has a session"):
        await engine.open_session("call-1")
    with pytest.raises(MediaError, match="call id"):
        await engine.open_session("x" * 2000)
    with pytest.raises(MediaError, match="not an IP address"):
        WorkerEngine("localhost", LOW, HIGH, workers=1)


async def test_open_failure_in_the_worker_is_media_error(
    engines: Callable[..., WorkerEngine],
) -> None:
    engine = WorkerEngine(HOST, 46300, 46301, workers=1)  # one pair: a session needs two
    try:
        await engine.start()
        with pytest.raises(MediaError, match="no free RTP port pair"):
            await engine.open_session("call-1")
        assert len(engine) == 0
    finally:
        engine.close()


async def test_media_timeout_is_reported_once(engines: Callable[..., WorkerEngine]) -> None:
    engine = engines(media_timeout=0.2)
    timed_out: list[str] = []
    fired = asyncio.Event()

    def on_timeout(call_id: str) -> None:
        timed_out.append(call_id)
        fired.set()

    engine.on_timeout = on_timeout
    await engine.start()
    quiet = await engine.open_session("call-quiet")
    unarmed = await engine.open_session("call-unarmed")
    quiet.arm()
    await asyncio.wait_for(fired.wait(), WAIT)
    assert timed_out == ["call-quiet"]
    # It is reported once: the call side closes it; its Closed still arrives.
    quiet.close()
    await quiet.final_stats(WAIT)
    assert timed_out == ["call-quiet"]
    assert not unarmed.closed


async def test_killed_worker_fails_its_calls_once_and_is_restarted(
    engines: Callable[..., WorkerEngine],
) -> None:
    engine = engines(workers=2)
    failures: list[str] = []
    engine.on_failure, failed = counting(2, failures)
    await engine.start()
    sessions = [await engine.open_session(f"call-{i}") for i in range(4)]
    victim = sessions[0].worker
    doomed = sorted(f"{s.call_id}:media_failed" for s in sessions if s.worker == victim)
    assert len(doomed) == 2
    caller, callee = await peers()
    await connect(sessions[0], caller, callee)
    await relay_both_ways(sessions[0], caller, callee, 3)
    await engine.wait_stats(WAIT)  # the worker reported those packets before it dies
    old_pid = engine.slots[victim].pid
    assert old_pid is not None
    with capture_logs() as logs:
        os.kill(old_pid, signal.SIGKILL)
        await asyncio.wait_for(failed.wait(), WAIT)
        await engine.wait_running(victim, WAIT)
    assert sorted(failures) == doomed
    assert gone(old_pid)
    assert engine.slots[victim].pid != old_pid
    died = [e for e in logs if e["event"] == "media.worker_died"]
    assert len(died) == 1
    assert died[0]["pid"] == old_pid
    assert died[0]["calls"] == len(doomed)
    assert all(s.closed for s in sessions if s.worker == victim)
    assert not any(s.closed for s in sessions if s.worker != victim)
    # A failed session keeps its last counters, closes quietly; the rest work on.
    last = await sessions[0].final_stats(0.1)
    assert (last.inbound.packets, last.outbound.packets) == (4, 4)
    assert last == sessions[0].close()
    fresh = [await engine.open_session(f"new-{i}") for i in range(2)]
    on_victim = next(s for s in fresh if s.worker == victim)
    low, high = split_ports(LOW, HIGH, 2)[victim]  # the restarted worker has the same slice
    assert low <= on_victim.port("inbound") <= high
    await connect(on_victim, caller, callee)
    await relay_both_ways(on_victim, caller, callee, 3)
    assert sorted(failures) == doomed  # still once each
    caller.close()
    callee.close()


async def test_garbled_frame_from_a_worker_fails_only_its_calls(
    engines: Callable[..., WorkerEngine],
) -> None:
    engine = engines(workers=2, command=[sys.executable, FAKE])
    failures: list[str] = []
    engine.on_failure, failed = counting(1, failures)
    await engine.start()
    first = await engine.open_session("call-a")  # worker 0
    second = await engine.open_session("call-b")  # worker 1
    assert (first.worker, second.worker) == (0, 1)
    pid = engine.slots[0].pid
    assert pid is not None
    with capture_logs() as logs:
        with pytest.raises(MediaError, match="worker 0 died"):
            await engine.open_session("garble-1")  # worker 0 again (1 session each)
        await asyncio.wait_for(failed.wait(), WAIT)
        await engine.wait_running(0, WAIT)
    bad = [e for e in logs if e["event"] == "media.worker_bad_control"]
    assert len(bad) == 1
    assert "not JSON" in bad[0]["error"]
    assert gone(pid)
    assert not second.closed
    assert failures == ["call-a:media_failed"]
    again = await engine.open_session("call-c")
    assert again.worker == 0


async def test_open_times_out_when_the_worker_does_not_answer(
    engines: Callable[..., WorkerEngine],
) -> None:
    engine = engines(command=[sys.executable, FAKE, "--mode", "silent"], open_timeout=0.2)
    await engine.start()
    with pytest.raises(MediaError, match=r"did not open the session in 0\.2s"):
        await engine.open_session("call-1")
    assert len(engine) == 0


async def test_close_ends_every_worker_and_open_sessions(
    engines: Callable[..., WorkerEngine],
) -> None:
    engine = engines(workers=2)
    await engine.start()
    pids = engine.pids
    assert len(pids) == 2
    session = await engine.open_session("call-1")
    stats = engine.close()
    assert [s.call_id for s in stats] == ["call-1"]
    assert all(gone(pid) for pid in pids)
    assert session.closed
    assert await session.final_stats(0.1) == stats[0]
    with pytest.raises(MediaError, match="engine closed"):
        await engine.open_session("call-2")
    assert engine.close() == []


def spawn_worker() -> tuple[subprocess.Popen[bytes], socket.socket]:
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pbx.rtp.worker", "--fd", str(theirs.fileno()),
         "--host", HOST, "--ports", "46400-46419"],
        pass_fds=(theirs.fileno(),),
    )  # fmt: skip
    theirs.close()
    ours.settimeout(WAIT)
    return proc, ours


def test_worker_exits_by_itself_when_the_daemon_goes_away() -> None:
    proc, ours = spawn_worker()
    try:
        ours.sendall(encode([Hello(VERSION)]))
        assert Decoder(FROM_WORKER).feed(ours.recv(4096)) == [Ready(VERSION, proc.pid)]
        ours.close()  # the daemon died: its end of the socketpair closes
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_worker_exits_on_garbage_from_the_daemon() -> None:
    proc, ours = spawn_worker()
    try:
        ours.sendall(b"\x00\x00\x00\x03abc")
        assert ours.recv(4096) == b""  # it hung up on us
        assert proc.wait(WAIT) == 0
    finally:
        ours.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_cancelled_open_leaves_no_session(engines: Callable[..., WorkerEngine]) -> None:
    engine = engines(command=[sys.executable, FAKE, "--mode", "silent"])
    await engine.start()
    opening = asyncio.ensure_future(engine.open_session("call-1"))
    await asyncio.sleep(0)  # let it send Open and wait
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert len(engine) == 0
    session = engine.session("call-1")
    assert session is not None  # kept until the worker confirms the close
    assert session.closed


async def test_worker_dying_during_an_open_is_media_error_not_failure(
    engines: Callable[..., WorkerEngine],
) -> None:
    engine = engines(command=[sys.executable, FAKE, "--mode", "silent"], open_timeout=WAIT)
    failures: list[str] = []
    engine.on_failure, _ = counting(1, failures)
    await engine.start()
    opening = asyncio.ensure_future(engine.open_session("call-1"))
    await asyncio.sleep(0)  # let it send Open and wait
    pid = engine.slots[0].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(MediaError, match="worker 0 died"):
        await opening
    assert failures == []  # the caller got the error; nothing to end
    await engine.wait_running(0, WAIT)
    assert engine.slots[0].pid != pid


DAEMON = """
import asyncio
from pbx.rtp.workers import WorkerEngine

async def main():
    engine = WorkerEngine("127.0.0.1", 46500, 46599, workers=2)
    await engine.start()
    print(*engine.pids, flush=True)
    await asyncio.Event().wait()  # until killed

asyncio.run(main())
"""


def test_workers_exit_when_the_daemon_is_killed() -> None:
    daemon = subprocess.Popen([sys.executable, "-c", DAEMON], stdout=subprocess.PIPE)
    try:
        assert daemon.stdout is not None
        pids = [int(p) for p in daemon.stdout.readline().split()]
        assert len(pids) == 2
        exits = [os.pidfd_open(pid) for pid in pids]  # readable once the process has exited
    finally:
        daemon.kill()
        daemon.wait()
    try:
        for fd in exits:
            ready, _, _ = select.select([fd], [], [], WAIT)
            assert ready == [fd], "a worker outlived its daemon"
    finally:
        for fd in exits:
            os.close(fd)


# -- the control channel's flushes (a real socketpair, no worker) --------------


async def _frames(sock: socket.socket, count: int) -> list[list[str]]:
    """`count` frames from the worker's end: each frame's message kinds, in order."""
    loop = asyncio.get_running_loop()
    data = b""
    frames: list[list[str]] = []
    while len(frames) < count:
        data += await asyncio.wait_for(loop.sock_recv(sock, 65536), WAIT)
        while len(data) >= HEADER_SIZE:
            size = int.from_bytes(data[:HEADER_SIZE], "big")
            if len(data) < HEADER_SIZE + size:
                break
            body, data = data[HEADER_SIZE : HEADER_SIZE + size], data[HEADER_SIZE + size :]
            frames.append([str(item[0]) for item in json.loads(body)])
    return frames


async def test_arm_and_close_wait_for_company_and_open_takes_them_along() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setblocking(False)
    slot = _Slot(0, (LOW, HIGH))
    slot.transport, _ = await loop.create_unix_connection(asyncio.Protocol, sock=ours)
    try:
        slot.send(Close("a"))  # lazy: not written on the next loop turn
        slot.send(Arm("b"))
        slot.send(Open("c"))  # eager: one write, in the order sent
        assert await _frames(theirs, 1) == [["close", "arm", "open"]]
        started = loop.time()
        slot.send(Close("d"))  # alone: written after LAZY_FLUSH, not lost
        assert await _frames(theirs, 1) == [["close"]]
        assert loop.time() - started >= LAZY_FLUSH * 0.9
        slot.send(SetRemote("e", "inbound", HOST, 4000))
        slot.send(Close("e"))  # queued behind an eager flush: rides with it
        assert await _frames(theirs, 1) == [["set_remote", "close"]]
    finally:
        slot.transport.close()
        theirs.close()
