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
