"""Process-wide runtime set-up shared by `pbx serve` and its media workers (no I/O).

Only what every long-running pbx process wants once its start-up is done:
the garbage collector tuned for short, rare full passes.
"""

from __future__ import annotations

import gc
import time

FULL_COLLECTION_EVERY = 100  # gen-1 collections per full one (CPython's default: 10)
# The daemon's automatic full passes: this many gen-1 collections (about 20 min
# at 250 CPS); before that it runs them itself while no call is up.
FULL_COLLECTION_UNDER_LOAD = 5_000
QUIET_CHECK_INTERVAL = 1.0  # seconds between the daemon's quiet checks


def tune_collector(full_every: int = FULL_COLLECTION_EVERY) -> None:
    """Keep the cyclic collector's full passes short and rare (call setup p99, relay delay).

    Measured at 150 CPS (bench/load.py): full (gen-2) collections paused the
    loop for up to 146 ms and found nothing to free - calls release their
    objects by reference counting - and INVITE->200 p99 was 132 ms. Two
    changes, p99 12 ms after: everything start-up built (modules,
    phonenumbers metadata, apps, settings) lives as long as the daemon, so
    `gc.freeze()` moves it out of every later pass; and a full pass runs
    after `FULL_COLLECTION_EVERY` gen-1 passes instead of 10, so the pause
    that walks every live transaction comes ten times less often. Young
    generations are collected as before (cycles are still freed). A media
    worker calls it too, once its control channel is up.

    The daemon passes `FULL_COLLECTION_UNDER_LOAD` and calls
    `collect_when_quiet` every second: at 250 CPS a full pass walked ~530,000
    live objects for 280-420 ms every ~25 s, freeing nothing, and made
    INVITE->200 p99 500+ ms and sipp time out calls. Run while no call is
    up, the same pass costs nothing anyone hears; the automatic one stays as
    the bound on what cyclic garbage can hold under load that never stops.
    """
    gc.freeze()
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, full_every)


def full_pass_due(gen1_collections: int, calls_up: int) -> bool:
    """A quiet moment with enough young-generation work behind it (pure)."""
    return calls_up == 0 and gen1_collections >= FULL_COLLECTION_EVERY


def collect_when_quiet(calls_up: int) -> float | None:
    """Run the full pass now if `full_pass_due`; its duration in seconds, or None."""
    if not full_pass_due(gc.get_count()[2], calls_up):
        return None
    start = time.perf_counter()
    gc.collect()
    return time.perf_counter() - start
