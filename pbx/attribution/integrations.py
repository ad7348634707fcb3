"""GA4 Measurement Protocol events and webhook payloads for call records (pure).

Builds the `OutboxItem`s the runner stores: `progress_items` when a record
is first written (`call.started`) and when it is answered
(`call.answered`); `outbox_for` with the final record (`call.ended` and the
GA4 event), stored in the same transaction as that record. The dispatcher
(`pbx.service.outbox`) posts them; `sign` and `backoff` are its pure helpers.

GA4 (Measurement Protocol, `POST {base}/mp/collect?measurement_id=&api_secret=`
with `{"client_id", "timestamp_micros", "events": [{"name", "params"}]}`):
- property: the source's own measurement id + API secret when both are
  set, else the global `[ga4]` pair, else no event;
- the API secret is never stored: the outbox item's URL names only the
  measurement id, and the dispatcher adds `api_secret` when it posts
  (`ga4_secret_for`: a source with that measurement id and a secret, else
  the global pair's). So a rotated secret applies to queued events too,
  and the database, `pbx` listings and logs hold no GA4 secret. Items queued
  by an older pbx still carry `api_secret` in their URL; they are posted as
  stored (nothing is rewritten, so nothing queued is lost);
- params: `source`, `medium`, `campaign` (the visit's utm_* values, else
  the source's GA fields, else for `source` the source's name), `tracking_number`,
  `duration` (talk seconds, whole), `disposition`; unknown values are left
  out, values are cut to 100 characters (GA4's limit for parameter values);
- client_id: the visit's GA client id, else one derived from the record id
  and start time (`<crc32>.<epoch seconds>`, GA's own shape), so retries of
  the same call always send the same id;
- `timestamp_micros` is the call's end, so a delivery retried later still
  lands at the right time (GA accepts events up to 72 hours back).

Webhooks: one item per configured URL, body `{"id", "event", "occurred_at",
"call": <the record as in `pbx calls export --format json`>}`; `id` is the
event's id, the same for every URL, so receivers can drop duplicates
(delivery is at least once). The dispatcher signs the body at send time
(`X-Pbx-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`),
so the secret is never stored in the outbox, and the time stamp is inside
what is signed: a receiver refuses a signature older than its replay window
(docs/admin-guide.md has the check, 5 minutes suggested). `t` is the time of
this attempt, so a retry is signed afresh.

Decisions: refused calls (403/404/blocked before a record is written by the
runner) get no webhooks; a record written already final gets `call.started`
from `progress_items` only if the runner writes it through `_write`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from pbx.config import Settings
from pbx.records import CallRecord, Disposition, to_dict
from pbx.store.base import OutboxItem, Source

GA_PARAM_CHARS = 100  # GA4 Measurement Protocol limit for event parameter values
CALL_STARTED = "call.started"
CALL_ANSWERED = "call.answered"
CALL_ENDED = "call.ended"
CALL_VOICEMAIL = "call.voicemail"  # a final record with disposition voicemail (issue 13)


@dataclass(frozen=True, slots=True)
class Integrations:
    """What the runner needs to build outbox items (from `[ga4]` and `[webhooks]`)."""

    ga4_measurement_id: str = ""
    ga4_api_secret: str = ""
    ga4_base_url: str = "https://www.google-analytics.com"
    ga4_event_name: str = "phone_call"
    webhook_urls: tuple[str, ...] = ()


def integrations_from(settings: Settings) -> Integrations:
    """The runner's view of `[ga4]` and `[webhooks]`."""
    g = settings.ga4
    return Integrations(
        g.measurement_id, g.api_secret, g.base_url, g.event_name, settings.webhooks.urls
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _micros(stamp: str | None) -> int | None:
    if not stamp:
        return None
    moment = dt.datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1_000_000)


def client_id(record: CallRecord) -> str:
    """The visit's GA client id, else a stable one made from the record (GA's shape)."""
    if record.ga_client_id:
        return record.ga_client_id
    started = (_micros(record.started_at) or 0) // 1_000_000
    return f"{zlib.crc32(record.id.encode())}.{started}"


def ga4_property(source: Source | None, cfg: Integrations) -> tuple[str, str] | None:
    """(measurement id, API secret): the source's own pair, else the global one."""
    if source is not None and source.ga_measurement_id and source.ga_api_secret:
        return source.ga_measurement_id, source.ga_api_secret
    if cfg.ga4_measurement_id and cfg.ga4_api_secret:
        return cfg.ga4_measurement_id, cfg.ga4_api_secret
    return None


