"""The built-in relay in worker processes: `WorkerEngine`, a `MediaEngine` (I/O edge).

N worker processes (`pbx.rtp.worker`) each run one `MediaRelay` over their
own slice of the RTP port range, on their own core and GIL, so a call burst
in the daemon (signalling, the store) and the audio no longer hurt each
other. The daemon drives them over a socketpair each with the
`pbx.rtp.control` protocol; `WorkerSession` is the daemon's handle on one
call's session in one worker, stepped by `control.SESSION_TABLE`.

Decisions:
- Workers are `subprocess.Popen` children (`python -m pbx.rtp.worker`,
  the control socket passed with `pass_fds`), not asyncio subprocesses nor
  multiprocessing: `MediaEngine.close()` is synchronous and must reap the
  children without the event loop, and death is seen as EOF on the
  socketpair (the kernel closes it with the process), which needs no child
  watcher. The child's PYTHONPATH starts with the directory holding this
  `pbx` package, so a worker runs the daemon's own code.
- `pbx.config.default_workers()` (the `[rtp] workers` default): one per
  core beyond the first (the daemon's), at least 1, counted from the CPU
  affinity mask (containers pin cores).
- Ports: `control.split_ports` gives each worker an equal run of even/odd pairs; a
  restarted worker gets the same slice. A new session goes to the running
  worker with the fewest sessions.
- `open_session` waits at most `open_timeout` (default 2 s) for `Opened`,
  then sends `Close` and raises `MediaError`; `Failed` raises `MediaError`
  with the worker's reason. `set_remote` checks the address here (an IP of
  the engine's family, port 1..65535) so errors are raised to the caller,
  as the in-process relay does. `arm`, `set_remote` and `close` are sent
  without waiting, batched per loop wake-up; `Arm` and `Close`, which
  nothing waits on at once, wait up to `LAZY_FLUSH` for other messages to
  ride with. Each write wakes an idle worker, which costs the daemon
  ~40 us of CPU on a 2-vCPU VM (3.5 writes a call at 200 CPS before this).
- Counters: `snapshot()` is the last `Stats` (about 1 s old); `close()`
  returns the last known ones at once and the `Closed` reply replaces them;
  `await session.final_stats(timeout)` waits for that reply.
- A worker dies (EOF, or its stream is garbled, or it stops reading with
  more than `MAX_UNSENT` bytes queued): one log line (`media.worker_died`,
  or `media.worker_bad_control` naming the fault), the process is killed by
  its PID and reaped, every session it held that the call side had not
  closed gets `on_failure(call_id, "media_failed")` exactly once, and a new
  worker starts on the same slice: at once, then with a doubling delay
  (`RESTART_MIN`..`RESTART_MAX`) while it keeps dying within `QUICK_DEATH`
  seconds of starting. Meanwhile its share goes to the others.
- Audio (issue 13, `pbx.rtp.control` says the wire): the session methods
  send their message and return; `on_done` / `on_digit` run on the
  daemon's loop when the worker's `PlayDone` / `Digit` arrives. A prompt
  is encoded and sent to a worker the first time that worker plays it
  (`control.PromptCache` per worker, emptied when the worker is
  replaced); later calls send only its key. `start_recording` creates the
  file here first (so an unwritable directory raises `MediaError` at once,
  as in-process), the worker then writes it; the result arrives as
  `Recorded`, before `Closed`, so `recording_result()` after `release()`
  is the worker's. A worker that dies while recording: its file is
  repaired here in a thread (`recording.salvaged`: header fixed, a partial
  frame cut; at most the worker's unflushed 64 KiB buffer is lost) and the
  result carries `error = "media worker died"`, which the record notes.
  `release()` waits (bounded) for that repair.
- Known gap: a restarted worker's port allocator starts empty, so the
  dead calls' ports skip quarantine (late packets could reach a new call).
- `close()` ends every worker by its PID: SIGTERM, then SIGKILL after
  `stop_timeout`, and reaps them (blocking at most ~2x `stop_timeout`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import structlog

import pbx
from pbx.config import default_workers
from pbx.rtp.control import (
    FROM_WORKER,
    INPUT_OF,
    MAX_CALL_ID,
    MAX_PROMPT,
    VERSION,
    Close,
    Closed,
    ControlError,
    Decoder,
    Digit,
    Effect,
    Forget,
    FromWorker,
    Hello,
    Hold,
    Input,
    Open,
    Opened,
    Play,
    PlayDone,
    Prompt,
    PromptCache,
    Ready,
    Recorded,
    SessionState,
    SetRemote,
    StartRecording,
    Stats,
    StopPlaying,
    StopRecording,
    ToWorker,
    WatchDigits,
    encode,
    payload_size,
    prompt_key,
    session_step,
    split_ports,
)
from pbx.rtp.control import Arm as ArmMessage
from pbx.rtp.control import Failed as FailedMessage
from pbx.rtp.media import (
    Counters,
    Leg,
    MediaEngine,
    MediaError,
    MediaSession,
    MediaStats,
    OnDigit,
    OnDone,
    OnFailure,
    OnTimeout,
    RecordingResult,
)
from pbx.rtp.recording import salvaged
from pbx.rtp.relay import RCVBUF
from pbx.rtp.stream import encode_prompt

log = structlog.get_logger("pbx.rtp.workers")

FAILURE_REASON = "media_failed"
DIED_WHILE_RECORDING = "media worker died"
SALVAGE_TIMEOUT = 2.0
MAX_UNSENT = 8 * 1024 * 1024  # control bytes queued to a worker that does not read
START_TIMEOUT = 10.0  # interpreter start + imports on a busy box
RESTART_MIN = 0.1
RESTART_MAX = 5.0
QUICK_DEATH = 5.0


def _zero(call_id: str) -> MediaStats:
    return MediaStats(call_id, Counters(), Counters())


class WorkerSession:
    """One call's media session in a worker; made by `WorkerEngine.open_session`."""

    def __init__(self, engine: WorkerEngine, slot: _Slot, call_id: str) -> None:
        self._engine = engine
        self._slot = slot
        self._call_id = call_id
        self.state = SessionState.OPENING
        self.ports: dict[Leg, int] = {}
        self.timed_out = False
        self.failed = False
        self._stats = _zero(call_id)
        loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = loop.create_future()
        self._final: asyncio.Future[MediaStats] = loop.create_future()
        self._open_timer: asyncio.TimerHandle | None = None
        # audio: plays in flight by id, digit watchers, the recording's path and result
        self._play_ids = itertools.count(1)
        self._plays: dict[int, tuple[Leg, OnDone | None]] = {}
        self._digits: dict[Leg, OnDigit] = {}
        self._recording_path: str | None = None
        self._recording = False
        self._recorded: RecordingResult | None = None
        self._salvage: asyncio.Task[None] | None = None

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def worker(self) -> int:
        """Index of the worker that holds this session."""
        return self._slot.index

    @property
    def closed(self) -> bool:
        return self.state in (SessionState.CLOSING, SessionState.CLOSED)

    def port(self, leg: Leg) -> int:
        return self.ports[leg]

    def address(self, leg: Leg) -> tuple[str, int]:
        """(bound host, RTP port) of `leg`; the daemon may advertise another host."""
        return self._engine.host, self.ports[leg]

    def set_remote(self, leg: Leg, host: str, port: int) -> None:
        """Where `leg`'s media goes per its SDP; MediaError for an address we cannot reach."""
        address = self._engine.check_remote(host, port)
        if self.state is SessionState.OPEN:
            self._slot.send(SetRemote(self._call_id, leg, address, port))

    def arm(self) -> None:
        """Start the media timeout now (at answer)."""
        if self.state is SessionState.OPEN:
            self._slot.send(ArmMessage(self._call_id))

    def snapshot(self) -> MediaStats:
        """The last counters the worker reported (at most ~1 s old), final once closed."""
        return self._stats

    def close(self) -> MediaStats:
        """Ask the worker to close; returns the last known counters (idempotent)."""
        self._engine._apply(self, Input.CLOSE)
        return self._stats

    async def release(self) -> MediaStats:
        """Close, then the worker's final counters (at most 2 s later), and the recording's
        repair if its worker died (at most `SALVAGE_TIMEOUT` more)."""
        self.close()
        stats = await self.final_stats(2.0)
        if self._salvage is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._salvage), SALVAGE_TIMEOUT)
        return stats

    # -- audio (issue 13) -----------------------------------------------------

    def play(self, leg: Leg, pcm: bytes, payload_type: int, on_done: OnDone | None) -> None:
        """Have the worker play `pcm` to `leg`; `on_done()` when its `PlayDone` arrives."""
        self._check_open()
        if payload_type not in (0, 8):
            raise MediaError(f"media: payload type {payload_type} is not PCMU (0) or PCMA (8)")
        size = payload_size(pcm)
        if not 0 < size <= MAX_PROMPT:
            raise MediaError(f"media: a prompt must be 1 sample to {MAX_PROMPT // 8000} s long")
        self._drop_plays(leg)  # the worker's play replaces the leg's current one
        key = prompt_key(payload_type, pcm)
        self._slot.offer(key, payload_type, size, lambda: encode_prompt(pcm, payload_type))
        play_id = next(self._play_ids)
        self._plays[play_id] = (leg, on_done)
        self._slot.send(Play(self._call_id, leg, play_id, key))

    def stop_playing(self, leg: Leg) -> None:
        """Cut `leg`'s prompt short (no `on_done`)."""
        self._drop_plays(leg)
        if self.state is SessionState.OPEN:
            self._slot.send(StopPlaying(self._call_id, leg))

    def hold(self, on: bool) -> None:
        if self.state is SessionState.OPEN:
            self._slot.send(Hold(self._call_id, on))

    def watch_digits(self, leg: Leg, payload_type: int | None, on_digit: OnDigit | None) -> None:
        if payload_type is None or on_digit is None:
            self._digits.pop(leg, None)
            payload_type = None
        else:
            self._digits[leg] = on_digit
        if self.state is SessionState.OPEN:
            self._slot.send(WatchDigits(self._call_id, leg, payload_type))

    def start_recording(self, path: str) -> None:
        """Create `path` (MediaError if it cannot be), then have the worker record into it."""
        self._check_open()
        if self._recording:
            return
        try:
            with open(path, "wb"):  # the worker truncates it again and writes the header
                pass
        except OSError as exc:
            raise MediaError(f"cannot write {path}: {exc.strerror or exc}") from None
        self._recording_path, self._recording, self._recorded = path, True, None
        self._slot.send(StartRecording(self._call_id, path))

    def stop_recording(self) -> RecordingResult | None:
        """Ask the worker to stop; the result is `recording_result()` once it reported."""
        if self._recording:
            self._recording = False
            if self.state is SessionState.OPEN:
                self._slot.send(StopRecording(self._call_id))
        return self._recorded

    def recording_result(self) -> RecordingResult | None:
        return self._recorded

    def _check_open(self) -> None:
        if self.state is not SessionState.OPEN:
            raise MediaError(f"media: call {self._call_id} is {self.state.value}")

    def _drop_plays(self, leg: Leg) -> None:
        for play_id in [i for i, (on, _) in self._plays.items() if on == leg]:
            del self._plays[play_id]

    def _report(self, msg: PlayDone | Digit | Recorded) -> None:
        """A worker's audio report: the callbacks run here, on the daemon's loop."""
        if isinstance(msg, Recorded):
            self._recording = False
            if self._recording_path is not None:
                self._recorded = RecordingResult(
                    self._recording_path, msg.millis / 1000, msg.bytes, msg.error
                )
            return
        if self.closed:
            return  # the call is ending: no prompt or digit matters any more
        if isinstance(msg, PlayDone):
            entry = self._plays.pop(msg.play_id, None)
            if entry is not None and entry[1] is not None:
                entry[1]()
        else:
            on_digit = self._digits.get(msg.leg)
            if on_digit is not None:
                on_digit(msg.digit)

    def _start_salvage(self) -> None:
        """The worker died: make what it wrote playable, and say so in the result."""
        path = self._recording_path
        if path is None or self._recorded is not None or self._salvage is not None:
            return
        self._recording = False

        async def salvage() -> None:
            self._recorded = await asyncio.to_thread(salvaged, path, DIED_WHILE_RECORDING)
            log.warning("recording.salvaged", call_id=self._call_id, path=path,
                        seconds=self._recorded.seconds)  # fmt: skip

        self._salvage = asyncio.get_running_loop().create_task(salvage())

    async def final_stats(self, timeout: float = 2.0) -> MediaStats:  # noqa: ASYNC109 - a bound, not a deadline to cancel
        """The counters of the worker's `Closed` reply (or the last known after `timeout`)."""
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(self._final), timeout)
        return self._stats


