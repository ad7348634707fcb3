"""Per-call actors and the transaction user that routes SIP events to them (asyncio).

`CallManager` is the SIP agent's transaction user: it finds the call a
request, response or timeout belongs to (by Call-ID, or by client
transaction key) and posts the event to that call's `CallRunner`. A new
INVITE starts a runner task, so the receive path never awaits.

A `CallRunner` is one task with one inbox per call (STYLE.md "per-call
actor"): it admits the call (`pbx.call.intake`), then feeds events and timer
expiries to the pure `Call` and executes the returned actions in order, so
"write the ringing row, then send the outbound INVITE" holds by
construction, and one slow database write never stalls another call.
The runner keeps no call state of its own: the media session, its
counters and the record as last written live in the `Call`
(`pbx.call.state`). The concurrent-call slot is taken by `_admit` and given
back in one place, when the call's final record is stored (or the call
crashed), not after the linger that waits for the last BYE answer.

Audio (issue 13): `PlayPrompt`, `StopPrompt`, `StartRecording`,
`WatchDigits` and `HoldMedia` go to the media session; its callbacks come
back through the inbox as `PromptDone` / `DigitReceived`. Recordings are
`<[recording] dir>/<record id>.wav`; a recording that cannot start or fails
later is one `recording.failed` log line and a `media_note` in the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import structlog

from pbx.attribution.integrations import Integrations, outbox_for, progress_items
from pbx.call.controller import Call, Input
from pbx.call.intake import IntakeContext, Refusal, admit
from pbx.call.legs import LegBuilder
from pbx.call.model import (
    Action,
    ArmMedia,
    CallSetup,
    CloseMedia,
    DigitReceived,
    Finished,
    FinishRecord,
    HoldMedia,
    InboundLeg,
    Leg,
    LocalAddress,
    MediaFailed,
    MediaLost,
    MediaOpened,
    MediaTimedOut,
    OpenMedia,
    PlayPrompt,
    PromptDone,
    SendRequest,
    SendResponse,
    SendStateless,
    SetMediaRemote,
    Shutdown,
    StartRecording,
    StopPrompt,
    WatchDigits,
    WriteRecord,
)
from pbx.records import CallRecord, Disposition, iso_utc
from pbx.rtp.media import MediaEngine, MediaError
from pbx.rules.limits import ReportLimit
from pbx.service.metrics import Metrics
from pbx.service.overload import Overload
from pbx.service.records import RecordWriter
from pbx.sip.agent import SipAgent
from pbx.sip.ids import IdSource
from pbx.sip.message import Request
from pbx.sip.responses import make_response
from pbx.sip.status import SipParseError
from pbx.sip.transaction import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionError,
    TransactionKey,
    TransactionTimedOut,
)
from pbx.store import Store

log = structlog.get_logger("pbx.call")

# A call that has ended but still waits on a BYE answer is dropped after this
# long even if the transaction layer never reports back (64*T1, RFC 3261 §17).
LINGER = 32.0
K = TypeVar("K")


@dataclass
class CallContext:
    """What every call needs from the daemon."""

    agent: SipAgent
    store: Store
    relay: MediaEngine
    ids: IdSource
    media_address: str
    local: dict[str, LocalAddress]
    default_region: str = "US"
    ring_timeout: float = 30.0
    block_status: int = 603
    node: str | None = None  # this node's name ([node] id), on every call record
    wall_clock: Callable[[], float] = time.time
    integrations: Integrations = field(default_factory=Integrations)
    overload: Overload = field(default_factory=Overload)  # admission limits (issue 7)
    metrics: Metrics = field(default_factory=Metrics)
    recording_dir: Path = Path("data/recordings")  # [recording] dir


@dataclass
class CallManager:
    """The transaction user: routes SIP events to call runners, starts new ones."""

    ctx: CallContext
    by_call_id: dict[str, CallRunner] = field(default_factory=dict)
    by_key: dict[TransactionKey, CallRunner] = field(default_factory=dict)
    by_record: dict[str, CallRunner] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    draining: bool = False
    lease_lost: bool = False  # the node lost its store lease: refuse new calls (503)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    records: RecordWriter = field(init=False)  # every record write; survives a stuck store
    refusals: RefusalLog = field(default_factory=lambda: RefusalLog())

    def __post_init__(self) -> None:
        self.records = RecordWriter(self.ctx.store, time.monotonic)

    # -- TransactionUser -----------------------------------------------------------

    def on_request(self, event: RequestReceived, now: float) -> bool:
        request = event.request
        runner = self.by_call_id.get(request.call_id)
        if runner is not None:
            runner.post(event, now)
            return True
        if request.method != "INVITE" or request.to.tag is not None:
            return False  # the agent's defaults: 481 in dialog, OPTIONS 200, ...
        self.ctx.metrics.invite_received()
        refused = self._gate(event, now)
        if refused is not None:
            self.ctx.metrics.rejected_for(refused)
            self.refusals.note(refused, event, now)
            retry = [("Retry-After", "30" if self.draining else str(self.ctx.overload.retry_after))]
            self.ctx.agent.respond(event.key, make_response(request, 503, headers=retry))
            return True
        self._start(event, now)
        return True

    def on_cancel(self, event: CancelReceived, now: float) -> bool:
        runner = self.by_call_id.get(event.request.call_id)
        if runner is None:
            return False
        runner.post(event, now)
        return True

    def on_ack(self, event: AckReceived, now: float) -> None:
        runner = self.by_call_id.get(event.request.call_id)
        if runner is not None:
            runner.post(event, now)

    def on_response(self, event: ResponseReceived, now: float) -> None:
        runner = self.by_key.get(event.key) or self.by_call_id.get(event.response.call_id)
        if runner is not None:
            runner.post(event, now)

    def on_stray_response(self, event: StrayResponse, now: float) -> None:
        runner = self.by_call_id.get(event.response.call_id)
        if runner is not None:
            runner.post(event, now)

    def on_timeout(self, event: TransactionTimedOut, now: float) -> None:
        runner = self.by_key.get(event.key)
        if runner is not None:
            runner.post(event, now)

    # -- media and lifecycle ---------------------------------------------------------

    def on_media_timeout(self, record_id: str) -> None:
        runner = self.by_record.get(record_id)
        if runner is not None:
            runner.post(MediaTimedOut(), self.ctx.agent.now())

    def on_media_failure(self, record_id: str, reason: str) -> None:
        """The engine lost the session (its worker died): end the call, reason recorded."""
        runner = self.by_record.get(record_id)
        if runner is not None:
            runner.log.warning("media.lost", reason=reason)
            runner.post(MediaLost(reason), self.ctx.agent.now())

    def _gate(self, event: RequestReceived, now: float) -> str | None:
        """Why a new INVITE is refused at once (503), before any lookup (pbx.service.overload)."""
        if self.draining:
            return "draining"
        if self.lease_lost:
            return "lease_lost"
        if not self.records.gate():
            return "store_unavailable"
        return self.ctx.overload.gate(event.source.host, len(self.tasks), now)

    def _start(self, event: RequestReceived, now: float) -> None:
        runner = CallRunner(self, event, now)
        self.index(self.by_call_id, event.request.call_id, runner)
        self.index(self.by_key, event.key, runner)
        task = asyncio.get_running_loop().create_task(runner.run())
        self.tasks.add(task)
        self.idle.clear()
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not self.tasks:
            self.idle.set()

    def index(
        self, table: dict[K, CallRunner], name: K, runner: CallRunner, replace: bool = True
    ) -> None:
        """File `runner` under `name`; `forget` removes exactly these entries (no scan)."""
        if replace or name not in table:
            table[name] = runner
            runner.names.append((table, name))

    def forget(self, runner: CallRunner) -> None:
        for table, name in runner.names:
            if table.get(name) is runner:
                del table[name]
        runner.names.clear()

    async def drain(self, grace: float) -> None:
        """Refuse new calls, let calls end by themselves for `grace` s, then end them."""
        self.draining = True
        if self.tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), grace)
        now = self.ctx.agent.now()
        for runner in set(self.by_call_id.values()):
            runner.post(Shutdown(), now)
        if self.tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), 5.0)


class CallRunner:
    """One call's task: admission, then the pure `Call` driven by its inbox."""

    def __init__(self, manager: CallManager, event: RequestReceived, now: float) -> None:
        self.manager = manager
        self.ctx = manager.ctx
        self.first = event
        self.started = now
        self.inbox: asyncio.Queue[tuple[Input, float]] = asyncio.Queue()
        self.call: Call | None = None
        self.done = False
        self.slot = False  # holds a concurrent-call slot (`Overload.acquire`)
        self.diverted: list[Action] | None = None  # actions replacing the rest of a batch
        self.setup_seen = False  # the setup-latency metric was observed
        self.log = log.bind(call_id=event.request.call_id)
        self.names: list[tuple[dict[Any, CallRunner], Any]] = []  # where the manager files it

    def post(self, event: Input, now: float) -> None:
        self.inbox.put_nowait((event, now))

    async def run(self) -> None:
        try:
            self.call = await self._admit()
            if self.call is not None:
                await self._execute(self.call.start(self.started))
                await self._loop()
        except Exception:
            self.log.exception("call.crashed")
            await self._salvage()
        finally:
            await self._close_media()
            self._release()
            self.manager.forget(self)

    def _release(self) -> None:
        """Give the concurrent-call slot back (once): the record is final or the call is gone."""
        if self.slot:
            self.slot = False
            self.ctx.overload.release(self)

    async def _loop(self) -> None:
        assert self.call is not None
        loop = asyncio.get_running_loop()
        ended_at: float | None = None
        while not self.done:
            deadline = self.call.next_deadline()
            if self.call.state == "ended":
                ended_at = ended_at or loop.time()
                deadline = min(deadline or ended_at + LINGER, ended_at + LINGER)
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                event, now = await self._next(timeout)
            except TimeoutError:
                if ended_at is not None and loop.time() >= ended_at + LINGER:
                    return
                await self._execute(self.call.handle_timer(loop.time()))
                continue
            self._log_event(event)
            await self._execute(self.call.handle(event, now))

    async def _next(self, wait: float | None) -> tuple[Input, float]:
        """The next event: at once when one is queued, else wait (no task per event)."""
        if not self.inbox.empty():
            return self.inbox.get_nowait()
        async with asyncio.timeout(wait):
            return await self.inbox.get()

    def _log_event(self, event: Input) -> None:
        """One debug line per SIP event of the call, with its leg and branch (never per RTP packet).

        At info a call logs only its state changes (admitted or refused,
        ringing, answered, ended) and problems: 4 lines per answered call
        instead of 12 (each JSON line costs ~30-60 us on the event loop).
        """
        inbound_id = self.first.request.call_id
        match event:
            case ResponseReceived(response, key):
                leg = "inbound" if response.call_id == inbound_id else "outbound"
                self.log.debug("sip.response", leg=leg, branch=key.branch, method=key.method,
                              status=response.status)  # fmt: skip
            case RequestReceived(request) | CancelReceived(request) | AckReceived(request):
                leg = "inbound" if request.call_id == inbound_id else "outbound"
                self.log.debug("sip.request", leg=leg, method=request.method, branch=request.branch)
            case TransactionTimedOut(key, timer):
                self.log.debug("sip.timeout", branch=key.branch, method=key.method,
                               timer=timer.name)  # fmt: skip
            case _:
                self.log.debug("call.event", kind=type(event).__name__)

    # -- admission -------------------------------------------------------------------

    async def _admit(self) -> Call | None:
        request, key = self.first.request, self.first.key
        ictx = IntakeContext(
            self.ctx.store,
            self.ctx.default_region,
            self.ctx.ring_timeout,
            self.ctx.local,
            self.ctx.block_status,
            self.ctx.node,
        )
        wall = self.ctx.wall_clock()
        records = self.manager.records
        try:
            result: CallSetup | Refusal = await admit(
                ictx, request, self.first.source, self.started, wall
            )
        except records.errors as exc:  # the store cannot be read: refuse, never crash
            records.failed(exc)
            after = self.ctx.overload.retry_after
            result = Refusal(503, "store unavailable", None, retry_after=after)
        if not isinstance(result, Refusal):
            result = self.ctx.overload.acquire(self, result, iso_utc(wall))
            self.slot = not isinstance(result, Refusal)
        if isinstance(result, Refusal):
            self.log.info("call.refused", status=result.status, reason=result.reason,
                          source=self.first.source.host, dialled=_dialled(request))  # fmt: skip
            self.ctx.metrics.refused(result)
            if result.record is not None:
                await self.manager.records.insert(result.record)
            retry = [("Retry-After", str(result.retry_after))] if result.retry_after else []
            tag = self.ctx.ids.tag()
            self._respond(key, make_response(request, result.status, to_tag=tag, headers=retry))
            return None
        builder = LegBuilder(self.ctx.ids, self.ctx.local)  # one per call, both legs
        inbound = InboundLeg(
            invite=request,
            key=key,
            source=self.first.source,
            to_tag=self.ctx.ids.tag(),
            origin=builder.new_origin(),
        )
        self.manager.index(self.manager.by_record, result.record.id, self)
        self.log = self.log.bind(record=result.record.id, number=result.record.tracking_number)
        self.log.info("call.admitted", source=result.record.source, caller=result.caller)
        return Call(result, inbound, builder)

    # -- actions -----------------------------------------------------------------------

    async def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            await self._perform(action)
            if self.diverted is not None:  # the rest no longer applies (the call was refused)
                diverted, self.diverted = self.diverted, None
                await self._execute(diverted)
                return

    async def _perform(self, action: Action) -> None:  # noqa: C901 - one arm per action type
        match action:
            case SendResponse(key, response):
                self._respond(key, response)
            case SendRequest(request, dest):
                self._send(request, dest)
            case SendStateless(message, dest):
                if isinstance(message, Request):
                    self.ctx.agent.send_ack(message, dest)
            case OpenMedia():
                await self._open_media()
            case SetMediaRemote(leg, host, port):
                self._set_remote(leg, host, port)
            case ArmMedia():
                if self.call is not None and self.call.media is not None:
                    self.call.media.arm()
            case CloseMedia():
                await self._close_media()
            case PlayPrompt() | StopPrompt() | StartRecording() | WatchDigits() | HoldMedia():
                self._audio(action)
            case WriteRecord(record):
                await self._write(record)
            case FinishRecord(record):
                await self._finish(record)
            case Finished():
                self.done = True

    def _respond(self, key: TransactionKey, response: Any) -> None:
        if not self.setup_seen and key == self.first.key:
            self.setup_seen = self.ctx.metrics.setup_progress(
                response.status, self._now() - self.started
            )
        try:
            self.ctx.agent.respond(key, response)
        except TransactionError as exc:
            self.log.warning("sip.respond_failed", status=response.status, error=str(exc))

    def _send(self, request: Request, dest: Any) -> None:
        try:
            key = self.ctx.agent.send_request(request, dest)
        except TransactionError as exc:
            self.log.warning("sip.send_failed", method=request.method, error=str(exc))
            return
        self.manager.index(self.manager.by_key, key, self)
        self.manager.index(self.manager.by_call_id, request.call_id, self, replace=False)
        leg = "inbound" if request.call_id == self.first.request.call_id else "outbound"
        self.log.debug("sip.request_sent", leg=leg, method=request.method, branch=request.branch,
                      leg_call_id=request.call_id, dest=str(dest))  # fmt: skip

    async def _open_media(self) -> None:
        call = self.call
        assert call is not None
        try:
            media = call.media = await self.ctx.relay.open_session(call.record.id)
        except (MediaError, OSError) as exc:
            self.log.warning("media.open_failed", error=str(exc))
            await self._execute(call.handle(MediaFailed(str(exc)), self._now()))
            return
        self.ctx.metrics.media_opened(media)
        inbound, outbound = media.address("inbound"), media.address("outbound")
        if not self.ctx.relay.advertises:  # the relay binds a wildcard or a NATed address
            inbound = (self.ctx.media_address, inbound[1])
            outbound = (self.ctx.media_address, outbound[1])
        opened = MediaOpened(inbound, outbound)
        self.log.debug("media.opened", inbound=opened.inbound[1], outbound=opened.outbound[1])
        await self._execute(call.handle(opened, self._now()))

    def _set_remote(self, leg: Leg, host: str, port: int) -> None:
        media = self.call.media if self.call is not None else None
        if media is None or _unspecified(host):
            return
        try:
            media.set_remote(leg, host, port)
        except MediaError as exc:  # e.g. an IPv6 peer on an IPv4 relay: latching still works
            self.log.warning("media.bad_remote", leg=leg, host=host, port=port, error=str(exc))

    async def _close_media(self) -> None:
        call = self.call
        if call is not None and call.media is not None and call.media_stats is None:
            media = call.media
            call.media_stats = media.snapshot()  # if the wait below is cut short
            with contextlib.suppress(MediaError, TimeoutError):
                call.media_stats = await media.release()
            self.ctx.metrics.media_closed(media, call.media_stats)
            call.recording = media.recording_result()
            if call.recording is not None and call.recording.error is not None:
                self.log.warning("recording.failed", path=call.recording.path,
                                 error=call.recording.error)  # fmt: skip

    def _audio(
        self, action: PlayPrompt | StopPrompt | StartRecording | WatchDigits | HoldMedia
    ) -> None:
        """Prompts and recording (issue 13): the engine does the work, the call decides."""
        call = self.call
        media = call.media if call is not None else None
        if call is None or media is None or media.closed:
            return
        match action:
            case PlayPrompt(leg, name, pcm, payload_type):
                done = PromptDone(leg, name)
                try:
                    media.play(leg, pcm, payload_type, lambda: self.post(done, self._now()))
                except MediaError as exc:
                    self.log.warning("media.play_failed", leg=leg, prompt=name, error=str(exc))
                    self.post(done, self._now())
            case StopPrompt(leg):
                media.stop_playing(leg)
            case HoldMedia(on):
                media.hold(on)
            case StartRecording():
                path = self.ctx.recording_dir / f"{call.record.id}.wav"
                try:
                    media.start_recording(str(path))
                except MediaError as exc:  # unwritable dir: the call goes on, one line
                    call.recording_error = str(exc)
                    self.log.warning("recording.failed", path=str(path), error=str(exc))
            case WatchDigits(leg, payload_type):
                if payload_type is None:
                    media.watch_digits(leg, None, None)
                    return
                media.watch_digits(
                    leg,
                    payload_type,
                    lambda digit: self.post(DigitReceived(leg, digit), self._now()),
                )

    async def _write(self, record: CallRecord) -> None:
        assert self.call is not None
        existing = self.call.written  # the call's only writer is its runner: no read back
        records = self.manager.records
        if existing is None:
            if not await records.insert(record):  # no ringing row: do not take the call
                self.log.warning("call.refused", status=503, reason="store unavailable",
                                 cause=records.cause, source=self.first.source.host,
                                 dialled=_dialled(self.first.request))  # fmt: skip
                self.diverted = self.call.reject(503, self._now(), "store unavailable")
                return
        else:
            await records.update(record, existing)
        self.call.written = record
        wall = iso_utc(self.ctx.wall_clock())
        for item in progress_items(existing, record, self.ctx.integrations, uuid4().hex, wall):
            await records.progress(item)
        self.log.info("call.state", disposition=str(record.disposition))

    async def _finish(self, record: CallRecord) -> None:
        assert self.call is not None
        record = self.call.completed(record)
        source = None
        if record.source:
            try:  # the source's own GA4 property; the final row matters more than that
                source = await self.ctx.store.sources.get(record.source)
            except self.manager.records.errors as exc:
                self.manager.records.failed(exc)
        wall = iso_utc(self.ctx.wall_clock())
        outbox = outbox_for(record, source, self.ctx.integrations, uuid4().hex, wall)
        await self.manager.records.finish(record, outbox, self.call.written)
        self.call.written = record
        self._release()
        self.ctx.metrics.call_finished(record)
        self.log.info(
            "call.ended",
            disposition=str(record.disposition),
            status=record.sip_status,
            hangup_by=record.hangup_by,
            talk=record.talk_seconds,
            packets_in_out=record.packets_in_out,
            packets_out_in=record.packets_out_in,
        )

    async def _salvage(self) -> None:
        """After a bug: answer the caller if nobody did and close the record."""
        call = self.call
        with contextlib.suppress(Exception):
            if call is None or not call.inbound.answered:
                response = make_response(self.first.request, 500, to_tag=self.ctx.ids.tag())
                self._respond(self.first.key, response)
            if call is not None and not call.record.is_final:
                await self._close_media()
                await self._finish(replace(call.record, disposition=Disposition.FAILED))

    def _now(self) -> float:
        return asyncio.get_running_loop().time()


def _dialled(request: Request) -> str:
    """The number (or user) a refused INVITE dialled, for its log line."""
    try:
        return request.request_uri.user or request.to.uri.user or ""
    except SipParseError:
        return ""


class RefusalLog:
    """One log line per INVITE refused at the gate, at most `per_second` a second per reason.

    Beyond capacity is exactly when a line per refused call would cost the
    most: the excess is counted and named on the next line of that reason.
    """

    def __init__(self, per_second: int = 5) -> None:
        self._limit = ReportLimit(1.0, count=per_second)

    def note(self, reason: str, event: RequestReceived, now: float) -> None:
        report = self._limit.report(reason, now)
        if report is None:
            return
        log.info("call.refused", status=503, reason=reason, source=event.source.host,
                 dialled=_dialled(event.request), call_id=event.request.call_id,
                 not_logged_before=report.held_back)  # fmt: skip


def _unspecified(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")
