"""RTP/RTCP port-pair allocator over the configured range (pure).

RFC 3550 §11: RTP uses an even port and RTCP the next odd one. Each pair is
named by its even RTP port. Free pairs sit in a deque (O(1) allocate and
release); released pairs wait in a quarantine deque until `now + quarantine`
so late packets of a finished call never reach the next one (DESIGN.md,
"sharp edges").

Decisions where the spec is silent:
- `low` is rounded up to even; a pair needs both ports inside [low, high], so
  an odd `high` is the last RTCP port and an even `high` is left unused.
- Free pairs are handed out oldest-released first (FIFO), which spreads
  reuse over the whole range.
- Quarantine is a FIFO: a pair leaves it only when it and every pair released
  before it are due. With a monotonic `now` this is exact; if `now` ever went
  backwards a pair would wait longer, never shorter.
- Releasing a port that is not in use (double release, never allocated, odd
  port) raises `PortError`: it is a bug in the caller, not peer input.
- A pair the relay could not bind (someone else holds it) is released like
  any other, so it is retried only after quarantine.
"""

from __future__ import annotations

from collections import deque

from pbx.errors import ConfigError, PbxError

MIN_PORT = 1024  # below this needs root and collides with well-known services
MAX_PORT = 65535


class PortError(PbxError):
    """A port was released that is not in use (a caller bug)."""


class PortPairAllocator:
    """Even RTP / odd RTCP port pairs from `[low, high]` with release quarantine."""

    def __init__(self, low: int, high: int, quarantine: float) -> None:
        first = low + (low % 2)
        if not MIN_PORT <= low <= high <= MAX_PORT:
            raise ConfigError(
                f"rtp ports: range {low}-{high} must lie within {MIN_PORT}-{MAX_PORT}"
            )
        if first + 1 > high:
            raise ConfigError(f"rtp ports: range {low}-{high} holds no even/odd pair")
        if quarantine < 0:
            raise ConfigError(f"rtp ports: quarantine {quarantine} must not be negative")
        self.low = low
        self.high = high
        self.quarantine = quarantine
        self._free: deque[int] = deque(range(first, high, 2))
        self._quarantined: deque[tuple[float, int]] = deque()
        self._in_use: set[int] = set()
        self.capacity = len(self._free)

    def allocate(self, now: float) -> int | None:
        """The RTP port of a free pair (RTCP is +1), or None when all are taken."""
        self._thaw(now)
        if not self._free:
            return None
        port = self._free.popleft()
        self._in_use.add(port)
        return port

    def release(self, port: int, now: float) -> None:
        """Return a pair; it becomes free again at `now + quarantine`."""
        if port not in self._in_use:
            raise PortError(f"rtp port {port} released but not in use")
        self._in_use.remove(port)
        self._quarantined.append((now + self.quarantine, port))

    @property
    def in_use(self) -> int:
        """How many pairs are handed out."""
        return len(self._in_use)

    def is_in_use(self, port: int) -> bool:
        """True if the pair named by `port` is handed out."""
        return port in self._in_use

    def free_count(self, now: float) -> int:
        """How many pairs `allocate(now)` could still hand out."""
        self._thaw(now)
        return len(self._free)

    def _thaw(self, now: float) -> None:
        quarantined = self._quarantined
        while quarantined and quarantined[0][0] <= now:
            self._free.append(quarantined.popleft()[1])
