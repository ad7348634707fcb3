"""Call-record writes that survive a store that cannot write (asyncio, store I/O).

Every call record write of the daemon goes through one `RecordWriter`. The
store may stop taking writes while calls are up: a full disk or a read-only
file system under SQLite, a lock held past the busy timeout, a PostgreSQL
server restarting or unreachable. Then:

- the ringing row of a NEW call cannot be written: `insert` returns False and
  the caller refuses the call with 503 + Retry-After (a carrier fails over
  to its backup route) instead of taking a call it cannot record;
- the writer is `degraded`: new INVITEs are refused at once (`gate`), one
  log line per minute names the cause, a metric counts the refusals
  (`rejected_total{reason="store_unavailable"}`) and `/health` says so;
- updates and final rows of calls already up are kept in a bounded queue
  (newest state per call; a final row supersedes an update) and retried
  every `retry_interval` seconds, in order, until the store takes them;
  calls go on meanwhile;
- once the store takes a write again (a queued one, or the first call
  admitted after `cooldown` seconds: a half-open breaker, since reads may
  work on a full disk while writes do not), the writer is healthy and calls
  are taken again, without a restart.

Decisions: at most `max_queued` calls' writes are held; past that the oldest
is dropped with a loud log line (its ringing row exists, so the crash sweep
marks it `interrupted` later: the record is degraded, not lost). A later
write of a dropped call is written whole: its row is behind the `previous`
the runner knows, so "only what changed" would leave it wrong. Progress
events (`call.started`, `call.answered`) that cannot be queued are dropped
and counted; the final row's events ride with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from pbx.records import CallRecord
from pbx.store import OutboxItem, Store
from pbx.store.connect import store_errors

log = structlog.get_logger("pbx.records")

LOG_EVERY = 60.0  # seconds between "the store still cannot write" lines


@dataclass
class _Queued:
    record: CallRecord
    final: bool
    outbox: list[OutboxItem] = field(default_factory=list)


class RecordWriter:
    def __init__(
        self,
        store: Store,
        clock: Callable[[], float],
        *,
        retry_interval: float = 1.0,
        cooldown: float = 5.0,
        max_queued: int = 10_000,
    ) -> None:
        self.store = store
        self.clock = clock
        self.retry_interval = retry_interval
        self.cooldown = cooldown
        self.max_queued = max_queued
        self.failed_at: float | None = None  # when the store last refused a write
        self.cause = ""
        self.dropped = 0  # writes given up (queue full, progress events)
        self._queue: OrderedDict[str, _Queued] = OrderedDict()
        self._behind: OrderedDict[str, None] = OrderedDict()  # dropped: write these whole
        self._logged_at = -LOG_EVERY
        # The engine errors of the store in use (its backend is imported by now);
        # anything else is a bug and propagates to the call's runner.
        self._errors: tuple[type[BaseException], ...] = (*store_errors(), OSError)
        self._task: asyncio.Task[None] | None = None

    # -- state -------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """Writes are queued, or the store refused one less than `cooldown` s ago.

        Past the cooldown with nothing queued the breaker is half-open: the
        next call tries the store (and a failure degrades again at once).
        """
        return bool(self._queue) or not self.gate()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def gate(self) -> bool:
        """True when a new call may be tried: healthy, or cooling off long enough."""
        if self.failed_at is None:
            return True
        return self.clock() - self.failed_at >= self.cooldown

    # -- writes ------------------------------------------------------------------------

    async def insert(self, record: CallRecord) -> bool:
        """The ringing row; False when the store cannot take it (refuse the call)."""
        try:
            await self.store.calls.insert(record)
        except self._errors as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    async def update(self, record: CallRecord, previous: CallRecord | None = None) -> None:
        """`previous` (the row as last written) lets the store write only what changed;
        a held record is later written whole, so it needs none."""
        if record.id in self._queue:
            self._hold(record, final=False)
            return
        try:
            await self.store.calls.update(record, self._since(record, previous))
        except self._errors as exc:
            self._failed(exc)
            self._hold(record, final=False)
            return
        self._written(record)

    async def finish(
        self, record: CallRecord, outbox: Sequence[OutboxItem], previous: CallRecord | None = None
    ) -> None:
        """The final row; `previous` as for `update`."""
        if record.id in self._queue:
            self._hold(record, final=True, outbox=outbox)
            return
        try:
            await self.store.calls.finish(record, outbox, self._since(record, previous))
        except self._errors as exc:
            self._failed(exc)
            self._hold(record, final=True, outbox=outbox)
            return
        self._written(record)

    def _since(self, record: CallRecord, previous: CallRecord | None) -> CallRecord | None:
        """`previous`, unless a held write of this call was dropped (its row is older)."""
        return None if record.id in self._behind else previous

    def _written(self, record: CallRecord) -> None:
        self._behind.pop(record.id, None)
        self._recovered()

    async def progress(self, item: OutboxItem) -> None:
        """A call.started / call.answered event: best effort while degraded."""
        try:
            await self.store.outbox.add(item)
        except self._errors as exc:
            self._failed(exc)
            self.dropped += 1

    # -- the queue ---------------------------------------------------------------------

    def _hold(self, record: CallRecord, *, final: bool, outbox: Sequence[OutboxItem] = ()) -> None:
        held = self._queue.pop(record.id, None)
        if held is not None and held.final and not final:
            self._queue[record.id] = held  # a final row is never replaced by an update
            return
        self._queue[record.id] = _Queued(record, final, list(outbox))
        while len(self._queue) > self.max_queued:
            call_id, _ = self._queue.popitem(last=False)
            self.dropped += 1
            self._behind[call_id] = None
            if len(self._behind) > self.max_queued:
                self._behind.popitem(last=False)
            log.error("record.dropped", record=call_id, queued=len(self._queue),
                      hint="store refused writes too long; the crash sweep marks it")  # fmt: skip
        self._ensure_retrying()

    def _ensure_retrying(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._retry())

    async def _retry(self) -> None:
        while self._queue:
            await asyncio.sleep(self.retry_interval)
            await self.flush()

    async def flush(self) -> None:
        """Write what is queued, oldest first; stop at the first refusal."""
        while self._queue:
            call_id, held = next(iter(self._queue.items()))
            try:
                if held.final:
                    await self.store.calls.finish(held.record, held.outbox)
                else:
                    await self.store.calls.update(held.record)
            except self._errors as exc:
                self._failed(exc)
                return
            if self._queue.get(call_id) is held:
                del self._queue[call_id]
            self._recovered()

    # -- health ------------------------------------------------------------------------

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """What a store operation raises when the store itself is in trouble."""
        return self._errors

    def failed(self, exc: BaseException) -> None:
        """A store read failed too (e.g. at admission): the same degraded state."""
        self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        first = self.failed_at is None
        self.failed_at = self.clock()
        self.cause = " ".join(str(exc).split()) or type(exc).__name__
        if first or self.failed_at - self._logged_at >= LOG_EVERY:
            self._logged_at = self.failed_at
            log.error("store.unwritable", cause=self.cause, queued=len(self._queue),
                      action="new calls get 503 until the store takes writes again")  # fmt: skip

    def _recovered(self) -> None:
        if self.failed_at is not None and not self._queue:
            log.warning("store.writable", after=round(self.clock() - self.failed_at, 1))
            self.failed_at = None

    async def close(self) -> None:
        """One last flush (bounded by the caller), then stop retrying."""
        with contextlib.suppress(Exception):
            await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
