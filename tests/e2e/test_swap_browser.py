"""Browser test: headless Chromium runs swap.js on a local page, shows a pool number, and a
sipp call to that number is attributed to the browser's visit (landing URL and source).

Needs Debian's `chromium` (/usr/bin/chromium). Skipped when it is absent, except under
CI (the `CI` environment variable set), where a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from pbx.records import Disposition

from .conftest import SippFactory, free_port, free_udp_range
from .daemon import DaemonProcess, start_with_pool

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("PBX_TEST_CHROMIUM", "/usr/bin/chromium")
POOL = ("+12125550101", "+12125550102")
FORMATTED = {"+12125550101": "(212) 555-0101", "+12125550102": "(212) 555-0102"}
BUSINESS = "+12125550100"
CALLER = "+13125550199"
OFFICE = "+14155550101"
BROWSER_LIMIT = 60.0  # seconds for one headless run (first start of a cold profile is slow)
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Plumbing</title></head>
<body>
<p id="phone">Call us: (212) 555-0100</p>
<p><a id="tel" href="tel:+1-212-555-0100">Tap to call</a></p>
<p id="other">Fax: (212) 555-0199</p>
<script src="{api}/swap.js" data-numbers="{business}"></script>
</body></html>
"""


def _need_chromium() -> str:
    path = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    return path


@pytest.fixture
async def site() -> AsyncIterator[tuple[int, dict[str, str]]]:
    """The business's page on its own origin (another port): filled in by the test."""
    content: dict[str, str] = {}

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=content["html"], content_type="text/html")

    app = web.Application()
    app.router.add_get("/plumbing", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port, content
    await runner.cleanup()


async def _dump_dom(browser: str, url: str, profile: Path) -> str:
    """The DOM after scripts ran; the browser is killed by PID if it overruns."""
    args = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--virtual-time-budget=10000", "--dump-dom", url,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        browser, *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), BROWSER_LIMIT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


async def _setup(daemon: DaemonProcess, callee_port: int) -> None:
    await start_with_pool(daemon, callee_port, POOL, OFFICE)


async def test_browser_shows_pool_number_and_call_is_attributed(
    tmp_path: Path, sipp: SippFactory, daemon: DaemonProcess, site: tuple[int, dict[str, str]]
) -> None:
    browser = _need_chromium()
    site_port, content = site
    origin = f"http://127.0.0.1:{site_port}"
    daemon.env["PBX_HTTP_CORS_ORIGINS"] = origin
    callee = await sipp.start("b2bua_callee.xml", seconds=30)
    await _setup(daemon, callee.port)
    api = f"http://127.0.0.1:{daemon.http_port}"
    content["html"] = PAGE.format(api=api, business=BUSINESS)
    landing = f"{origin}/plumbing?utm_source=google&gclid=browser1"
    dom = await _dump_dom(browser, landing, tmp_path / "profile")
    shown = re.search(r'data-pbx-number="(\+\d+)"', dom)
    assert shown is not None, dom
    number = shown.group(1)
    assert number in POOL
    text = html.unescape(dom)
    assert f"Call us: {FORMATTED[number]}" in text
    assert f'href="tel:{number}"' in text
    assert "Fax: (212) 555-0199" in text  # not one of the business's numbers
    assert "(212) 555-0100" not in text
    keys = {"caller": CALLER, "mport": str(free_udp_range(2))}
    caller = await sipp.start(
        "b2bua_caller.xml", remote=("127.0.0.1", daemon.sip_port), keys=keys,
        extra=["-s", number[1:], "-d", "500"], seconds=20,
    )  # fmt: skip
    assert await caller.wait() == 0, caller.diagnostics()
    (record,) = await daemon.wait_final_record()
    assert record.disposition == Disposition.ANSWERED
    assert record.tracking_number == number
    assert record.source == "Google Ads"
    assert record.landing_url == landing
    assert record.gclid == "browser1"
    assert record.visit_id is not None