class _Channel(asyncio.Protocol):
    """The daemon's end of one worker's control socket."""

    def __init__(self, engine: WorkerEngine, slot: _Slot, generation: int) -> None:
        self.engine, self.slot, self.generation = engine, slot, generation

    def data_received(self, data: bytes) -> None:
        self.engine._received(self.slot, self.generation, data)

    def eof_received(self) -> bool:
        self.engine._lost(self.slot, self.generation, "control stream ended")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.engine._lost(self.slot, self.generation, "control stream lost")


LAZY_FLUSH = 0.01  # s an Arm or Close may wait for company (a call ends ~10 ms later at most)
_LAZY = (ArmMessage, Close)


class _Slot:
    """One worker position: its port slice, and the process currently serving it."""

    def __init__(self, index: int, ports: tuple[int, int]) -> None:
        self.index = index
        self.ports = ports
        self.generation = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.transport: asyncio.Transport | None = None
        self.decoder = Decoder(FROM_WORKER)
        self.ready: asyncio.Future[None] | None = None
        self.started_at = 0.0
        self.quick_deaths = 0
        self.sessions: dict[str, WorkerSession] = {}
        self.restarts = 0
        self.up = asyncio.Event()  # set from Ready until the worker is lost
        self.stats_batches = 0  # Stats messages received from this slot's workers
        self.on_stuck: Callable[[], None] | None = None
        self.prompts = PromptCache()  # what this slot's worker holds (emptied on restart)
        self._outbox: list[ToWorker] = []
        self._flush: asyncio.Handle | None = None
        self._lazy = False  # the pending flush is LAZY_FLUSH away

    @property
    def running(self) -> bool:
        return self.ready is not None and self.ready.done() and not self.ready.exception()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def send(self, msg: ToWorker) -> None:
        """Queue `msg`; the queue is written as one batch on the next loop turn
        (within `LAZY_FLUSH` while it holds only Arm and Close messages)."""
        if self.transport is None:
            return  # between a death and its restart: the sessions are failed anyway
        self._outbox.append(msg)
        lazy = isinstance(msg, _LAZY)
        if self._flush is not None and (lazy or not self._lazy):
            return  # a write is due at least as soon as this message needs one
        if self._flush is not None:
            self._flush.cancel()  # the lazy timer: this message goes on the next loop turn
        loop = asyncio.get_running_loop()
        if lazy:
            self._flush = loop.call_later(LAZY_FLUSH, self.flush)
        else:
            self._flush = loop.call_soon(self.flush)
        self._lazy = lazy

    def offer(self, key: str, payload_type: int, size: int, encode: Callable[[], bytes]) -> None:
        """Send the worker the prompt `key` unless it holds it (forgetting old ones first)."""
        if self.transport is None:
            return
        send, evicted = self.prompts.need(key, size)
        for old in evicted:
            self.send(Forget(old))
        if send:
            self.send(Prompt(key, payload_type, encode()))

    def flush(self) -> None:
        self._flush, self._lazy = None, False
        batch, self._outbox = self._outbox, []
        transport = self.transport
        if batch and transport is not None and not transport.is_closing():
            transport.write(encode(batch))
            if transport.get_write_buffer_size() > MAX_UNSENT and self.on_stuck is not None:
                self.on_stuck()  # the worker stopped reading: treat it as dead


