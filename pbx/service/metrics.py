"""Prometheus metrics of the daemon: one registry it owns, helpers the shell calls (no I/O).

`Metrics` owns a non-global `prometheus_client.CollectorRegistry` (so tests
and several daemons in one process never share counters) and the metric
objects; the call path, the SIP agent and the daemon call its helpers, and
`render()` gives the text exposition format for `GET /metrics`. Nothing
here reads a socket, a clock or the database: values that live elsewhere
(active calls, relay counters of live sessions, flood guard totals) are read
on scrape through callables and live objects handed in; the outbox backlog
is awaited by the HTTP handler and set just before `render()`.

Families (all prefixed `pbx_`):
- `calls_total{disposition}`: calls whose record became final (answered,
  busy, no-answer, failed, cancelled, rejected, blocked).
- `active_calls`: calls holding an admission slot now (admitted, record not
  final yet).
- `invites_total`: new INVITEs received (dialog-creating, retransmissions
  absorbed by the transaction layer are not counted): `rate()` is CPS.
- `call_setup_seconds` (histogram): from the INVITE's arrival to the first
  180, 183 or 2xx sent to the caller, i.e. post-dial delay as the caller
  hears it. Decision: ringing, not answer, is the end point: answer time
  measures how long people take to pick up, not how fast pbx is. Calls that
  fail before any of those are not observed (they count in `calls_total`).
- `media_packets_total{leg}`, `media_bytes_total{leg}`: RTP (and RTCP)
  packets the relay forwarded, by the leg they arrived on; and
  `media_dropped_total{leg}`: packets the relay did not forward (not
  latched, junk, no remote yet, send buffer full). Decision: "loss" is
  what the relay dropped; sequence-number gaps upstream of the relay are
  not measured (that would need parsing every packet). Closed sessions'
  totals are kept; live sessions are summed at scrape time.
- `outbox_backlog`: integration deliveries not yet delivered nor given up.
- `trunk_registered{trunk}`: 1 while the trunk's registration is bound, 0
  otherwise (only trunks with `--register`).
- `rejected_total{reason}`: calls refused before being connected, by a
  bounded vocabulary (`REASONS`): limits, flood guard and intake refusals.
- `flood_throttled_total`, `flood_dropped_total`, `flood_bans_total`: the
  flood guard's counters (read from its `FloodStats` on scrape).
- `pool_exhausted_total{source}`: new website visits that found their
  source's number pool exhausted and got the fallback number (the visitor
  API, `pbx.http.visitors`). Sources are provisioned names, so the label
  is bounded; a source appears at its first exhausted visit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from pbx.records import CallRecord, Disposition
from pbx.rtp.media import Counters, Leg, MediaSession, MediaStats
from pbx.rules.limits import FloodStats

if TYPE_CHECKING:
    from pbx.call.intake import Refusal

CONTENT_TYPE = CONTENT_TYPE_LATEST
LEGS: tuple[Leg, Leg] = ("inbound", "outbound")
# Post-dial delay buckets (seconds): sub-second is healthy, 5+ s is a problem.
SETUP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0)
# Every `reason` label value of `rejected_total` (bounded label cardinality).
REASONS = (
    "draining",
    "lease_lost",  # this node's store lease was swept: it must not take calls
    "store_unavailable",  # the store refuses writes: no call without its record
    "overload",  # too many call tasks at once (hard cap before any lookup)
    "loop_lag",  # the event loop runs late: beyond capacity
    "loop_busy",  # the loop's thread is at its busy target: a share of new calls refused
    "max_cps_per_source",
    "max_concurrent",
    "max_per_trunk",
    "max_per_number",
    "not_trunk",  # 403: source address is no trunk
    "unknown_number",  # 404
    "too_many_hops",  # 483
    "blocked",
    "unavailable",  # 480: number disabled, closed, no destination
    "other",
)
_BY_STATUS = {403: "not_trunk", 404: "unknown_number", 483: "too_many_hops", 480: "unavailable"}


def refusal_reason(status: int, disposition: Disposition | None = None) -> str:
    """The `rejected_total` label for an intake refusal."""
    if disposition is Disposition.BLOCKED:
        return "blocked"
    return _BY_STATUS.get(status, "other")


class _Media(Collector):
    """Relay counters: closed sessions' totals plus live sessions summed on scrape."""

    def __init__(self) -> None:
        self.live: dict[int, MediaSession] = {}
        self.closed: dict[str, list[int]] = {leg: [0, 0, 0] for leg in LEGS}

    def collect(self) -> Iterable[Metric]:
        totals = {leg: list(values) for leg, values in self.closed.items()}
        for session in list(self.live.values()):
            snapshot = session.snapshot()
            _add(totals["inbound"], snapshot.inbound)
            _add(totals["outbound"], snapshot.outbound)
        families = (
            ("pbx_media_packets", "RTP/RTCP packets relayed, by the leg they came in on", 0),
            ("pbx_media_bytes", "RTP/RTCP bytes relayed, by the leg they came in on", 1),
            ("pbx_media_dropped", "Packets the relay did not forward (loss at the relay)", 2),
        )
        for name, doc, index in families:
            family = CounterMetricFamily(name, doc, labels=["leg"])
            for leg in LEGS:
                family.add_metric([leg], totals[leg][index])
            yield family


