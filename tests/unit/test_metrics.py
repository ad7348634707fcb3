"""pbx.service.metrics: families, bounded labels, on-scrape values, text exposition."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from pbx.call.intake import Refusal
from pbx.records import CallRecord, Disposition
from pbx.rtp.relay import Counters, MediaStats
from pbx.rules.limits import FloodStats
from pbx.service.metrics import REASONS, Metrics, refusal_reason


@dataclass
class FakeSession:
    """Stands in for a live MediaSession: only its counters are read (`snapshot`)."""

    counters: dict[str, Counters] = field(
        default_factory=lambda: {"inbound": Counters(), "outbound": Counters()}
    )

    def snapshot(self) -> MediaStats:
        return MediaStats("fake", self.counters["inbound"], self.counters["outbound"])


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _record(disposition: Disposition) -> CallRecord:
    return CallRecord(
        id="r1",
        inbound_call_id="c1",
        started_at="2026-01-05T10:00:00.000000Z",
        caller="+13125550199",
        tracking_number="+12125550100",
        disposition=disposition,
    )


def test_registry_is_per_instance() -> None:
    a, b = Metrics(), Metrics()
    a.invite_received()
    assert _samples(a)[("pbx_invites_total", ())] == 1.0
    assert _samples(b)[("pbx_invites_total", ())] == 0.0


def test_every_family_is_exposed_before_any_traffic() -> None:
    text = Metrics().render().decode()
    for family in ("pbx_calls", "pbx_invites", "pbx_rejected", "pbx_call_setup_seconds",
                   "pbx_active_calls", "pbx_outbox_backlog", "pbx_trunk_registered",
                   "pbx_media_packets", "pbx_media_bytes", "pbx_media_dropped",
                   "pbx_flood_throttled", "pbx_flood_dropped", "pbx_flood_bans"):  # fmt: skip
        assert re.search(rf"^# TYPE {family}(_total)? ", text, re.M), family


def test_refusals_counted_by_bounded_reason_and_disposition() -> None:
    metrics = Metrics()
    metrics.refused(Refusal(403, "source address is not an allowed trunk"))
    metrics.refused(Refusal(603, "blocked by +1312", _record(Disposition.BLOCKED)))
    metrics.refused(Refusal(503, "over calls.max_per_trunk", _record(Disposition.REJECTED), 5))
    metrics.rejected_for("something new")
    s = _samples(metrics)
    assert s[("pbx_rejected_total", (("reason", "not_trunk"),))] == 1.0
    assert s[("pbx_rejected_total", (("reason", "blocked"),))] == 1.0
    assert s[("pbx_rejected_total", (("reason", "max_per_trunk"),))] == 1.0
    assert s[("pbx_rejected_total", (("reason", "other"),))] == 1.0
    assert s[("pbx_calls_total", (("disposition", "blocked"),))] == 1.0
    assert s[("pbx_calls_total", (("disposition", "rejected"),))] == 1.0
    labels = {dict(k[1]).get("reason") for k in s if k[0] == "pbx_rejected_total"}
    assert labels == set(REASONS)


def test_refusal_reason_mapping() -> None:
    assert refusal_reason(404) == "unknown_number"
    assert refusal_reason(480) == "unavailable"
    assert refusal_reason(486, Disposition.BLOCKED) == "blocked"
    assert refusal_reason(488) == "other"


def test_setup_latency_only_for_ringing_or_answer() -> None:
    metrics = Metrics()
    assert not metrics.setup_progress(100, 0.01)
    assert metrics.setup_progress(180, 0.3)
    assert metrics.setup_progress(200, 2.5)
    assert not metrics.setup_progress(486, 1.0)
    s = _samples(metrics)
    assert s[("pbx_call_setup_seconds_count", ())] == 2.0
    assert s[("pbx_call_setup_seconds_bucket", (("le", "0.5"),))] == 1.0


def test_media_counters_sum_live_and_closed_sessions() -> None:
    metrics = Metrics()
    live, closed = FakeSession(), FakeSession()
    metrics.media_opened(live)  # type: ignore[arg-type]
    metrics.media_opened(closed)  # type: ignore[arg-type]
    live.counters["inbound"].packets = 10
    live.counters["inbound"].rtcp_packets = 1
    live.counters["outbound"].dropped = 3
    stats = MediaStats("x", Counters(packets=5, bytes=800), Counters(packets=4, dropped=2))
    metrics.media_closed(closed, stats)  # type: ignore[arg-type]
    metrics.media_closed(closed, stats)  # type: ignore[arg-type]  # twice: counted once
    s = _samples(metrics)
    assert s[("pbx_media_packets_total", (("leg", "inbound"),))] == 16.0
    assert s[("pbx_media_packets_total", (("leg", "outbound"),))] == 4.0
    assert s[("pbx_media_bytes_total", (("leg", "inbound"),))] == 800.0
    assert s[("pbx_media_dropped_total", (("leg", "outbound"),))] == 5.0


def test_gauges_read_on_scrape() -> None:
    metrics = Metrics()
    active = [3]
    metrics.watch_active(lambda: active[0])
    flood = FloodStats()
    metrics.watch_flood(flood)
    metrics.registration("carrier", True)
    metrics.registration("backup", False)
    flood.bans, flood.dropped = 2, 700
    active[0] = 1
    s = _samples(metrics)
    assert s[("pbx_active_calls", ())] == 1.0
    assert s[("pbx_flood_bans_total", ())] == 2.0
    assert s[("pbx_flood_dropped_total", ())] == 700.0
    assert s[("pbx_trunk_registered", (("trunk", "carrier"),))] == 1.0
    assert s[("pbx_trunk_registered", (("trunk", "backup"),))] == 0.0


def test_calls_by_disposition() -> None:
    metrics = Metrics()
    metrics.call_finished(_record(Disposition.ANSWERED))
    metrics.call_finished(_record(Disposition.ANSWERED))
    metrics.call_finished(_record(Disposition.NO_ANSWER))
    s = _samples(metrics)
    assert s[("pbx_calls_total", (("disposition", "answered"),))] == 2.0
    assert s[("pbx_calls_total", (("disposition", "no-answer"),))] == 1.0
    assert s[("pbx_calls_total", (("disposition", "busy"),))] == 0.0
