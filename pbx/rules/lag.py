"""Overload from the event loop's lag: when to refuse new calls (pure: samples and time in).

The daemon samples how late a periodic timer fires (`feed(lag, now)`): work
queues there before it shows anywhere else (INVITE->200 grew from 11 ms at
200 CPS to 1.4 s at 400 CPS on a 2-core box while no call failed). The
estimator keeps an exponentially weighted mean of the lag and says
`overloaded` past `high` seconds, and back to normal only below `low`
(hysteresis, so the gate does not flap at the boundary). While overloaded,
new INVITEs get 503 + Retry-After at once: calls already admitted keep a
short setup time and the daemon never collapses; the carrier sends the
excess to its backup route.

Decisions: `alpha` 0.3 per sample (samples every 50 ms: ~150 ms to react);
a single sample over `spike` (default 2 s: a stalled loop) trips at once.
The default threshold (`calls.max_loop_lag` 0.25 s) was chosen on bench/load.py:
0.1 s shed calls at 200 CPS that the daemon still answered within 400 ms.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LagEstimator:
    high: float = 0.1  # seconds of mean lag that mean "overloaded"
    low: float = 0.03  # ... and below which the daemon takes calls again
    alpha: float = 0.3
    spike: float = 2.0
    mean: float = 0.0
    overloaded: bool = False
    trips: int = 0  # times it went into overload (for the metric)

    def feed(self, lag: float, now: float) -> bool:
        """One sample of timer lateness (s); returns whether the loop is overloaded now."""
        lag = max(0.0, lag)
        self.mean += self.alpha * (lag - self.mean)
        if not self.overloaded and (self.mean > self.high or lag > self.spike):
            self.overloaded = True
            self.trips += 1
        elif self.overloaded and self.mean < self.low and lag < self.high:
            self.overloaded = False
        return self.overloaded


@dataclass
class BusyShedder:
    """The share of new calls to refuse so the loop's thread stays under `target` busy.

    `feed(busy, now)` takes the fraction of the last sample interval the event
    loop's thread ran or was runnable waiting for a core (its demand, not
    the box's load: an idle loop blocked in its poll counts nothing). Work
    queues once that nears 1.0 (the socket buffers fill and INVITE->200
    grows to seconds while the loop lag stays modest), so the shedder aims
    below it: an integral controller moves `share` up while the smoothed
    busy fraction is over `target` and down while under, and `refuse()`
    turns the share into a deterministic sequence (every 1/share-th call)
    rather than a random one. A refused INVITE costs a parse and a 503 (a
    tenth of a call), which is why refusing part of the load keeps the
    admitted rate near capacity instead of collapsing it.

    Decisions: `target` 0.9 (`calls.max_loop_busy`: 0.85 shed calls at 175 CPS
    that the loop still set up in 20 ms p99; 0.9 held 200 CPS clean and took
    238 CPS of 400 offered with p99 284 ms); `gain` 0.5 per unit
    of error per sample (at 50 ms samples a fully busy loop raises the share
    by 1.5 per second; an idle one drops it to 0 within a few samples).
    """

    target: float = 0.9
    gain: float = 0.5
    alpha: float = 0.5
    busy: float = 0.0  # smoothed busy fraction
    share: float = 0.0  # fraction of new calls refused now
    credit: float = 0.0
    refused: int = 0

    def feed(self, busy: float, now: float) -> float:
        """One sample of the busy fraction (0..1); returns the share refused from now on."""
        busy = min(1.0, max(0.0, busy))
        self.busy += self.alpha * (busy - self.busy)
        self.share = min(1.0, max(0.0, self.share + self.gain * (self.busy - self.target)))
        if self.share == 0.0:
            self.credit = 0.0
        return self.share

    def refuse(self) -> bool:
        """Whether to refuse this new call (every 1/share-th one)."""
        if self.share <= 0.0:
            return False
        self.credit += self.share
        if self.credit >= 1.0:
            self.credit -= 1.0
            self.refused += 1
            return True
        return False
