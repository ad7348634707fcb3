"""A media worker process: one `MediaRelay` over a slice of the RTP port range (I/O edge).

    python -m pbx.rtp.worker --fd 3 --host 127.0.0.1 --ports 40000-44999

Started by `pbx.rtp.workers.WorkerEngine` (a subprocess with one end of a
socketpair passed as `--fd`); it speaks the `pbx.rtp.control` protocol on
that stream: `Hello` -> `Ready`, then `Open` / `SetRemote` / `Arm` /
`Close` in, `Opened` / `Failed` / `Closed` / `Stats` / `Timeout` out; and
the audio (issue 13): `Prompt` / `Forget` (the prompt cache, a
`control.PromptStore`), `Play` / `StopPlaying` / `Hold` / `WatchDigits` /
`StartRecording` / `StopRecording` in, `PlayDone` / `Digit` / `Recorded`
out. Each is the relay session's own call (`play_encoded`, `hold`,
`watch_digits`, `start_recording` ...), so pacing, SSRC continuity, muting,
DTMF detection and the WAV writer are exactly the in-process relay's.

Decisions:
- Runs uvloop (a dependency; DESIGN.md: ~4x the stock loop's packet rate)
  and the unchanged built-in relay, so latching, RTCP, counters, SO_RCVBUF
  (64 KiB: late audio is dropped, not queued) and the 2048-byte read cap
  are exactly those of `pbx.rtp.relay`.
- Control messages are handled strictly in arrival order by one task
  (`Open` awaits the relay binding its sockets, and a `SetRemote` right
  behind it must see the session). Replies are queued and written as one
  frame batch per loop wake-up (`call_soon` flush), not one write each.
- `Stats` for every session every `--stats-interval` seconds (default 1);
  skipped, not queued, while more than `MAX_UNSENT` bytes wait to be written
  (a daemon that does not read gets fresher counters later, not a backlog).
- The worker exits by itself when the control stream ends (EOF or error):
  the daemon closed it or died, so no orphan keeps ports bound. SIGINT and
  SIGHUP (the daemon's reload) are ignored (a Ctrl-C or a `kill -HUP` to the
  process group reaches us too; the daemon drains and then closes us);
  SIGTERM ends the worker the same way, closing every session first, so a
  recording still being written gets its header fixed
  (the daemon's SIGKILL, `stop_timeout` later, is the backstop).
- When the stream ends without SIGTERM, the daemon died: a recording in
  progress is flushed (nothing recorded is lost) but its header is left
  saying 0 bytes (`RecordingFile.abandon`), exactly like an in-process
  crash, so the next start-up sweep repairs it and names it in the call
  record the daemon could not finish.
- A recording that cannot start (the file cannot be created) is reported
  as `Recorded` with its error; the call goes on. A session closed while
  recording sends its `Recorded` right before `Closed`.
- A `Play` naming a prompt the worker does not hold (a daemon bug) is
  answered `PlayDone` at once with one log line, so the call goes on.
- A control stream that is not the protocol is logged once
  (`media.worker_bad_control`) and ends the worker; the daemon sees EOF.
  So does an unexpected exception in the message handler (never a worker
  that lives on deaf); one in opening a session fails only that call.
- RLIMIT_NOFILE's soft limit is raised to the hard one: 4 sockets per call.

recvmmsg / sendmmsg (not done): Python's `socket` module has neither, so
batching would need a C extension (or ctypes/cffi over libc) holding
preallocated `struct mmsghdr` arrays per socket, the sockets read with
`loop.add_reader` and drained until EAGAIN per wake-up instead of uvloop's
one-callback-per-datagram protocol, and the latch/forward logic rewritten
over those buffers (memoryview slices, no `bytes` per packet). Both calls
batch the datagrams of *one* socket: at 50 packets/s per socket a socket
holds ~1 packet per wake-up, so recvmmsg saves syscalls only once queues
build (overload: it drains them faster), and sendmmsg hardly ever applies
because each relayed packet leaves by the other leg's socket. The steady
state win would come from fewer Python callbacks per packet, not fewer
syscalls. Not tried, so not measured; spreading calls over worker
processes is the measured lever (bench/workers.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import sys
from collections.abc import Sequence
from typing import cast

import structlog
import uvloop

from pbx.errors import PbxError
from pbx.logs import setup_logging
from pbx.rtp.control import (
    TO_WORKER,
    VERSION,
    Arm,
    Close,
    Closed,
    ControlError,
    Decoder,
    Digit,
    Failed,
    Forget,
    Hello,
    Hold,
    Message,
    Open,
    Opened,
    Play,
    PlayDone,
    Prompt,
    PromptStore,
    Ready,
    Recorded,
    SetRemote,
    StartRecording,
    Stats,
    StopPlaying,
    StopRecording,
    Timeout,
    WatchDigits,
    encode,
)
from pbx.rtp.media import Counters, MediaError, MediaStats, RecordingResult
from pbx.rtp.ports import PortPairAllocator
from pbx.rtp.relay import RCVBUF, MediaRelay, MediaSession
from pbx.runtime import tune_collector

MAX_UNSENT = 1024 * 1024  # bytes waiting in the control transport before stats are skipped
READ_SIZE = 256 * 1024

log = structlog.get_logger("pbx.rtp.worker")


class Worker(asyncio.Protocol):
    """The control side of one worker: decode, act on the relay in order, reply in batches."""

    def __init__(self, relay: MediaRelay, stats_interval: float) -> None:
        self.relay = relay
        self.stats_interval = stats_interval
        self.sessions: dict[str, MediaSession] = {}
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loop = asyncio.get_running_loop()
        self._decoder = Decoder(TO_WORKER)
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: list[Message] = []
        self._flush_pending = False
        self._transport: asyncio.Transport | None = None
        self._hello = False
        self._stats_timer: asyncio.TimerHandle | None = None
        self.prompts = PromptStore()
        self.stopped = False  # by SIGTERM (the daemon's orderly close), not by its death
        relay.on_timeout = self._timed_out

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._stats_timer = self._loop.call_later(self.stats_interval, self._stats_tick)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except ControlError as exc:
            log.error("media.worker_bad_control", pid=os.getpid(), error=str(exc))
            self._finish()
            return
        for msg in messages:
            self._inbox.put_nowait(msg)

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    # -- acting on messages ------------------------------------------------

    async def run(self) -> None:
        """Handle control messages in arrival order until the stream ends."""
        while True:
            msg = await self._inbox.get()
            if not self._hello and not isinstance(msg, Hello):
                log.error("media.worker_bad_control", pid=os.getpid(), error="no hello first")
                self._finish()
                return
            if isinstance(msg, Open):
                await self._open(msg.call_id)
            else:
                self._handle(msg)

    def _handle(self, msg: Message) -> None:
        if isinstance(msg, Hello):
            if msg.version != VERSION or self._hello:
                log.error("media.worker_bad_hello", pid=os.getpid(), version=msg.version)
                self._finish()
                return
            self._hello = True
            self._send(Ready(VERSION, os.getpid()))
        elif isinstance(msg, SetRemote):
            self._set_remote(msg)
        elif isinstance(msg, Arm):
            session = self.sessions.get(msg.call_id)
            if session is not None:
                session.arm()
        elif isinstance(msg, Close):
            self._close(msg.call_id)
        else:
            self._audio(msg)

    def _audio(self, msg: Message) -> None:
        if isinstance(msg, Prompt):
            try:
                self.prompts.put(msg)
            except ControlError as exc:
                log.error("media.worker_bad_control", pid=os.getpid(), error=str(exc))
                self._finish()
            return
        if isinstance(msg, Forget):
            self.prompts.forget(msg.key)
            return
        call_id = getattr(msg, "call_id", None)
        session = self.sessions.get(call_id) if isinstance(call_id, str) else None
        if session is not None:  # else closed, or its open failed: the daemon knows
            self._session_audio(session, msg)

    def _session_audio(self, session: MediaSession, msg: Message) -> None:
        if isinstance(msg, Play):
            self._play(session, msg)
        elif isinstance(msg, StopPlaying):
            session.stop_playing(msg.leg)
        elif isinstance(msg, Hold):
            session.hold(msg.on)
        elif isinstance(msg, WatchDigits):
            self._watch(session, msg)
        elif isinstance(msg, StartRecording):
            try:
                session.start_recording(msg.path)
            except MediaError as exc:
                self._send(Recorded(msg.call_id, 0, 0, str(exc)))
        elif isinstance(msg, StopRecording):
            was = session.recording is not None
            result = session.stop_recording()
            if was and result is not None:
                self._send(_recorded(msg.call_id, result))

    def _play(self, session: MediaSession, msg: Play) -> None:
        done = PlayDone(msg.call_id, msg.play_id)
        prompt = self.prompts.get(msg.key)
        if prompt is None:
            log.error("media.worker_unknown_prompt", pid=os.getpid(), call_id=msg.call_id,
                      key=msg.key)  # fmt: skip
            self._send(done)
            return
        payload_type, payload = prompt
        try:
            session.play_encoded(msg.leg, payload, payload_type, lambda: self._send(done))
        except MediaError:
            self._send(done)

    def _watch(self, session: MediaSession, msg: WatchDigits) -> None:
        if msg.payload_type is None:
            session.watch_digits(msg.leg, None, None)
            return
        call_id, leg = msg.call_id, msg.leg
        session.watch_digits(
            leg, msg.payload_type, lambda digit: self._send(Digit(call_id, leg, digit))
        )

    async def _open(self, call_id: str) -> None:
        try:
            session = await self.relay.open_session(call_id)
        except MediaError as exc:
            self._send(Failed(call_id, str(exc) or "media: open failed"))
            return
        except Exception as exc:  # OSError, or a bug: this call fails, the others go on
            log.exception("media.worker_open_failed", pid=os.getpid(), call_id=call_id)
            self._send(Failed(call_id, f"media: {type(exc).__name__}: {exc}"))
            return
        self.sessions[call_id] = session
        self._send(Opened(call_id, session.port("inbound"), session.port("outbound")))

    def _set_remote(self, msg: SetRemote) -> None:
        session = self.sessions.get(msg.call_id)
        if session is None:
            return  # its open failed (the daemon knows) or it is closed
        try:
            session.set_remote(msg.leg, msg.host, msg.port)
        except MediaError as exc:  # the daemon checks addresses first: should not happen
            del self.sessions[msg.call_id]
            session.close()
            self._send(Failed(msg.call_id, str(exc)))

    def _close(self, call_id: str) -> None:
        session = self.sessions.pop(call_id, None)
        if session is None:  # never opened here (open failed): nothing to count
            self._send(Closed(MediaStats(call_id, Counters(), Counters())))
            return
        recording = session.recording is not None
        stats = session.close()
        result = session.recording_result()
        if recording and result is not None:
            self._send(_recorded(call_id, result))
        self._send(Closed(stats))

    def _timed_out(self, call_id: str) -> None:
        if call_id in self.sessions:
            self._send(Timeout(call_id))

    # -- replies -------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        self._outbox.append(msg)
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        batch, self._outbox = self._outbox, []
        transport = self._transport
        if batch and transport is not None and not transport.is_closing():
            transport.write(encode(batch))

    def _stats_tick(self) -> None:
        self._stats_timer = self._loop.call_later(self.stats_interval, self._stats_tick)
        transport = self._transport
        if not self.sessions or transport is None:
            return
        if transport.get_write_buffer_size() > MAX_UNSENT:
            return
        self._send(Stats(tuple(s.snapshot() for s in self.sessions.values())))

    def handler_ended(self, task: asyncio.Task[None]) -> None:
        """The message handler stopped: log why (unless cancelled) and end the worker."""
        if not task.cancelled() and task.exception() is not None:
            log.error("media.worker_handler_failed", pid=os.getpid(), error=repr(task.exception()))
        self._finish()  # a worker that no longer handles messages must not linger

    def stop(self) -> None:
        """SIGTERM: end like an EOF (every session closed, recordings finished)."""
        log.info("media.worker_stopping", pid=os.getpid(), calls=len(self.sessions))
        self.stopped = True
        self._finish()

    def _finish(self) -> None:
        if self._stats_timer is not None:
            self._stats_timer.cancel()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        if not self.done.done():
            self.done.set_result(None)


def _recorded(call_id: str, result: RecordingResult) -> Recorded:
    return Recorded(call_id, round(result.seconds * 1000), result.bytes, result.error)


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(args: argparse.Namespace) -> None:
    """Serve the control stream on `args.fd` until it ends; then close every session."""
    loop = asyncio.get_running_loop()
    low, high = args.ports
    allocator = PortPairAllocator(low, high, args.quarantine)
    relay = MediaRelay(allocator, args.host, media_timeout=args.media_timeout, rcvbuf=args.rcvbuf)
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)
    worker = Worker(relay, args.stats_interval)
    await loop.create_unix_connection(lambda: worker, sock=sock)
    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    tune_collector()  # start-up done: keep full collections out of the packet path
    runner = asyncio.create_task(worker.run())
    runner.add_done_callback(worker.handler_ended)
    try:
        await worker.done
    finally:
        runner.cancel()
        if not worker.stopped:  # the daemon is gone: its records name no file yet
            for session in worker.sessions.values():
                session.abandon_recording()
        relay.close()


def _ports(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep or not low.isdigit() or not high.isdigit():
        raise argparse.ArgumentTypeError(f"ports must be LOW-HIGH (got {text!r})")
    return int(low), int(high)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pbx.rtp.worker", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="control stream file descriptor")
    parser.add_argument("--host", required=True, help="address the RTP sockets bind")
    parser.add_argument("--ports", type=_ports, required=True, help="this worker's LOW-HIGH")
    parser.add_argument("--media-timeout", type=float, default=60.0)
    parser.add_argument("--quarantine", type=float, default=5.0)
    parser.add_argument("--stats-interval", type=float, default=1.0)
    parser.add_argument("--rcvbuf", type=int, default=RCVBUF)
    parser.add_argument("--log-format", default="json")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the daemon's reload, sent to the group
    setup_logging(args.log_format, args.log_level)
    _raise_nofile()
    try:
        uvloop.run(serve(args))
    except (PbxError, OSError) as exc:  # bad host, range or fd: one line, exit 1
        log.error("media.worker_failed", pid=os.getpid(), error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
