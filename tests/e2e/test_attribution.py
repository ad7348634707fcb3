"""End to end: a website visit holds a pool number, a sipp call on it is attributed to the
visit, and the GA4 event and webhooks reach a local HTTP server, across a daemon restart.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pbx.attribution.integrations import sign
from pbx.records import Disposition
from pbx.store.connect import open_store

from .conftest import SippFactory, free_port, free_udp_range
from .daemon import DaemonProcess, start_with_pool

pytestmark = pytest.mark.e2e

POOL = ("+12125550101", "+12125550102")
CALLER = "+13125550199"
OFFICE = "+14155550101"
SECRET = "hook-secret"
LANDING = "https://www.example.com/plumbing?utm_source=google&utm_medium=cpc&gclid=abc123"
WAIT = 20.0


@dataclass
class Receiver:
    """A local server for webhooks and GA4 posts; counts what it accepted."""

    port: int
    got: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _handle(self, request: web.Request) -> web.Response:
        self.got.append((request.path_qs, await request.read(), dict(request.headers)))
        self.changed.set()
        return web.Response(status=204)

    async def wait_for(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while len(self.got) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - loop.time()))

    def webhooks(self) -> list[dict[str, Any]]:
        hooks = [(body, h) for path, body, h in self.got if path == "/hook"]
        for body, headers in hooks:
            stamp = int(headers["X-Pbx-Signature"].split(",")[0].removeprefix("t="))
            assert abs(time.time() - stamp) < 300  # signed now, inside a replay window
            assert headers["X-Pbx-Signature"] == sign(SECRET, body, stamp)
        return [json.loads(body) for body, _ in hooks]

    def ga4(self) -> list[tuple[str, dict[str, Any]]]:
        return [(p, json.loads(b)) for p, b, _ in self.got if p.startswith("/mp/collect")]

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(free_port())
    yield rec
    await rec.close()


@pytest.fixture
async def daemon(tmp_path: Path, receiver: Receiver) -> AsyncIterator[DaemonProcess]:
    base = f"http://127.0.0.1:{receiver.port}"
    proc = DaemonProcess(tmp_path, tmp_path / "pbx.sqlite3", env={
        "PBX_WEBHOOKS_URLS": f"{base}/hook", "PBX_WEBHOOKS_SECRET": SECRET,
        "PBX_GA4_MEASUREMENT_ID": "G-E2E", "PBX_GA4_API_SECRET": "mp-secret",
        "PBX_GA4_BASE_URL": base, "PBX_OUTBOX_POLL_INTERVAL": "0.05",
        "PBX_OUTBOX_BACKOFF_BASE": "0.05", "PBX_OUTBOX_BACKOFF_MAX": "0.2",
        "PBX_HTTP_CORS_ORIGINS": "https://www.example.com",
    })  # fmt: skip
    try:
        yield proc
    finally:
        await proc.stop()


async def _setup(daemon: DaemonProcess, callee_port: int) -> None:
    await start_with_pool(daemon, callee_port, POOL, OFFICE)


async def _visit(daemon: DaemonProcess) -> dict[str, Any]:
    url = f"http://127.0.0.1:{daemon.http_port}/v1/visits"
    body = {"landing_url": LANDING, "referrer": "https://www.google.com/",
            "ga_client_id": "111.222"}  # fmt: skip
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers={"Origin": "https://www.example.com"}) as r,
    ):
        assert r.status == 200, await r.text()
        assert r.headers["Access-Control-Allow-Origin"] == "https://www.example.com"
        answer: dict[str, Any] = await r.json()
    return answer


async def _call(sipp: SippFactory, daemon: DaemonProcess, number: str) -> None:
    keys = {"caller": CALLER, "mport": str(free_udp_range(2))}
    remote = ("127.0.0.1", daemon.sip_port)
    extra = ["-s", number[1:], "-d", "500"]
    caller = await sipp.start("b2bua_caller.xml", remote=remote, keys=keys, extra=extra, seconds=20)
    assert await caller.wait() == 0, caller.diagnostics()


async def test_visit_then_call_is_attributed_and_integrations_delivered(
    sipp: SippFactory, daemon: DaemonProcess, receiver: Receiver
) -> None:
    await receiver.start()
    callee = await sipp.start("b2bua_callee.xml", seconds=20)
    await _setup(daemon, callee.port)
    visit = await _visit(daemon)
    assert visit["number"] in POOL
    assert visit["source"] == "Google Ads"
    await _call(sipp, daemon, visit["number"])
    (record,) = await daemon.wait_final_record()
    assert record.disposition == Disposition.ANSWERED
    assert record.tracking_number == visit["number"]
    assert (record.source, record.tag) == ("Google Ads", "PPC")
    assert record.visit_id == visit["visit_id"]
    assert record.landing_url == LANDING
    assert record.referrer == "https://www.google.com/"
    assert (record.utm_source, record.utm_medium, record.gclid) == ("google", "cpc", "abc123")
    assert (record.ga_client_id, record.visitor_ip) == ("111.222", "127.0.0.1")
    await receiver.wait_for(4)  # started, answered, ended, GA4
    events = [h["event"] for h in receiver.webhooks()]
    assert sorted(events) == ["call.answered", "call.ended", "call.started"], events
    ended = next(h for h in receiver.webhooks() if h["event"] == "call.ended")
    assert ended["call"]["landing_url"] == LANDING
    ((path, ga),) = receiver.ga4()
    assert "measurement_id=G-E2E" in path
    assert "api_secret=mp-secret" in path
    assert ga["client_id"] == "111.222"
    params = ga["events"][0]["params"]
    assert (params["source"], params["medium"], params["disposition"]) == (
        "google", "cpc", "answered",
    )  # fmt: skip
    assert params["tracking_number"] == visit["number"]


async def test_restart_delivers_events_left_in_the_outbox(
    sipp: SippFactory, daemon: DaemonProcess, receiver: Receiver
) -> None:
    callee = await sipp.start("b2bua_callee.xml", seconds=20)
    await _setup(daemon, callee.port)  # the receiver is down: every delivery fails
    await _call(sipp, daemon, POOL[0])
    (record,) = await daemon.wait_final_record()
    assert record.source == "Google Ads"
    assert await daemon.stop() == 0
    async with await open_store(daemon.db) as store:
        pending = await store.outbox.due("9999-12-31T00:00:00.000000Z")
    assert len(pending) == 4
    assert any(i.attempts >= 1 and i.last_error for i in pending)
    await receiver.start()
    daemon.sip_port = daemon.http_port = 0
    daemon.rtp_low = 0
    await daemon.start()
    await receiver.wait_for(4)
    assert sorted(h["event"] for h in receiver.webhooks()) == [
        "call.answered", "call.ended", "call.started",
    ]  # fmt: skip
    assert len(receiver.ga4()) == 1
    async with await open_store(daemon.db) as store:
        for _ in range(200):  # bounded: the daemon records the deliveries
            if not await store.outbox.due("9999-12-31T00:00:00.000000Z"):
                break
            await asyncio.sleep(0.05)
        assert await store.outbox.due("9999-12-31T00:00:00.000000Z") == []
    assert len(receiver.got) == 4  # each delivered once
