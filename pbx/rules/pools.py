"""Number pools: which tracking number a new website visit holds (pure).

A source's enabled tracking numbers form its pool. Each active visit holds
one pool number exclusively until the visit expires (`expires_at`, pushed
forward by every ping); a number is free again at the moment its last hold
expires. A new visit takes the free number released longest ago (never held
first, then by position): least recently used, so a number just released is
not shown to a new visitor while a late call for the previous one may still
arrive. With no free number the pool is exhausted: the visit shows the
source's fallback number and is marked `fallback`.

Time is an argument: ISO 8601 UTC strings in the one store format
(`YYYY-MM-DDTHH:MM:SS.ffffffZ`), which order correctly as strings.

Decisions (the spec is silent):
- Exhausted with no fallback number configured: no number (`Pick.number`
  None): the page keeps its own number, which is never misattributed. The
  visit is still marked `fallback`.
- A fallback visit holds nothing: only non-fallback visits count as holds
  (the store's `last_held` and `active` ignore fallback visits), so a call
  on a fallback number is attributed by number alone, never to a visit.
- A pool of one number is still a pool: one visit at a time holds it.
- `prefer`, when given, picks among the free numbers (GeoContact); it gets
  them in LRU order and must return one of them.
- The store holds the number, not this module: `ranked` gives the free
  numbers in the order a new visit should try them (the `preferred` first
  picks of `prefer`, then the rest least recently used first), and the
  store's `visits.add_holding` takes the first that is still free when the
  visit is written, in one atomic step. A visit that loses a number to a
  concurrent one so gets the next best, and the visitor API holds no lock
  while it reads the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

MAX_POOL = 1000  # numbers considered per source; more is a provisioning mistake


@dataclass(frozen=True)
class PoolNumber:
    """A pool member: its E.164 number, order, and when its last hold ends (None: never held)."""

    e164: str
    position: int = 0
    held_until: str | None = None


@dataclass(frozen=True)
class Pick:
    """The number a new visit shows; `fallback` when the pool had no free number."""

    number: str | None
    fallback: bool = False


def pool_of(numbers: Sequence[str], held_until: Mapping[str, str]) -> list[PoolNumber]:
    """Pool members in the given order, each with its latest hold end from the store."""
    return [
        PoolNumber(e164, position, held_until.get(e164))
        for position, e164 in enumerate(numbers[:MAX_POOL])
    ]


def is_free(number: PoolNumber, now: str) -> bool:
    """Free when never held, or its last hold expired at or before `now`."""
    return number.held_until is None or number.held_until <= now


def free_numbers(pool: Sequence[PoolNumber], now: str) -> list[PoolNumber]:
    """The free numbers, least recently used first (never held first, then by position)."""
    free = [n for n in pool if is_free(n, now)]
    return sorted(free, key=lambda n: (n.held_until is not None, n.held_until or "", n.position))


def ranked(
    pool: Sequence[PoolNumber],
    now: str,
    prefer: Callable[[Sequence[PoolNumber]], PoolNumber] | None = None,
    preferred: int = 1,
) -> list[PoolNumber]:
    """The free numbers at `now`, best first: up to `preferred` successive picks of
    `prefer` (each among what is left), then the rest least recently used first."""
    rest = free_numbers(pool, now)
    if prefer is None:
        return rest
    head: list[PoolNumber] = []
    for _ in range(min(preferred, len(rest))):
        chosen = prefer(rest)
        if chosen not in rest:
            chosen = rest[0]  # a `prefer` bug must not break exclusivity
        head.append(chosen)
        rest = [n for n in rest if n.e164 != chosen.e164]
    return head + rest


def choose(
    pool: Sequence[PoolNumber],
    now: str,
    fallback_number: str | None,
    prefer: Callable[[Sequence[PoolNumber]], PoolNumber] | None = None,
) -> Pick:
    """The number a new visit holds at `now` if nothing else takes one first."""
    best = ranked(pool, now, prefer)
    if not best:
        return Pick(fallback_number, fallback=True)
    return Pick(best[0].e164)
