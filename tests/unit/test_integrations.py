"""pbx.attribution.integrations: GA4 event and webhook payloads, signatures, backoff (pure)."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from pbx.attribution.integrations import (
    Integrations,
    backoff,
    client_id,
    ga4_measurement_id,
    ga4_secret_for,
    integrations_from,
    outbox_for,
    progress_items,
    sign,
    with_api_secret,
)
from pbx.config import load_settings
from pbx.records import CallRecord, Disposition
from pbx.store.base import Source

CFG = Integrations(
    ga4_measurement_id="G-GLOBAL",
    ga4_api_secret="globalsecret",
    ga4_base_url="http://127.0.0.1:9/",
    ga4_event_name="phone_call",
    webhook_urls=("http://127.0.0.1:9/a", "http://127.0.0.1:9/b"),
)
SRC = Source(name="Radio", ga_source="radio", ga_medium="offline", ga_campaign="spring")
REC = CallRecord(
    id="0123abcd",
    inbound_call_id="c1",
    started_at="2026-03-05T10:00:00.000000Z",
    ended_at="2026-03-05T10:02:05.000000Z",
    caller="+12125550123",
    tracking_number="+14155550101",
    source="Radio",
    disposition=Disposition.ANSWERED,
    talk_seconds=120.7,
)
NOW = "2026-03-05T10:02:05.100000Z"


def _ga(items: list) -> tuple[dict, dict]:  # type: ignore[type-arg]
    (ga,) = [i for i in items if i.kind == "ga4"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(ga.target_url).query).items()}
    return json.loads(ga.payload), query


def test_call_without_visit_uses_source_ga_fields_and_generated_client_id() -> None:
    items = outbox_for(REC, SRC, CFG, "ev1", NOW)
    body, query = _ga(items)
    assert query == {"measurement_id": "G-GLOBAL"}  # the secret is added at delivery
    assert items[-1].target_url.startswith("http://127.0.0.1:9/mp/collect?")
    (event,) = body["events"]
    assert event["name"] == "phone_call"
    assert event["params"] == {
        "source": "radio",
        "medium": "offline",
        "campaign": "spring",
        "tracking_number": "+14155550101",
        "duration": 120,
        "disposition": "answered",
    }
    assert body["client_id"] == client_id(REC)
    assert body["client_id"].endswith(".1772704800")  # started_at in epoch seconds
    assert body["timestamp_micros"] == 1772704925_000000


def test_visit_data_wins_and_source_property_overrides_global() -> None:
    rec = replace(REC, utm_source="google", utm_medium="cpc", ga_client_id="555.777")
    own = replace(SRC, ga_measurement_id="G-OWN", ga_api_secret="own")
    body, query = _ga(outbox_for(rec, own, CFG, "ev1", NOW))
    assert query["measurement_id"] == "G-OWN"
    assert body["client_id"] == "555.777"
    params = body["events"][0]["params"]
    assert (params["source"], params["medium"], params["campaign"]) == ("google", "cpc", "spring")


def test_no_property_no_ga_event_and_no_urls_no_webhooks() -> None:
    assert outbox_for(REC, SRC, Integrations(), "ev1", NOW) == []
    only_ga = replace(CFG, webhook_urls=())
    assert [i.kind for i in outbox_for(REC, None, only_ga, "e", NOW)] == ["ga4"]
    body, _ = _ga(outbox_for(replace(REC, ga_client_id=None), None, only_ga, "e", NOW))
    assert body["events"][0]["params"]["source"] == "Radio"  # the source name at least
    assert "medium" not in body["events"][0]["params"]


def test_webhooks_one_per_url_same_event_id() -> None:
    hooks = [i for i in outbox_for(REC, SRC, CFG, "ev1", NOW) if i.kind == "webhook"]
    assert [h.target_url for h in hooks] == list(CFG.webhook_urls)
    payloads = [json.loads(h.payload) for h in hooks]
    assert payloads[0] == payloads[1]
    assert payloads[0]["id"] == "ev1"
    assert payloads[0]["event"] == "call.ended"
    assert payloads[0]["occurred_at"] == NOW
    assert payloads[0]["call"]["tracking_number"] == "+14155550101"
    assert payloads[0]["call"]["disposition"] == "answered"


def test_progress_items_started_answered_once() -> None:
    ringing = replace(REC, disposition=Disposition.RINGING, ended_at=None)
    started = progress_items(None, ringing, CFG, "e1", NOW)
    assert {json.loads(i.payload)["event"] for i in started} == {"call.started"}
    assert len(started) == 2
    answered = progress_items(ringing, REC, CFG, "e2", NOW)
    assert {json.loads(i.payload)["event"] for i in answered} == {"call.answered"}
    assert progress_items(REC, REC, CFG, "e3", NOW) == []
    assert progress_items(ringing, ringing, CFG, "e3", NOW) == []


def test_sign_is_hmac_sha256_of_the_time_stamp_and_the_raw_body() -> None:
    body = b'{"event":"call.ended"}'
    expected = hmac.new(b"k3y", b"1767225600." + body, hashlib.sha256).hexdigest()
    assert sign("k3y", body, 1767225600) == f"t=1767225600,v1={expected}"
    assert sign("k3y", body, 1767225601) != sign("k3y", body, 1767225600)


def test_ga4_secret_resolution_source_first_then_global() -> None:
    own = replace(SRC, ga_measurement_id="G-OWN", ga_api_secret="own")
    assert ga4_secret_for("G-OWN", [SRC, own], CFG) == "own"
    assert ga4_secret_for("G-GLOBAL", [SRC, own], CFG) == "globalsecret"
    assert ga4_secret_for("G-OTHER", [SRC, own], CFG) is None
    url = "https://ga.example/mp/collect?measurement_id=G-OWN"
    assert ga4_measurement_id(url) == ("G-OWN", False)
    assert ga4_measurement_id(with_api_secret(url, "a&b")) == ("G-OWN", True)
    assert with_api_secret(url, "a&b").endswith("&api_secret=a%26b")


def test_integrations_from_settings() -> None:
    s = load_settings(None, {"PBX_GA4_MEASUREMENT_ID": "G-1", "PBX_GA4_API_SECRET": "x"}, {})
    cfg = integrations_from(s)
    assert (cfg.ga4_measurement_id, cfg.ga4_api_secret, cfg.webhook_urls) == ("G-1", "x", ())


def test_backoff_doubles_then_caps() -> None:
    assert [backoff(n, 5.0, 60.0) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


@given(st.integers(0, 10_000), st.floats(0.01, 100), st.floats(0.01, 10_000))
def test_property_backoff_bounded_and_monotonic(n: int, base: float, cap: float) -> None:
    assert 0 < backoff(n, base, cap) <= cap
    assert backoff(n, base, cap) <= backoff(n + 1, base, cap)
