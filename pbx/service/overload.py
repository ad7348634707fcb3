"""Admission control for new calls around the pure `rules.limits` (no I/O, time passed in).

The call path asks twice (issue 7, "admission control"):

1. `gate(host, tasks, now)`, synchronously when a new INVITE arrives, before
   any task or database read: the hard cap on call tasks (`overload`) and
   new calls per second from that source address (`max_cps_per_source`).
   Refused here, the INVITE gets 503 + Retry-After and nothing else: no
   record, since the number is not looked up (a burst is exactly when
   lookups must not be spent).
2. `acquire(token, setup, wall)`, after intake admitted the call (trunk and
   tracking number known), before anything is dialed: the concurrent-call
   limits (global, per trunk, per number). Refused here, the caller gets
   503 + Retry-After and a `rejected` record with `sip_reason` naming the
   limit (`over calls.max_per_number`). `release(token)` when the call's
   record is final or its task ends, whichever comes first.

Decisions:
- `calls.max_concurrent` is checked at step 2 so the refused call gets a
  record; step 1 still caps the number of call tasks (admitted or being
  admitted) at `max_concurrent + ADMISSION_SLACK`, or `MAX_CALL_TASKS`
  when unlimited, so memory stays bounded whatever arrives.
- The per-source CPS bucket holds `max(1, rate)` tokens: one second's worth
  of calls may arrive at once.
- Flood guard exemptions (`trunk_exemption`) use the same trunk ACL as
  intake (`rules.admission.trunk_for_source`): allow lists, or an IP host
  when a trunk has no list; see `pbx.rules.limits` for why trunks are exempt.
- Retry-After is `calls.retry_after` seconds for every limit (RFC 3261
  §21.5.4 and §20.33: the caller may retry after that long).
- Beyond capacity (issue 12): `LagMonitor` samples the event loop's lag
  every `LAG_INTERVAL` and `pbx.rules.lag` decides; while the loop is
  overloaded, step 1 refuses new INVITEs (`loop_lag`), whatever the CPS.
  `calls.max_loop_lag` sets the mean lag that counts (0 = off).
- At capacity, before any lag shows: the same monitor measures the loop
  thread's busy fraction and `pbx.rules.lag.BusyShedder` refuses the share
  of new INVITEs (`loop_busy`) that keeps it under `calls.max_loop_busy`
  (0 = off): at twice the capacity, about half get 503 at once and the rest
  keep a short setup, instead of every call queueing for seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace

from pbx.call.intake import Refusal
from pbx.call.model import CallSetup
from pbx.config import CallSettings, FloodSettings
from pbx.records import Disposition
from pbx.rules.admission import TrunkAcl, trunk_for_source
from pbx.rules.lag import BusyShedder, LagEstimator
from pbx.rules.limits import CallLimits, FloodConfig, FloodGuard, RateLimiter
from pbx.store import Trunk

MAX_CALL_TASKS = 10_000  # call tasks at once when no limit is configured
ADMISSION_SLACK = 64  # call tasks beyond max_concurrent that may be in admission at once
OVERLOAD = "overload"
CPS = "max_cps_per_source"
LOOP_LAG = "loop_lag"
LOOP_BUSY = "loop_busy"
LAG_INTERVAL = 0.05  # seconds between loop-lag samples
SCHEDSTAT = "/proc/thread-self/schedstat"  # ns running, ns runnable-waiting, timeslices


class LagMonitor:
    """Samples how late a timer fires on the running loop, and how much of the time since
    the last sample the loop's thread wanted the CPU; the estimators decide.

    "Wanted the CPU" is the thread's time running plus its time runnable but
    waiting for a core (Linux `/proc/thread-self/schedstat`): on a box where
    other processes take the cores, a saturated loop runs less than it wants,
    so its CPU time alone would understate the load and never shed. Where
    schedstat is missing, the thread's CPU time (`time.thread_time`) stands in.
    """

    def __init__(self, estimator: LagEstimator | None, shedder: BusyShedder | None = None) -> None:
        self.estimator = estimator
        self.shedder = shedder
        self._handle: asyncio.TimerHandle | None = None
        self._stat: int | None = None
        self._demand = 0.0
        self._wall = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:  # opened on the loop's thread, so thread-self is the loop's thread
            self._stat = os.open(SCHEDSTAT, os.O_RDONLY)
        except OSError:
            self._stat = None
        self._demand, self._wall = self._demanded(), loop.time()
        self._schedule(loop, loop.time() + LAG_INTERVAL)

    def _demanded(self) -> float:
        """Seconds the loop's thread ran or waited to run so far."""
        if self._stat is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                running, waiting = os.pread(self._stat, 128, 0).split()[:2]
                return (int(running) + int(waiting)) / 1e9
        return time.thread_time()

    def _schedule(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        self._handle = loop.call_at(due, self._sample, loop, due)

    def _sample(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        now, demand = loop.time(), self._demanded()
        if self.estimator is not None:
            self.estimator.feed(now - due, now)
        if self.shedder is not None and now > self._wall:
            self.shedder.feed((demand - self._demand) / (now - self._wall), now)
        self._demand, self._wall = demand, now
        self._schedule(loop, now + LAG_INTERVAL)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._stat is not None:
            os.close(self._stat)
            self._stat = None


class Overload:
    """The daemon's admission limits; see the module docstring."""

    def __init__(self, calls: CallSettings | None = None) -> None:
        calls = calls or CallSettings()
        self.cps = RateLimiter(calls.max_cps_per_source)
        self.limits = CallLimits(calls.max_concurrent, calls.max_per_trunk, calls.max_per_number)
        self.retry_after = calls.retry_after
        cap = calls.max_concurrent + ADMISSION_SLACK if calls.max_concurrent else MAX_CALL_TASKS
        self.max_tasks = min(cap, MAX_CALL_TASKS)
        high = calls.max_loop_lag
        self.lag = LagEstimator(high=high, low=high * 0.3) if high > 0 else None
        busy = calls.max_loop_busy
        self.busy = BusyShedder(target=busy) if busy > 0 else None

    def monitor(self) -> LagMonitor | None:
        """The sampler feeding this daemon's lag and busy estimators (None if both are off)."""
        if self.lag is None and self.busy is None:
            return None
        return LagMonitor(self.lag, self.busy)

    @property
    def active(self) -> int:
        """Calls holding a slot (admitted, not finished)."""
        return self.limits.active

    def gate(self, host: str, tasks: int, now: float) -> str | None:
        """Step 1 for a new INVITE from `host`; the refusing reason or None."""
        if tasks >= self.max_tasks:
            return OVERLOAD
        if self.lag is not None and self.lag.overloaded:
            return LOOP_LAG
        if self.busy is not None and self.busy.refuse():
            return LOOP_BUSY
        if not self.cps.allow(host, now):
            return CPS
        return None

    def acquire(self, token: Hashable, setup: CallSetup, wall: str) -> CallSetup | Refusal:
        """Step 2: a slot for the admitted call `token`, or a 503 refusal with its record.

        `wall` is the ISO 8601 UTC time the refusal is recorded at.
        """
        record = setup.record
        refused = self.limits.acquire(token, record.trunk, record.tracking_number)
        if refused is None:
            return setup
        reason = f"over calls.{refused}"
        final = replace(
            record,
            disposition=Disposition.REJECTED,
            sip_status=503,
            sip_reason=reason,
            ended_at=wall,
            hangup_by="system",
        )
        return Refusal(503, reason, final, retry_after=self.retry_after)

    def release(self, token: Hashable) -> None:
        self.limits.release(token)


def flood_guard(settings: FloodSettings) -> FloodGuard:
    """The SIP agent's flood guard from config `[flood]`."""
    return FloodGuard(
        FloodConfig(
            rate=settings.rate,
            burst=settings.burst,
            ban_after=settings.ban_after,
            window=settings.window,
            ban_seconds=settings.ban_seconds,
            max_keys=settings.max_addresses,
        )
    )


def trunk_exemption(trunks: Sequence[Trunk]) -> Callable[[str], bool]:
    """`exempt(host)`: True for an address an enabled trunk sends from (its ACL, as intake)."""
    acls = [TrunkAcl(t.name, t.allow, t.host) for t in trunks if t.enabled]

    def exempt(host: str) -> bool:
        return trunk_for_source(acls, host) is not None

    return exempt
