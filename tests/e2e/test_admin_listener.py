"""`pbx serve --admin HOST:PORT`: the running daemon serves the dashboard and REST API there,
never on the public visitor listener, and shows its own live calls."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from pbx.admin import users as admin_users
from pbx.store.connect import open_store

from .conftest import SippFactory
from .daemon import DaemonProcess
from .test_b2bua import OFFICE, _call, _logged, _ok, _setup

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


async def _login(session: aiohttp.ClientSession, base: str) -> str:
    async with session.get(f"{base}/login") as page:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert token is not None
    form = {"name": "ann", "password": PASSWORD, "csrf_token": token.group(1)}
    async with session.post(f"{base}/login", data=form, allow_redirects=False) as answer:
        assert answer.status == 303
    return token.group(1)


async def test_the_daemon_serves_the_dashboard_on_its_admin_listener(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    callee = await sipp.start("b2bua_callee.xml", seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port)  # starts the daemon
    async with await open_store(daemon.db) as store:
        await admin_users.add_user(store, admin_users.cli_actor(), "ann", "admin", PASSWORD)
    admin = f"http://127.0.0.1:{daemon.admin_port}"
    public = f"http://127.0.0.1:{daemon.http_port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"{admin}/api/v1/calls") as anonymous:
            assert anonymous.status == 401
        async with session.get(f"{public}/api/v1/calls") as elsewhere:
            assert elsewhere.status == 404  # not on the visitor listener
        await _login(session, admin)
        caller = await _call(sipp, daemon, "b2bua_caller.xml", hold_ms=3000)
        await _logged(caller, "ANSWER_MEDIA")
        live: list[dict[str, object]] = []
        for _ in range(50):  # bounded: the live list is this node's running calls
            async with session.get(f"{admin}/api/v1/live") as answer:
                live = (await answer.json())["calls"]
            if live:
                break
            await asyncio.sleep(0.1)
        assert [c["disposition"] for c in live] == ["answered"]
        await _ok(caller)
        await _ok(callee)
        async with session.get(f"{admin}/api/v1/calls") as listed:
            calls = (await listed.json())["calls"]
        assert len(calls) == 1