def ga4_params(record: CallRecord, source: Source | None) -> dict[str, str | int]:
    """Event parameters; see the module docstring for where each comes from."""
    values: dict[str, str | int | None] = {
        "source": record.utm_source or (source.ga_source if source else None) or record.source,
        "medium": record.utm_medium or (source.ga_medium if source else None),
        "campaign": record.utm_campaign or (source.ga_campaign if source else None),
        "tracking_number": record.tracking_number,
        "duration": int(record.talk_seconds),
        "disposition": record.disposition.value,
    }
    return {
        k: v[:GA_PARAM_CHARS] if isinstance(v, str) else v
        for k, v in values.items()
        if v is not None
    }


def ga4_item(record: CallRecord, source: Source | None, cfg: Integrations) -> OutboxItem | None:
    """The GA4 event for a finished call, or None when no property is configured."""
    prop = ga4_property(source, cfg)
    if prop is None:
        return None
    query = urlencode({"measurement_id": prop[0]})  # the secret is added at delivery
    body: dict[str, Any] = {
        "client_id": client_id(record),
        "events": [{"name": cfg.ga4_event_name, "params": ga4_params(record, source)}],
    }
    micros = _micros(record.ended_at or record.started_at)
    if micros is not None:
        body["timestamp_micros"] = micros
    url = f"{cfg.ga4_base_url.rstrip('/')}/mp/collect?{query}"
    return OutboxItem(kind="ga4", payload=_json(body), target_url=url, created_at=record.ended_at)


def webhook_items(
    event: str, record: CallRecord, cfg: Integrations, event_id: str, now: str
) -> list[OutboxItem]:
    """One webhook delivery of `event` per configured URL (no JSON built when there is none)."""
    if not cfg.webhook_urls:
        return []
    payload = _json({"id": event_id, "event": event, "occurred_at": now, "call": to_dict(record)})
    return [
        OutboxItem(kind="webhook", payload=payload, target_url=url, created_at=now)
        for url in cfg.webhook_urls
    ]


def progress_items(
    previous: CallRecord | None, record: CallRecord, cfg: Integrations, event_id: str, now: str
) -> list[OutboxItem]:
    """`call.started` for a new record, `call.answered` when it becomes answered."""
    if previous is None:
        return webhook_items(CALL_STARTED, record, cfg, event_id, now)
    if (
        record.disposition is Disposition.ANSWERED
        and previous.disposition is not record.disposition
    ):
        return webhook_items(CALL_ANSWERED, record, cfg, event_id, now)
    return []


def outbox_for(
    record: CallRecord, source: Source | None, cfg: Integrations, event_id: str, now: str
) -> list[OutboxItem]:
    """Items to store with the final record: `call.ended` webhooks (and `call.voicemail`
    for a voicemail, with its own event id) and the GA4 event."""
    items = webhook_items(CALL_ENDED, record, cfg, event_id, now)
    if record.disposition is Disposition.VOICEMAIL:
        items += webhook_items(CALL_VOICEMAIL, record, cfg, f"{event_id}-voicemail", now)
    ga = ga4_item(record, source, cfg)
    return [*items, ga] if ga is not None else items


def ga4_secret_for(measurement_id: str, sources: Iterable[Source], cfg: Integrations) -> str | None:
    """The API secret to post an event for `measurement_id` with, or None if none is known.

    A source's own pair first (as `ga4_property` chose it), then the global one.
    """
    for source in sources:
        if source.ga_measurement_id == measurement_id and source.ga_api_secret:
            return source.ga_api_secret
    if cfg.ga4_measurement_id == measurement_id and cfg.ga4_api_secret:
        return cfg.ga4_api_secret
    return None


def ga4_measurement_id(url: str) -> tuple[str | None, bool]:
    """(measurement id, whether the URL already carries an api_secret: a legacy item)."""
    query = parse_qs(urlsplit(url).query)
    ids = query.get("measurement_id")
    return (ids[0] if ids else None), "api_secret" in query


def with_api_secret(url: str, secret: str) -> str:
    """`url` with `api_secret` appended to its query (at delivery, never stored)."""
    joiner = "&" if urlsplit(url).query else "?"
    return f"{url}{joiner}{urlencode({'api_secret': secret})}"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Pbx-Signature` value: `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`."""
    signed = str(timestamp).encode() + b"." + body
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before retry number `attempts` (1 = first retry): base * 2^(n-1), capped."""
    exponent = min(max(attempts - 1, 0), 62)  # 2**62 s is far beyond any cap
    return float(min(cap, base * (2**exponent)))