class WorkerEngine:
    """Every media session of the daemon, spread over N relay worker processes.

    `await engine.start()` before the first `open_session`; `close()` at the end.
    """

    plays_audio = True  # prompts and recording (pbx.rtp.media), done in the workers
    advertises = False  # see pbx.rtp.media.MediaEngine

    def __init__(
        self,
        host: str,
        port_low: int,
        port_high: int,
        *,
        workers: int | None = None,
        media_timeout: float = 60.0,
        quarantine: float = 5.0,
        stats_interval: float = 1.0,
        open_timeout: float = 2.0,
        stop_timeout: float = 2.0,
        rcvbuf: int = RCVBUF,
        log_format: str = "json",
        log_level: str = "info",
        command: Sequence[str] | None = None,
    ) -> None:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise MediaError(f"media: relay host {host!r} is not an IP address") from None
        count = default_workers() if workers is None else workers
        self.host = host
        self.version = ip.version
        try:
            slices = split_ports(port_low, port_high, count)
        except ControlError as exc:
            raise MediaError(str(exc)) from None
        self.slots = [_Slot(i, s) for i, s in enumerate(slices)]
        self.media_timeout = media_timeout
        self.quarantine = quarantine
        self.stats_interval = stats_interval
        self.open_timeout = open_timeout
        self.stop_timeout = stop_timeout
        self.rcvbuf = rcvbuf
        self.log_format = log_format
        self.log_level = log_level
        self.command = list(command or [sys.executable, "-m", "pbx.rtp.worker"])
        self.on_timeout: OnTimeout | None = None
        self.on_failure: OnFailure | None = None
        self._sessions: dict[str, WorkerSession] = {}
        self._restarts: set[asyncio.Task[None]] = set()
        self._stats_arrived = asyncio.Event()
        self._closed = False

    # -- the MediaEngine interface -------------------------------------------

    def __len__(self) -> int:
        return sum(1 for s in self._sessions.values() if not s.closed)

    def session(self, call_id: str) -> WorkerSession | None:
        return self._sessions.get(call_id)

    @property
    def pids(self) -> list[int]:
        """PIDs of the worker processes now started (for /metrics, tests, benchmarks)."""
        return [slot.pid for slot in self.slots if slot.pid is not None]

    async def start(self) -> None:
        """Start every worker and wait for its `Ready`; MediaError (all stopped) if one fails."""
        results = await asyncio.gather(
            *(self._start(slot) for slot in self.slots), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            self.close()
            raise MediaError(f"media: workers did not start: {errors[0]}")

    async def wait_running(self, index: int, within: float) -> None:
        """Until worker `index` has answered Ready (again); TimeoutError after `within` s."""
        async with asyncio.timeout(within):
            await self.slots[index].up.wait()

    async def wait_stats(self, within: float) -> None:
        """Until every worker holding sessions sent one more Stats batch (fresh counters)."""
        want = {s.index: s.stats_batches + 1 for s in self.slots if s.sessions and s.running}
        async with asyncio.timeout(within):
            while any(self.slots[i].stats_batches < n for i, n in want.items()):
                self._stats_arrived.clear()
                await self._stats_arrived.wait()

    async def open_session(self, call_id: str) -> WorkerSession:
        """Open both legs in the least busy worker; raises `MediaError`."""
        slot = self._pick(call_id)
        session = WorkerSession(self, slot, call_id)
        self._sessions[call_id] = session
        slot.sessions[call_id] = session
        slot.send(Open(call_id))
        loop = asyncio.get_running_loop()
        session._open_timer = loop.call_later(
            self.open_timeout, self._apply, session, Input.OPEN_TIMED_OUT,
            f"media: worker {slot.index} did not open the session in {self.open_timeout}s",
        )  # fmt: skip
        try:
            await asyncio.shield(session._opened)
        except asyncio.CancelledError:  # the caller gave up: no one will close it
            if session.state is SessionState.OPENING:
                self._apply(session, Input.OPEN_TIMED_OUT, "media: open cancelled")
            else:
                self._apply(session, Input.CLOSE)
            raise
        return session

    def close(self) -> list[MediaStats]:
        """Stop every worker (SIGTERM, SIGKILL after stop_timeout), reap them; last counters."""
        stats = [s.snapshot() for s in self._sessions.values() if not s.closed]
        self._closed = True
        for task in self._restarts:
            task.cancel()
        for session in list(self._sessions.values()):
            self._apply(session, Input.ENGINE_CLOSED, "media: engine closed")
        for slot in self.slots:
            self._detach(slot)
        _stop([slot.proc for slot in self.slots if slot.proc is not None], self.stop_timeout)
        return stats

    def check_remote(self, host: str, port: int) -> str:
        """`host` normalised, if the engine's sockets can reach it; else MediaError."""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise MediaError(f"media: remote {host!r} is not an IP address") from None
        if not 0 < port <= 65535:
            raise MediaError(f"media: remote port {port} out of range")
        if ip.version != self.version:
            raise MediaError(f"media: remote {host} is not reachable from relay host {self.host}")
        return ip.compressed

    # -- sessions ------------------------------------------------------------

    def _pick(self, call_id: str) -> _Slot:
        if self._closed:
            raise MediaError("media: engine closed")
        if not call_id or len(call_id) > MAX_CALL_ID:
            raise MediaError(f"media: call id must have 1..{MAX_CALL_ID} characters")
        if call_id in self._sessions:
            raise MediaError(f"media: call {call_id} already has a session")
        running = [slot for slot in self.slots if slot.running]
        if not running:
            raise MediaError("media: no media worker is running")
        return min(running, key=lambda slot: len(slot.sessions))

    def _apply(
        self,
        session: WorkerSession,
        event: Input,
        reason: str = "",
        stats: MediaStats | None = None,
        audio: PlayDone | Digit | Recorded | None = None,
    ) -> None:
        """Step `session` through the table and carry out the effects in order.

        The state changes before any effect runs, so a callback that closes
        the session (on_failure, on_timeout) sees where it stands.
        """
        session.state, effects = session_step(session.state, event)
        for effect in effects:
            if effect is Effect.UPDATE:
                if stats is not None:
                    session._stats = stats
            elif effect is Effect.AUDIO:
                if audio is not None:
                    self._audio_report(session, audio)
            elif effect is Effect.SALVAGE_RECORDING:
                session._start_salvage()
            else:
                self._effect(session, effect, reason)

    def _effect(self, session: WorkerSession, effect: Effect, reason: str) -> None:
        if effect is Effect.RESOLVE_OPEN or effect is Effect.REJECT_OPEN:
            if session._open_timer is not None:
                session._open_timer.cancel()
            if not session._opened.done():
                if effect is Effect.RESOLVE_OPEN:
                    session._opened.set_result(None)
                else:
                    session._opened.set_exception(MediaError(reason or "media: open failed"))
                    session._opened.exception()  # retrieved: nobody may be waiting any more
        elif effect is Effect.SEND_CLOSE:
            session._slot.send(Close(session.call_id))
        elif effect is Effect.FINAL:
            if not session._final.done():
                session._final.set_result(session._stats)
        elif effect is Effect.FORGET:
            if self._sessions.get(session.call_id) is session:
                del self._sessions[session.call_id]
            session._slot.sessions.pop(session.call_id, None)
        elif effect is Effect.REPORT_TIMEOUT and not session.timed_out:
            session.timed_out = True
            self._notify(self.on_timeout, session.call_id)
        elif effect is Effect.REPORT_FAILURE and not session.failed:
            session.failed = True
            self._notify(self.on_failure, session.call_id, FAILURE_REASON)

    def _audio_report(self, session: WorkerSession, msg: PlayDone | Digit | Recorded) -> None:
        try:
            session._report(msg)
        except Exception:  # a failing callback must not break this worker's channel
            log.exception("media.callback_failed", call_id=session.call_id)

    def _notify(self, callback: OnTimeout | OnFailure | None, *args: str) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # one failing call must not stop the others' reports
            log.exception("media.callback_failed", call_id=args[0])

    # -- control messages from workers --------------------------------------

    def _received(self, slot: _Slot, generation: int, data: bytes) -> None:
        if generation != slot.generation:
            return
        try:
            for msg in slot.decoder.feed(data):
                self._message(slot, cast(FromWorker, msg))  # Decoder(FROM_WORKER)
        except ControlError as exc:
            log.error("media.worker_bad_control", worker=slot.index, pid=slot.pid, error=str(exc))
            self._lost(slot, generation, "garbled control stream")

    def _message(self, slot: _Slot, msg: FromWorker) -> None:
        if isinstance(msg, Ready):
            ready = slot.ready
            if ready is None or ready.done() or msg.version != VERSION or msg.pid != slot.pid:
                raise ControlError(f"media control: unexpected ready {msg}")
            ready.set_result(None)
            slot.up.set()
            return
        if not slot.running:
            raise ControlError("media control: message before ready")
        if isinstance(msg, Stats):
            slot.stats_batches += 1
            self._stats_arrived.set()
            for entry in msg.entries:
                session = slot.sessions.get(entry.call_id)
                if session is not None:
                    self._apply(session, Input.STATS, stats=entry)
            return
        session = slot.sessions.get(msg.call_id)
        if session is None:
            return  # forgotten already (e.g. its open failed): nothing to do
        if isinstance(msg, Opened):
            session.ports = {"inbound": msg.inbound_port, "outbound": msg.outbound_port}
        reason = msg.reason if isinstance(msg, FailedMessage) else ""
        stats = msg.stats if isinstance(msg, Closed) else None
        audio = msg if isinstance(msg, PlayDone | Digit | Recorded) else None
        self._apply(session, INPUT_OF[type(msg)], reason, stats, audio)

    # -- worker processes ------------------------------------------------------

    async def _start(self, slot: _Slot) -> None:
        """Spawn the worker of `slot`, wait for its Ready; raises on failure (slot left down)."""
        loop = asyncio.get_running_loop()
        parent = self._spawn(slot)
        slot.generation += 1
        slot.decoder = Decoder(FROM_WORKER)
        slot.prompts.clear()
        slot.ready = loop.create_future()
        slot.started_at = time.monotonic()
        generation = slot.generation
        parent.setblocking(False)
        transport, _ = await loop.create_unix_connection(
            lambda: _Channel(self, slot, generation), sock=parent
        )
        slot.transport = transport
        slot.on_stuck = lambda: self._lost(slot, generation, "worker stopped reading")
        slot.send(Hello(VERSION))
        try:
            await asyncio.wait_for(asyncio.shield(slot.ready), START_TIMEOUT)
        except TimeoutError:
            self._lost(slot, generation, f"no ready within {START_TIMEOUT}s")
            raise MediaError(f"media: worker {slot.index} did not start") from None

    def _spawn(self, slot: _Slot) -> socket.socket:
        """Fork/exec the worker of `slot` (a few ms); returns the daemon's end of its socket."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            slot.proc = subprocess.Popen(  # noqa: S603 - our own worker module with argv built from settings
                self._argv(slot, child.fileno()), pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL, env=_child_env(),
            )  # fmt: skip
        except OSError:
            parent.close()
            raise
        finally:
            child.close()
        return parent

    def _argv(self, slot: _Slot, fd: int) -> list[str]:
        low, high = slot.ports
        return [
            *self.command, "--fd", str(fd), "--host", self.host, "--ports", f"{low}-{high}",
            "--media-timeout", str(self.media_timeout), "--quarantine", str(self.quarantine),
            "--stats-interval", str(self.stats_interval), "--rcvbuf", str(self.rcvbuf),
            "--log-format", self.log_format, "--log-level", self.log_level,
        ]  # fmt: skip

    def _lost(self, slot: _Slot, generation: int, reason: str) -> None:
        """The worker of `slot` is gone or broken: kill, reap, fail its sessions, restart."""
        if generation != slot.generation or self._closed:
            return
        was_running = slot.running
        slot.generation += 1  # later callbacks of this channel are stale
        slot.up.clear()
        ready = slot.ready
        if ready is not None and not ready.done():  # died starting: its starter retries
            ready.set_exception(MediaError(f"media: worker {slot.index}: {reason}"))
            ready.exception()
        self._detach(slot)
        code = _stop([slot.proc], self.stop_timeout)[0] if slot.proc is not None else None
        log.warning(
            "media.worker_died", worker=slot.index, pid=slot.pid, exit=code, reason=reason,
            calls=len(slot.sessions),
        )  # fmt: skip
        for session in list(slot.sessions.values()):
            self._apply(session, Input.WORKER_DIED, f"media: worker {slot.index} died")
        slot.sessions.clear()
        if not was_running:
            return
        task = asyncio.get_running_loop().create_task(self._restart(slot))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    def _detach(self, slot: _Slot) -> None:
        transport, slot.transport = slot.transport, None
        if transport is not None:
            transport.abort()

    async def _restart(self, slot: _Slot) -> None:
        """Start `slot` again: at once, then doubling delays while it dies young."""
        while not self._closed:
            young = time.monotonic() - slot.started_at < QUICK_DEATH
            slot.quick_deaths = slot.quick_deaths + 1 if young else 0
            if slot.quick_deaths > 1:
                await asyncio.sleep(min(RESTART_MIN * 2 ** (slot.quick_deaths - 2), RESTART_MAX))
            try:
                await self._start(slot)
            except (MediaError, OSError) as exc:
                log.warning("media.worker_restart_failed", worker=slot.index, error=str(exc))
                continue
            slot.restarts += 1
            log.info("media.worker_restarted", worker=slot.index, pid=slot.pid)
            return


def _child_env() -> dict[str, str]:
    """The environment, with this `pbx` package first on the worker's import path."""
    env = dict(os.environ)
    root = str(Path(pbx.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _stop(procs: Sequence[subprocess.Popen[bytes]], bound: float) -> list[int | None]:
    """SIGTERM each live process, SIGKILL those alive after `bound`, reap; exit codes."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + bound
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(bound)
    return [proc.returncode for proc in procs]


def _conforms(engine: WorkerEngine, session: WorkerSession) -> tuple[MediaEngine, MediaSession]:
    """Never called: makes mypy prove the engine implements the media interface."""
    return engine, session
