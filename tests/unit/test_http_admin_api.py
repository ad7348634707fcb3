"""Admin REST API reads over a real SQLite store: keyset paging and filters, recordings with
Range, the OpenAPI description, call tags, overview/ROI figures, live calls, every page.

The tests marked `BOTH_BACKENDS` (paging, filters, call tags, overview, ROI: the
call log reads) also run on PostgreSQL (the throwaway cluster of tests/pg.py)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.admin import users as admin_users
from pbx.http.admin.api import ROUTES
from pbx.http.admin.factory import make_admin_app
from pbx.http.admin.views import cost_per_call_cents
from pbx.records import Disposition, to_dict
from pbx.rules.roi import CallFact, SourceCost, roi_report
from pbx.store.base import Store
from pbx.store.connect import open_store
from tests.admin_support import CLI, NUM, call, write_wav

NOW = dt.datetime(2026, 12, 1, 20, 0, tzinfo=dt.UTC).timestamp()
Client = TestClient[web.Request, web.Application]


BOTH_BACKENDS = pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A seeded store with 130 calls over 40 days: SQLite unless a test asks for postgres."""
    from tests.admin_support import seed

    backend = getattr(request, "param", "sqlite")
    where = request.getfixturevalue("pg_url") if backend == "postgres" else tmp_path / "pbx.sqlite3"
    opened = await open_store(where)
    await seed(opened)
    for i in range(130):
        day = (dt.date(2026, 12, 1) - dt.timedelta(days=i % 40)).isoformat()
        await opened.calls.insert(call(i, day))
    yield opened
    await opened.close()


@pytest.fixture
async def api(store: Store, tmp_path: Path) -> AsyncIterator[tuple[Client, dict[str, str]]]:
    live = [to_dict(call(999, "2026-12-01", disposition=Disposition.RINGING, ended_at=None))]
    app = make_admin_app(
        store,
        live_calls=lambda: live,
        secure_cookies=False,
        recordings_dir=tmp_path / "rec",
        clock=lambda: NOW,
        live_poll_seconds=0.05,
    )
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    _, token = await admin_users.add_token(store, CLI, "ops", "admin")
    yield client, {"Authorization": f"Bearer {token}"}
    await client.close()


async def _get(api: tuple[Client, dict[str, str]], path: str, status: int = 200) -> Any:
    client, auth = api
    answer = await client.get(path, headers=auth)
    assert answer.status == status, (path, await answer.text())
    return await answer.json()


@BOTH_BACKENDS
async def test_keyset_paging_walks_every_call_once_in_order(
    api: tuple[Client, dict[str, str]], store: Store
) -> None:
    expected = [r.id for r in await store.calls.list()]  # newest first
    seen: list[str] = []
    path = "/api/v1/calls?limit=40"
    while True:
        page = await _get(api, path)
        seen += [c["id"] for c in page["calls"]]
        if page["next_cursor"] is None:
            break
        path = f"/api/v1/calls?limit=40&cursor={page['next_cursor']}"
    assert seen == expected
    assert len(seen) == 130


@BOTH_BACKENDS
async def test_filters_match_the_store(api: tuple[Client, dict[str, str]], store: Store) -> None:
    everything = await store.calls.list()
    cases: dict[str, Any] = {
        "source=google": lambda r: r.source == "google",
        "disposition=no-answer": lambda r: r.disposition == "no-answer",
        f"number={NUM[2:]}": lambda r: r.tracking_number == NUM,
        "since=2026-11-25&until=2026-11-28": lambda r: (
            "2026-11-25" <= r.started_at[:10] <= "2026-11-28"
        ),
        "q=%2B1415555": lambda r: r.caller.startswith("+1415555"),
        "q=4155550": lambda r: r.caller.startswith("+14155550"),
        "q=(415) 555-0303": lambda r: r.caller == "+14155550303",
        "source=radio&disposition=answered&since=2026-11-20": lambda r: (
            r.source == "radio" and r.disposition == "answered" and r.started_at >= "2026-11-20"
        ),
    }
    for query, keep in cases.items():
        page = await _get(api, f"/api/v1/calls?limit=500&{query}")
        assert [c["id"] for c in page["calls"]] == [r.id for r in everything if keep(r)], query


@pytest.mark.parametrize(
    "query",
    [
        "since=yesterday",
        "until=2026-13-01",
        "disposition=maybe",
        "cursor=%%%",
        "cursor=WzFd",
        "limit=0",
        "limit=501",
        "limit=x",
        "number=12",
        "q=%3Cscript%3E",
        "month=2026-13",
    ],
)
async def test_bad_filters_are_400_with_one_line(
    api: tuple[Client, dict[str, str]], query: str
) -> None:
    path = "/api/v1/reports/roi?" if query.startswith("month") else "/api/v1/calls?"
    body = await _get(api, path + query, 400)
    assert body["error"]
    assert "\n" not in body["error"]


