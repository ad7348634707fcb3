"""`GET /metrics`: the daemon's Prometheus registry in text format (aiohttp, reads the store).

The handler refreshes what lives in the database (the outbox backlog) with
one bounded query, then renders `pbx.service.metrics.Metrics` (everything else is
kept in memory or read from live objects on scrape).

Decisions:
- The backlog is one `count(*)` (`store.outbox.backlog()`): items neither
  delivered nor given up. A store error leaves the last value and still
  serves the other families.
- `/metrics` sits on the same HTTP listener as the visitor API; keep that on
  loopback or behind a proxy (config `[http]`), or turn it off with
  `metrics.enabled = false`.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from pbx.service.metrics import CONTENT_TYPE, Metrics
from pbx.store import Store


def add_routes(app: web.Application, metrics: Metrics, store: Store) -> None:
    """Register `GET /metrics` on the daemon's app (before it starts)."""

    async def handler(_: web.Request) -> web.Response:
        with contextlib.suppress(Exception):  # a locked/closing store must not fail a scrape
            metrics.outbox_backlog.set(await store.outbox.backlog())
        body = metrics.render()
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    app.router.add_get("/metrics", handler)
