"""`make_admin_app`: the admin listener's aiohttp application, assembled (I/O wiring).

The route tables (`api`, `pages`) import `app` for its context and helpers;
this module imports all three, so nothing imports back up (no cycle).
"""


from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from pbx.http.admin import api, pages
from pbx.http.admin.app import CTX, MAX_BODY, STATIC, AdminContext, LiveCalls, guard
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
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[CTX] = ctx
    api.add_routes(app)
    pages.add_routes(app)
    app.router.add_static("/static/", STATIC, append_version=False)
    return app


__all__ = ["LiveCalls", "make_admin_app"]