async def test_call_detail_and_recording_with_ranges(
    api: tuple[Client, dict[str, str]], tmp_path: Path
) -> None:
    client, auth = api
    detail = await _get(api, "/api/v1/calls/call0001")
    assert detail["gclid"] == "gclid-1"
    assert detail["recording_url"] is None
    await _get(api, "/api/v1/calls/call0001/recording", 404)
    await _get(api, "/api/v1/calls/nope", 404)
    write_wav(tmp_path / "rec" / "call0001.wav", seconds=1.0)
    size = (tmp_path / "rec" / "call0001.wav").stat().st_size
    assert (await _get(api, "/api/v1/calls/call0001"))["recording_url"].endswith("/recording")
    whole = await client.get("/api/v1/calls/call0001/recording", headers=auth)
    assert whole.status == 200
    assert whole.headers["Content-Type"] == "audio/wav"
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert (await whole.read())[:4] == b"RIFF"
    part = await client.get(
        "/api/v1/calls/call0001/recording", headers=auth | {"Range": "bytes=4-11"}
    )
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 4-11/{size}"
    assert await part.read() == (tmp_path / "rec" / "call0001.wav").read_bytes()[4:12]
    beyond = await client.get(
        "/api/v1/calls/call0001/recording", headers=auth | {"Range": f"bytes={size + 10}-"}
    )
    assert beyond.status == 416


@BOTH_BACKENDS
async def test_call_tag_only_on_finished_calls(
    api: tuple[Client, dict[str, str]], store: Store
) -> None:
    client, auth = api
    await store.calls.insert(
        call(500, "2026-12-01", disposition=Disposition.RINGING, ended_at=None)
    )
    live = await client.patch("/api/v1/calls/call0500", json={"tag": "vip"}, headers=auth)
    assert live.status == 409
    done = await client.patch("/api/v1/calls/call0001", json={"tag": "vip"}, headers=auth)
    assert done.status == 200
    assert (await store.calls.get("call0001")).tag == "vip"  # type: ignore[union-attr]
    entry = (await store.audit.list(limit=1))[0]
    assert (entry.action, entry.subject, entry.actor) == ("calls.tag", "call0001", "token:ops")


async def test_openapi_describes_every_route(api: tuple[Client, dict[str, str]]) -> None:
    client, _ = api
    doc = await _get(api, "/api/v1/openapi.json")
    assert doc["openapi"].startswith("3.")
    registered = {
        (r.method, r.resource.canonical)
        for r in client.app.router.routes()  # type: ignore[union-attr]
        if r.resource is not None
        and r.resource.canonical.startswith("/api/")
        and r.method != "HEAD"
    }
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert registered == described
    assert len(described) == len(ROUTES)
    for ops in doc["paths"].values():
        for op in ops.values():
            assert op["summary"]
            assert "200" in op["responses"]


@BOTH_BACKENDS
async def test_overview_figures(api: tuple[Client, dict[str, str]], store: Store) -> None:
    await store.calls.insert(call(301, "2026-12-01"))  # odd: google
    data = await _get(api, "/api/v1/overview")
    every = await store.calls.list()
    today = [r for r in every if r.started_at.startswith("2026-12-01")]
    assert data["windows"][0] == {
        "label": "today",
        "calls": len(today),
        "answered": sum(1 for r in today if r.answered_at),
        "answer_rate": round(100 * sum(1 for r in today if r.answered_at) / len(today), 1),
    }
    last30 = [r for r in every if r.started_at >= "2026-11-02"]
    assert data["windows"][2]["calls"] == len(last30)
    assert len(data["chart"]["days"]) == 30
    assert sum(sum(s["calls"]) for s in data["chart"]["series"]) == len(last30)
    costs = {c["source"]: c["cost_per_call"] for c in data["cost_per_call"]}
    assert costs["google"] == "12.50"
    december = [r for r in every if r.started_at >= "2026-12-01" and r.source == "radio"]
    assert costs["radio"] == f"{round(300 / len(december), 2):.2f}"


@BOTH_BACKENDS
async def test_roi_report_matches_the_cli_rule(
    api: tuple[Client, dict[str, str]], store: Store
) -> None:
    from pbx.admin import provisioning as admin

    body = await _get(api, "/api/v1/reports/roi?month=2026-11")
    expected = await admin.roi_rows(store, (2026, 11))
    assert [{k: v for k, v in r.items() if not k.startswith("cost") or k.endswith("_cents")}
            for r in body["rows"]] == [asdict(r) for r in expected]  # fmt: skip
    assert body["rows"][0]["cost_per_call"] is not None


@settings(max_examples=60, deadline=None)
@given(
    per_call=st.one_of(st.none(), st.integers(0, 10**6)),
    budget=st.one_of(st.none(), st.integers(0, 10**7)),
    calls=st.integers(0, 50),
)
def test_overview_cost_per_call_is_the_roi_rule(
    per_call: int | None, budget: int | None, calls: int
) -> None:
    setting = SourceCost("s", per_call, budget)
    # Intake writes the per-call price on each record (budget-funded calls carry none):
    # while the price has not changed, the overview's rule is ROI's.
    priced = per_call if budget is None or per_call is not None else None
    facts = [CallFact("s", "2026-12-01T10:00:00.000000Z", None, False, priced)] * calls
    [row] = [r for r in roi_report(facts, [setting], (2026, 12), set()) if r.source == "s"]
    assert cost_per_call_cents(setting, calls) == row.cost_per_call_cents


