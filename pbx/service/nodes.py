"""This node's lease in the store, and the cluster-wide crash sweep (asyncio, store I/O).

`NodeKeeper.start()` takes the node's name in the store (`store.nodes`):
a name another live node holds refuses the start (one line); a dead
incarnation's unfinished calls are marked `interrupted` (on SQLite, the
single node, this is the start-up crash sweep). Then, every third of the
lease, the keeper renews the lease and sweeps: any node whose lease ran out
gets its unfinished calls marked `interrupted`, exactly once cluster-wide
(the store makes the sweep atomic). A lease found swept (this node stalled
past its lease) stops new calls (`on_lost(True)`: 503) until the name is
acquired again (`on_lost(False)`). A store that cannot be reached is
logged once per failure streak and retried on the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from pbx.store import Lease, LeaseLostError, Store
from pbx.store.connect import store_errors

log = structlog.get_logger("pbx.node")


class NodeKeeper:
    def __init__(
        self, store: Store, name: str, lease_s: float, on_lost: Callable[[bool], None]
    ) -> None:
        self.store = store
        self.name = name
        self.lease_s = lease_s
        self.on_lost = on_lost
        self.lost = False
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Lease:
        """Take the name (ConflictError if a live node holds it), then keep it."""
        lease = await self.store.nodes.acquire_node(self.name, self.lease_s)
        if lease.interrupted:
            log.warning("calls.interrupted", node=self.name, count=lease.interrupted)
        self._task = asyncio.get_running_loop().create_task(self._keep())
        return lease

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self._round()
                self._failing = False
            except Exception as exc:
                if not isinstance(exc, (*store_errors(), OSError)):
                    raise
                if not self._failing:
                    log.warning("node.store_unreachable", node=self.name, error=str(exc))
                self._failing = True

    async def _round(self) -> None:
        if self.lost:
            await self.store.nodes.acquire_node(self.name, self.lease_s)
            self._set_lost(False)
        else:
            try:
                await self.store.nodes.renew(self.name, self.lease_s)
            except LeaseLostError:
                log.error("node.lease_lost", node=self.name, action="refusing new calls")
                self._set_lost(True)
                return
        for node, count in (await self.store.nodes.sweep_expired()).items():
            log.warning("node.swept", node=self.name, dead=node, interrupted=count)

    def _set_lost(self, lost: bool) -> None:
        self.lost = lost
        self.on_lost(lost)

    async def close(self) -> None:
        """Stop renewing and give the name up (after this node's calls have ended)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.store.nodes.release(self.name)
