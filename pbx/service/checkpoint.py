"""Media checkpoints: note on live call records when media last flowed (I/O, asyncio).

A crash (power cut, kill -9) ends calls without their final write; the
next start's sweep (`store.calls.mark_interrupted`) marks them
`interrupted`. So that such a record still tells how long the parties
talked, this task looks at the live media sessions every `interval`
seconds and, for each whose packet counters grew since the last look,
stamps `media_at` (now) on its record (`store.calls.touch_media`). The sweep
then gives an answered, interrupted call the talk time from `answered_at`
to its last `media_at`.

Decisions:
- Precision is `interval` (30 s by default): one small UPDATE per interval
  for all calls with media, whatever the call count, instead of a write per
  packet or per second.
- A session whose counters did not move (hold, one-way silence, a dead
  peer) is not stamped: the talk time of an interrupted call ends at its
  last media, not at the crash.
- A store error is logged and the next interval tries again: checkpoints
  are best effort, they never affect calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable

import structlog

from pbx.records import iso_utc
from pbx.rtp.media import MediaSession, MediaStats
from pbx.store import Store

log = structlog.get_logger("pbx.service.checkpoint")

INTERVAL = 30.0  # seconds between looks at the live sessions


def _moved(stats: MediaStats) -> int:
    """Packets so far, both legs: grows while media flows."""
    return sum(c.packets + c.rtcp_packets for c in (stats.inbound, stats.outbound))


class MediaCheckpoint:
    """One background task stamping `media_at` on records whose media still flows."""

    def __init__(
        self,
        store: Store,
        sessions: Callable[[], Iterable[MediaSession]],
        *,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.interval = interval
        self.clock = clock
        self._seen: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> MediaCheckpoint:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except Exception:  # best effort: a store hiccup must not end checkpoints
                log.exception("checkpoint.failed")

    async def run_once(self) -> list[str]:
        """Stamp the records whose media moved since the last look; returns their ids."""
        seen: dict[str, int] = {}
        for session in list(self.sessions()):
            stats = session.snapshot()
            seen[stats.call_id] = _moved(stats)
        moved = [cid for cid, count in seen.items() if count > self._seen.get(cid, 0)]
        self._seen = seen  # closed sessions drop out here
        if moved:
            await self.store.calls.touch_media(moved, iso_utc(self.clock()))
        return moved