async def test_live_list_and_event_stream(api: tuple[Client, dict[str, str]]) -> None:
    client, auth = api
    assert [c["id"] for c in (await _get(api, "/api/v1/live"))["calls"]] == ["call0999"]
    answer = await client.get("/api/v1/live/stream", headers=auth)
    assert answer.headers["Content-Type"].startswith("text/event-stream")
    first = b""
    while b"\n\n" not in first:
        first += await answer.content.readany()
    event = first.split(b"\n\n")[0].decode()
    assert event.startswith("event: live\ndata: ")
    assert json.loads(event.split("data: ", 1)[1])["calls"][0]["id"] == "call0999"
    answer.close()


async def test_numbers_sources_destinations(api: tuple[Client, dict[str, str]]) -> None:
    numbers = (await _get(api, "/api/v1/numbers"))["numbers"]
    assert [n["number"] for n in numbers] == ["+12125550101", "+12125550102"]
    assert numbers[0]["pool"] == {"held": False, "held_until": None}
    assert (await _get(api, "/api/v1/numbers/(212) 555-0101"))["source"] == "google"
    await _get(api, "/api/v1/numbers/+12125550199", 404)
    sources = (await _get(api, "/api/v1/sources"))["sources"]
    assert {s["name"] for s in sources} == {"google", "radio"}
    assert all("ga_api_secret" not in s for s in sources)
    assert (await _get(api, "/api/v1/sources/google"))["tag"] == "ppc"
    assert (await _get(api, "/api/v1/destinations"))["destinations"][0]["name"] == "office"
    per_day = await _get(api, "/api/v1/reports/calls-per-source?since=2026-11-30&until=2026-11-30")
    assert {r["day"] for r in per_day["rows"]} == {"2026-11-30"}


async def test_every_page_renders(api: tuple[Client, dict[str, str]]) -> None:
    client, auth = api
    for path, text in (
        ("/", "Calls per source per day"),
        ("/calls", "call0129"),
        ("/calls?source=google&q=4155", "Older calls"),
        ("/calls/call0001", "gclid-1"),
        ("/sources", "google"),
        ("/numbers", "+12125550102"),
        ("/live", "call0999"),
        ("/users", "ops"),
    ):
        answer = await client.get(path, headers=auth)
        assert answer.status == 200, path
        assert text in await answer.text(), path
        assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")
    bad = await client.get("/calls?since=soon", headers=auth)
    assert bad.status == 400
    assert "since must be" in await bad.text()


async def test_month_costs_when_the_month_starts_before_the_chart(store: Store) -> None:
    from pbx.http.admin import views

    for i, day in ((601, "2027-01-01"), (603, "2027-01-31")):  # odd: google
        await store.calls.insert(call(i, day))
    jan31 = dt.datetime(2027, 1, 31, 20, 0, tzinfo=dt.UTC).timestamp()
    data = await views.overview(store, jan31)
    assert data["chart"]["days"][0] == "2027-01-02"  # Jan 1 is outside the 30 days
    google = next(c for c in data["cost_per_call"] if c["source"] == "google")
    assert (google["month"], google["calls"]) == ("2027-01", 2)


async def test_roi_cache_never_serves_a_stale_report(store: Store) -> None:
    from pbx.http.admin import views

    cache: dict[Any, Any] = {}
    first = await views.roi(store, (2026, 11), cache)
    assert await views.roi(store, (2026, 11), cache) is first  # served from the cache
    await store.calls.insert(call(701, "2026-11-15"))  # a new google call
    second = await views.roi(store, (2026, 11), cache)
    google = {r.source: r.calls for r in second}["google"]
    assert google == {r.source: r.calls for r in first}["google"] + 1
    # A cost settings change is seen at once (a budget counts for the month; a new
    # per-call price only for calls from now on: past records keep theirs).
    await store.sources.update("google", cost_per_call_cents=None, monthly_budget_cents=99900)
    third = await views.roi(store, (2026, 11), cache)
    assert {r.source: r.cost_cents for r in third}["google"] == 99900


def test_recording_path_stays_inside_the_recordings_dir(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pbx.http.admin.api import recording_path
    from pbx.http.admin.app import AdminContext

    rec = tmp_path / "rec"
    write_wav(rec / "2026" / "abc.wav", seconds=0.1)
    write_wav(tmp_path / "secret.wav", seconds=0.1)
    ctx = AdminContext(store=None, live_calls=None, secure_cookies=False, recordings_dir=rec)  # type: ignore[arg-type]
    found = recording_path(ctx, SimpleNamespace(id="abc", recording="2026/abc.wav"))  # type: ignore[arg-type]
    assert found == (rec / "2026" / "abc.wav").resolve()
    for name in ("../secret.wav", str(tmp_path / "secret.wav"), "2026/../../secret.wav"):
        assert recording_path(ctx, SimpleNamespace(id="x", recording=name)) is None  # type: ignore[arg-type]
    assert recording_path(ctx, SimpleNamespace(id="nope")) is None  # type: ignore[arg-type]
