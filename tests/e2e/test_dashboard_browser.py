"""Browser test of the dashboard: headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright, no downloaded browser) against the admin app on 127.0.0.1 over a real SQLite
store with call records and a recording WAV.

One test logs in, sees the overview chart, filters the call log, opens a call and has the
audio player load the recording, watches a new call appear on the live page (server-sent
events), edits a source's tag, checks that a POST without the CSRF token and a viewer's change are
refused, and that five wrong passwords get the login throttled. A screenshot of each page
goes to tests/artifacts/dashboard/ (the overview's is copied to docs/img/). The other has
a call placed by sipp through a real `pbx serve` appear on the live page, end, and show in
the log as answered.

Skipped when chromium or playwright is missing, except under CI (env CI set): a failure.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pbx.admin import users as admin_users
from pbx.http.admin.factory import make_admin_app
from pbx.records import Disposition
from pbx.store.base import CallFilter, Destination, Source, Store, TrackingNumber, Trunk
from pbx.store.connect import open_store
from tests.admin_support import ADMIN_PASSWORD, CLI, VIEWER_PASSWORD, call, seed, write_wav

from .conftest import SippFactory, free_port, free_udp_range
from .daemon import DaemonProcess, provision

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("PBX_TEST_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "dashboard"
DOCS_IMG = ROOT / "docs" / "img" / "dashboard-overview.png"
WAIT_MS = 15_000
CALLS = 150


def _need_browser() -> Any:
    path = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).exists() else None)
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        async_playwright = None
    problem = None
    if path is None:
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    elif async_playwright is None:
        problem = "playwright is not installed (pip install -e .[test])"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}: CI must provide it")
        pytest.skip(problem)
    return async_playwright


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(tmp_path / "pbx.sqlite3")
    await seed(opened)
    today = dt.datetime.now(dt.UTC).date()
    for i in range(1, CALLS + 1):
        day = (today - dt.timedelta(days=i % 31)).isoformat()
        source = "radio" if (i * 5) % 7 < 3 else "google"
        await opened.calls.insert(call(i, day, source=source))
    write_wav(tmp_path / "rec" / "call0001.wav", seconds=2.0)
    yield opened
    await opened.close()


@pytest.fixture
async def admin_url(store: Store, tmp_path: Path) -> AsyncIterator[str]:
    app = make_admin_app(
        store,
        live_calls=None,
        secure_cookies=False,
        recordings_dir=tmp_path / "rec",
        live_poll_seconds=0.2,
    )
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def _login(page: Any, base: str, name: str, password: str) -> int:
    await page.goto(f"{base}/login")
    await page.fill("#name", name)
    await page.fill("#password", password)
    async with page.expect_response(lambda r: r.url.endswith("/login")) as answer:
        await page.press("#password", "Enter")  # keyboard only
    await page.wait_for_load_state()
    return int((await answer.value).status)


async def _logout(page: Any) -> None:
    await page.click("form.who button")
    await page.wait_for_url("**/login")


async def _overview(page: Any, base: str) -> None:
    await page.goto(f"{base}/", wait_until="networkidle")
    assert await page.inner_text("h1") == "Overview (UTC)"
    assert await page.locator(".card").count() == 3
    await page.wait_for_function(
        "typeof Chart !== 'undefined' && Chart.getChart(document.getElementById("
        "'per-source-chart')) !== undefined",
        timeout=WAIT_MS,
    )
    datasets = await page.evaluate(
        "Chart.getChart(document.getElementById('per-source-chart')).data.datasets"
        ".map(d => d.label)"
    )
    assert sorted(datasets) == ["google", "radio"]
    shot = await _shot(page, "overview")
    DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, DOCS_IMG)


async def _call_log(page: Any, base: str, store: Store) -> None:
    await page.goto(f"{base}/calls")
    assert await page.locator("table.log tbody tr").count() == 50  # one page
    await page.click("a[rel=next]")
    await page.wait_for_url("**/calls?cursor=*")
    assert await page.locator("table.log tbody tr").count() == 50
    await page.goto(f"{base}/calls")
    await page.fill("input[name=q]", "+1415555")
    await page.select_option("select[name=source]", "google")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**/calls?*source=google*")
    sources = await page.locator("table.log tbody tr td:nth-child(4)").all_inner_texts()
    expected = await store.call_log.page(CallFilter(source="google", caller_prefix="+1415555"), 50)
    assert sources == ["google"] * len(expected)
    assert len(expected) > 10
    await _shot(page, "calls")


async def _call_detail(page: Any, base: str) -> None:
    await page.goto(f"{base}/calls/call0001")
    assert "gclid-1" in await page.inner_text("main")
    await page.wait_for_function(
        "document.getElementById('recording').readyState >= 1", timeout=WAIT_MS
    )
    duration = await page.evaluate("document.getElementById('recording').duration")
    assert abs(duration - 2.0) < 0.05
    await _shot(page, "call")


async def _live(page: Any, base: str, store: Store) -> None:
    await page.goto(f"{base}/live")
    await page.wait_for_function(
        "document.getElementById('live-state').textContent === 'live'", timeout=WAIT_MS
    )
    assert await page.locator("tr[data-call-id]").count() == 0
    ringing = call(
        777,
        dt.datetime.now(dt.UTC).date().isoformat(),
        ended_at=None,
        disposition=Disposition.RINGING,
        caller="+13125550177",
    )
    await store.calls.insert(ringing)
    row = page.locator("tr[data-call-id='call0777']")
    await row.wait_for(timeout=WAIT_MS)  # arrived over SSE, no reload
    assert "+13125550177" in await row.inner_text()
    await _shot(page, "live")


async def _edit_tag(page: Any, base: str, store: Store) -> None:
    await page.goto(f"{base}/sources")
    field = page.get_by_label("Tag for google")
    await field.fill("spring-sale")
    await field.press("Enter")
    await page.wait_for_url("**/sources?done=tag")
    assert "Tag saved." in await page.inner_text("main")
    source = await store.sources.get("google")
    assert source is not None
    assert source.tag == "spring-sale"
    await _shot(page, "sources")
    await page.goto(f"{base}/numbers")
    await _shot(page, "numbers")
    await page.goto(f"{base}/users")
    await _shot(page, "users")


async def _post_without_csrf(page: Any, store: Store) -> None:
    status = await page.evaluate(
        "fetch('/sources/google/tag', {method: 'POST', body: new URLSearchParams({tag: 'x'})})"
        ".then(r => r.status)"
    )
    assert status == 403
    source = await store.sources.get("google")
    assert source is not None
    assert source.tag == "spring-sale"


async def _viewer_refused(page: Any, base: str, store: Store) -> None:
    assert await _login(page, base, "vic", VIEWER_PASSWORD) == 303
    await page.goto(f"{base}/sources")
    assert await page.locator("form.inline").count() == 0  # nothing to edit
    status, body = await page.evaluate(
        "fetch('/api/v1/sources/google', {method: 'PATCH', headers: {'Content-Type': "
        "'application/json', 'X-CSRF-Token': document.querySelector('input[name=csrf_token]')"
        ".value}, body: JSON.stringify({tag: 'viewer'})}).then(async r => [r.status, await "
        "r.json()])"
    )
    assert status == 403
    assert "admin" in body["error"]
    source = await store.sources.get("google")
    assert source is not None
    assert source.tag == "spring-sale"
    assert (await page.goto(f"{base}/users")).status == 403
    await _shot(page, "viewer-forbidden")


async def _throttled(page: Any, base: str) -> None:
    for _ in range(5):
        assert await _login(page, base, "ann", "not the password") == 401
    assert await _login(page, base, "ann", ADMIN_PASSWORD) == 429
    assert "Too many failed logins" in await page.inner_text("main")
    await _shot(page, "login-throttled")


async def test_dashboard_in_a_real_browser(admin_url: str, store: Store) -> None:
    async_playwright = _need_browser()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 768})
            await page.goto(f"{admin_url}/")
            assert page.url.startswith(f"{admin_url}/login")
            await _shot(page, "login")
            assert await _login(page, admin_url, "ann", ADMIN_PASSWORD) == 303
            await _overview(page, admin_url)
            await _call_log(page, admin_url, store)
            await _call_detail(page, admin_url)
            await _live(page, admin_url, store)
            await _edit_tag(page, admin_url, store)
            await _post_without_csrf(page, store)
            await _logout(page)
            await _viewer_refused(page, admin_url, store)
            await _logout(page)
            await _throttled(page, admin_url)
        finally:
            await browser.close()


LIVE_DID = "+12125550150"
LIVE_CALLER = "+13125550199"


async def test_a_sipp_call_appears_live_and_then_in_the_log(
    sipp: SippFactory, daemon: DaemonProcess, tmp_path: Path
) -> None:
    """A real `pbx serve` takes a call from sipp; the admin app (same SQLite file, no
    live_calls feed: the store's unfinished records) shows it live, then finished."""
    async_playwright = _need_browser()
    callee = await sipp.start("b2bua_callee.xml", seconds=30)

    async def rows(store: Store) -> None:
        await store.trunks.add(
            Trunk(name="carrier", host="127.0.0.1", port=callee.port, allow=("127.0.0.0/8",))
        )
        await store.destinations.add(
            Destination(name="office", target="+14155550101", kind="number")
        )
        await store.sources.add(Source(name="Craigslist", tag="CL"))
        await store.numbers.add(
            TrackingNumber(
                number=LIVE_DID, source="Craigslist", destinations=("office",), trunk="carrier"
            )
        )
        await admin_users.add_user(store, CLI, "ann", "admin", ADMIN_PASSWORD)

    await provision(daemon.db, rows)
    await daemon.start()
    async with await open_store(daemon.db) as store:
        app = make_admin_app(
            store, live_calls=None, secure_cookies=False, recordings_dir=None, live_poll_seconds=0.2
        )
        runner = web.AppRunner(app, shutdown_timeout=2.0)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    page = await browser.new_page(viewport={"width": 1366, "height": 768})
                    assert await _login(page, base, "ann", ADMIN_PASSWORD) == 303
                    await page.goto(f"{base}/live")
                    await page.wait_for_function(
                        "document.getElementById('live-state').textContent === 'live'",
                        timeout=WAIT_MS,
                    )
                    caller = await sipp.start(
                        "b2bua_caller.xml",
                        remote=("127.0.0.1", daemon.sip_port),
                        keys={"caller": LIVE_CALLER, "mport": str(free_udp_range(2))},
                        extra=["-s", LIVE_DID[1:], "-d", "4000"],
                        seconds=20,
                    )
                    row = page.locator("#live tr[data-call-id]")
                    await row.first.wait_for(timeout=WAIT_MS)  # pushed over SSE
                    assert LIVE_CALLER in await row.first.inner_text()
                    await _shot(page, "live-sipp")
                    assert await caller.wait() == 0, caller.diagnostics()
                    await page.locator("#live tr.empty").wait_for(timeout=WAIT_MS)  # ended
                    await page.goto(f"{base}/calls?q={LIVE_CALLER.replace('+', '%2B')}")
                    await page.click("table.log tbody a")
                    text = await page.inner_text("main")
                    assert "answered" in text
                    assert "Craigslist" in text
                finally:
                    await browser.close()
        finally:
            await runner.cleanup()
