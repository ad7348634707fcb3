"""Browser tests: headless Chromium runs swap.js on a local page, shows a pool number, and a
sipp call to that number is attributed to the browser's visit (landing URL and source); and,
driven by Playwright, swap.js says in the console why it did not swap (CORS refused, pool
exhausted, API port closed).

Needs Debian's `chromium` (/usr/bin/chromium), and Playwright for the console test. Skipped
when absent, except under CI (the `CI` environment variable set), where that is a failure.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
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
WAIT_MS = 15_000  # for one console message (the first start of a cold profile is slow)
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
SWAP_JS = Path(__file__).resolve().parents[2] / "pbx" / "http" / "static" / "swap.js"


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


@pytest.fixture
async def sites() -> AsyncIterator[tuple[int, int, dict[str, str]]]:
    """The business's pages on two origins (two ports): the first will be allowed by
    `cors_origins`, the second not. `/swap.js` is also served here (self-hosted)."""
    content: dict[str, str] = {}

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=content[request.match_info["name"]], content_type="text/html")

    async def swap_js(_: web.Request) -> web.Response:
        return web.Response(body=SWAP_JS.read_bytes(), content_type="application/javascript")

    app = web.Application()
    app.router.add_get("/swap.js", swap_js)
    app.router.add_get("/{name}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ports = (free_port(), free_port())
    for port in ports:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    yield ports[0], ports[1], content
    await runner.cleanup()


def _need_playwright() -> Any:
    _need_chromium()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed: CI must provide it")
        pytest.skip("playwright is not installed (pip install -e .[test])")
    return async_playwright


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


async def test_swap_js_says_in_the_console_why_it_did_not_swap(
    daemon: DaemonProcess, sites: tuple[int, int, dict[str, str]]
) -> None:
    async_playwright = _need_playwright()
    allowed, foreign, content = sites
    daemon.env["PBX_HTTP_CORS_ORIGINS"] = f"http://127.0.0.1:{allowed}"
    await _setup(daemon, free_port())  # no call is placed: the trunk need not answer
    api = f"http://127.0.0.1:{daemon.http_port}"
    async with aiohttp.ClientSession() as session:  # two visitors hold the whole pool
        for n in range(2):
            body = {"landing_url": f"https://www.example.com/?gclid=hold{n}"}
            async with session.post(f"{api}/v1/visits", json=body) as r:
                assert (await r.json())["number"] in POOL
    content["plumbing"] = PAGE.format(api=api, business=BUSINESS)
    closed = free_port()  # nothing listens there
    content["selfhosted"] = PAGE.replace(
        'data-numbers="{business}"',
        f'data-api="http://127.0.0.1:{closed}" data-numbers="{{business}}"',
    ).format(api=f"http://127.0.0.1:{allowed}", business=BUSINESS)
    cases = [
        (f"http://127.0.0.1:{foreign}/plumbing?gclid=b1",
         f"pbx swap: not swapped: the visitor API at {api} refused this page's origin "
         f"http://127.0.0.1:{foreign} (CORS): add it to cors_origins in the daemon's "
         "[http] config"),
        (f"http://127.0.0.1:{allowed}/plumbing?gclid=b2",
         'pbx swap: not swapped: no free number in the pool of source "Google Ads" and no '
         "fallback number: the page keeps its own number"),
        (f"http://127.0.0.1:{allowed}/selfhosted?gclid=b3",
         f"pbx swap: not swapped: the visitor API at http://127.0.0.1:{closed} is unreachable"),
    ]  # fmt: skip
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for url, expected in cases:
                page = await browser.new_page()
                seen: list[str] = []
                page.on("console", lambda m, seen=seen: seen.append(f"{m.type}: {m.text}"))
                async with page.expect_console_message(
                    lambda m: m.text.startswith("pbx swap:"), timeout=WAIT_MS
                ) as message:
                    await page.goto(url)
                got = await message.value
                assert (got.type, got.text) == ("warning", expected), seen
                assert await page.text_content("#phone") == "Call us: (212) 555-0100"
                await page.close()
        finally:
            await browser.close()
    async with aiohttp.ClientSession() as session, session.get(f"{api}/metrics") as r:
        assert 'pbx_pool_exhausted_total{source="Google Ads"} 1.0' in await r.text()
    assert daemon.log_text().count('"pool.exhausted"') == 1