def _add(total: list[int], counters: Counters) -> None:
    total[0] += counters.packets + counters.rtcp_packets
    total[1] += counters.bytes + counters.rtcp_bytes
    total[2] += counters.dropped


class _Flood(Collector):
    def __init__(self) -> None:
        self.stats: FloodStats | None = None

    def collect(self) -> Iterable[Metric]:
        stats = self.stats or FloodStats()
        yield CounterMetricFamily(
            "pbx_flood_throttled", "Datagrams answered 503 by the flood guard", stats.throttled
        )
        yield CounterMetricFamily(
            "pbx_flood_dropped", "Datagrams ignored by the flood guard (banned)", stats.dropped
        )
        yield CounterMetricFamily(
            "pbx_flood_bans", "Addresses banned by the flood guard", stats.bans
        )


class Metrics:
    """The daemon's metrics; see the module docstring for the families."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.calls = Counter(
            "pbx_calls", "Calls finished, by disposition", ["disposition"], registry=r
        )
        self.invites = Counter("pbx_invites", "New INVITEs received; rate() is CPS", registry=r)
        self.rejected = Counter("pbx_rejected", "Calls refused, by reason", ["reason"], registry=r)
        self.setup = Histogram(
            "pbx_call_setup_seconds", "INVITE received to first 180/183/2xx sent to the caller",
            buckets=SETUP_BUCKETS, registry=r,
        )  # fmt: skip
        self.active = Gauge("pbx_active_calls", "Calls in progress (admitted)", registry=r)
        self.records_queued = Gauge(
            "pbx_records_queued", "Record writes waiting for the store to take them", registry=r
        )
        self.outbox_backlog = Gauge(
            "pbx_outbox_backlog", "Integration deliveries waiting (not delivered, not given up)",
            registry=r,
        )  # fmt: skip
        self.trunk_registered = Gauge(
            "pbx_trunk_registered", "1 while the trunk's registration is bound", ["trunk"],
            registry=r,
        )  # fmt: skip
        self.pool_exhausted = Counter(
            "pbx_pool_exhausted", "New visits that found their source's pool exhausted",
            ["source"], registry=r,
        )  # fmt: skip
        self._media = _Media()
        self._flood = _Flood()
        r.register(self._media)
        r.register(self._flood)
        for disposition in Disposition:
            if disposition.is_final and disposition is not Disposition.INTERRUPTED:
                self.calls.labels(str(disposition))
        for reason in REASONS:
            self.rejected.labels(reason)

    # --- wiring (daemon) -------------------------------------------------------------

    def watch_active(self, count: Callable[[], int]) -> None:
        """Read active calls from `count()` on every scrape."""
        self.active.set_function(lambda: float(count()))

    def watch_records(self, queued: Callable[[], int]) -> None:
        """Record writes held while the store refuses them, read on every scrape."""
        self.records_queued.set_function(lambda: float(queued()))

    def watch_flood(self, stats: FloodStats) -> None:
        self._flood.stats = stats

    def registration(self, trunk: str, registered: bool) -> None:
        self.trunk_registered.labels(trunk).set(1.0 if registered else 0.0)

    # --- visitor API ---------------------------------------------------------------------

    def pool_exhausted_for(self, source: str) -> None:
        self.pool_exhausted.labels(source).inc()

    # --- call path (runner) -------------------------------------------------------------

    def invite_received(self) -> None:
        self.invites.inc()

    def rejected_for(self, reason: str) -> None:
        self.rejected.labels(reason if reason in REASONS else "other").inc()

    def refused(self, refusal: Refusal) -> None:
        """A call refused at admission: by reason, and by disposition if it got a record."""
        record = refusal.record
        if refusal.status == 503 and refusal.reason.startswith("over calls."):
            self.rejected_for(refusal.reason.removeprefix("over calls."))
        else:
            disposition = record.disposition if record is not None else None
            self.rejected_for(refusal_reason(refusal.status, disposition))
        if record is not None:
            self.call_finished(record)

    def call_finished(self, record: CallRecord) -> None:
        self.calls.labels(str(record.disposition)).inc()

    def setup_progress(self, status: int, seconds: float) -> bool:
        """Observe the setup time if `status` ends call setup (180/183/2xx); True if it did."""
        if status in (180, 183) or 200 <= status < 300:
            self.setup.observe(max(0.0, seconds))
            return True
        return False

    def live_media(self) -> list[MediaSession]:
        """The media sessions open now (for `pbx.service.checkpoint`)."""
        return list(self._media.live.values())

    def media_opened(self, session: MediaSession) -> None:
        self._media.live[id(session)] = session

    def media_closed(self, session: MediaSession, stats: MediaStats) -> None:
        if self._media.live.pop(id(session), None) is None:
            return
        _add(self._media.closed["inbound"], stats.inbound)
        _add(self._media.closed["outbound"], stats.outbound)

    # --- scrape -------------------------------------------------------------------------

    def render(self) -> bytes:
        """The registry in Prometheus text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
