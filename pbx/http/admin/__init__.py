"""The admin listener's app: dashboard pages and the REST API under /api/v1 (I/O, aiohttp).

`make_admin_app(store, live_calls=..., secure_cookies=..., recordings_dir=...)`
returns the aiohttp application; the daemon serves it on its own listener
(`pbx serve --admin HOST:PORT`), never on the public visitor listener.

Modules: `app` (context, the guard middleware: authentication, CSRF, errors,
security headers), `auth` (sessions, throttling), `views` (what both pages
and API show), `api` (REST routes and their OpenAPI description), `pages`
(jinja2 pages and their forms), `templates/`, `static/` (CSS, JS, vendored
Chart.js).

Decisions:
- Server-rendered pages (jinja2), not a single-page front end: the pages
  are tables and forms over data the server already holds, so HTML from
  the server is the least code, needs no build step or JS framework to
  vendor, works with JavaScript off except for the chart and the live
  table, keeps one place (the server) that decides what a role may see,
  and makes every page a plain URL that can be bookmarked and filtered.
  JavaScript (static/app.js, no inline scripts: the CSP forbids them) only
  draws the chart (Chart.js, vendored at a pinned version with its license,
  static/vendor/README.md) and keeps the live table current from
  server-sent events (one-way updates are all it needs; SSE reconnects on
  its own and passes through proxies as plain HTTP, unlike a WebSocket).
- Only `/login` and `/static/...` answer without authentication; other pages
  redirect to /login, other API routes answer 401.
- Viewers read; every change needs the admin role (403 otherwise). Changes
  go through `pbx.admin` / `pbx.admin_users`, the CLI's use cases, which
  write the audit log.
- Sessions, CSRF and throttling: see `pbx.http.admin.auth` (sessions live in
  memory: a restart logs everyone out).
- Give the app its own store (a second `open_store` of the daemon's file):
  SQLite in WAL lets its reads run beside the daemon's writes, whereas on
  the daemon's own store every dashboard query would hold the connection's
  lock that call records wait for (a cold month's ROI report reads ~80,000
  rows). Its writes (users, tags) then commit like the CLI's; the daemon's
  provisioning cache sees them through `config_version`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from pbx.http.admin.app import AdminContext, LiveCalls, make_app
from pbx.http.admin.auth import Sessions, Throttle
from pbx.store.base import Store


def make_admin_app(
    store: Store,
    *,
    live_calls: Callable[[], list[dict[str, Any]]] | None,
    secure_cookies: bool,
    recordings_dir: Path | None,
    region: str = "US",
    clock: Callable[[], float] = time.time,
    throttle: Throttle | None = None,
    live_poll_seconds: float = 1.0,
) -> web.Application:
    """The admin app over `store` (see the package docstring).

    `live_calls` returns the running calls as record dicts (`pbx.records.to_dict`
    keys; None = read unfinished records from the store); `secure_cookies`
    marks the session cookie Secure (set it behind TLS); recordings are read
    from `recordings_dir`. `region` reads national numbers in filters;
    `clock` (wall seconds) and `throttle` are for tests.
    """
    ctx = AdminContext(
        store=store,
        live_calls=live_calls,
        secure_cookies=secure_cookies,
        recordings_dir=recordings_dir,
        region=region,
        wall=clock,
        sessions=Sessions(),
        throttle=throttle or Throttle(),
        live_poll_seconds=live_poll_seconds,
    )
    return make_app(ctx)


__all__ = ["LiveCalls", "make_admin_app"]
