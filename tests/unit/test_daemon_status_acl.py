"""/health and /metrics on the public visitor listener answer only `[http] status_allow`."""

from __future__ import annotations

import ipaddress

import aiohttp
from aiohttp import web

from pbx.daemon import STATUS_ALLOW, _status_only_for_allowed


async def _status(allow: list[str], path: str) -> int:
    app = web.Application(middlewares=[_status_only_for_allowed])
    app[STATUS_ALLOW] = [ipaddress.ip_network(c) for c in allow]

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    for route in ("/health", "/metrics", "/swap.js"):
        app.router.add_get(route, ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}{path}"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status
    finally:
        await runner.cleanup()


async def test_loopback_monitoring_reads_health_and_metrics() -> None:
    assert await _status(["127.0.0.0/8"], "/health") == 200
    assert await _status(["127.0.0.0/8"], "/metrics") == 200


async def test_other_addresses_get_404_but_the_visitor_api_stays_public() -> None:
    assert await _status(["192.0.2.0/24"], "/health") == 404
    assert await _status(["192.0.2.0/24"], "/metrics") == 404
    assert await _status(["192.0.2.0/24"], "/swap.js") == 200
