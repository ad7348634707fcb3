"""Outbox dispatcher: posts queued GA4 events and webhooks with retries (I/O, asyncio + aiohttp).

Items are queued in the database with the call record (`store.calls.finish`)
or by the runner (`store.outbox.add`); this task looks for due items every
`outbox.poll_interval` seconds (or at once after `wake()`), posts each
`payload` as JSON to its `target_url`, and records the outcome:
- a 2xx answer: `mark_delivered`;
- anything else (connection error, timeout, other status): `mark_failed`
  with the next attempt `backoff(attempts)` later (doubling from
  `outbox.backoff_base`, capped at `outbox.backoff_max`); after
  `outbox.max_attempts` attempts the item is given up (kept, not retried).

Nothing is lost across restarts: the database is the queue; an item in
flight when the daemon stops is simply due again on the next start.
Delivery is therefore at least once: webhook payloads carry an event `id`
for receivers to drop duplicates.

Webhooks carry `X-Pbx-Event`, `X-Pbx-Delivery` (the outbox id) and, when
`webhooks.secret` is set, `X-Pbx-Signature: t=<unix>,v1=<hex HMAC-SHA256>`
of `"<t>."` + the exact body bytes (`integrations.sign`; `t` is this
attempt's clock, so receivers can refuse replays).

GA4 items are stored without their API secret; `_target` adds it at post
time from the sources and `[ga4]` (`integrations.ga4_secret_for`). An item
whose secret is gone (source removed) fails like an unreachable endpoint.
The secret is masked out of every error text kept or logged.

Bounded: at most `BATCH` items per look and `CONCURRENCY` posts at once;
error texts stored are cut to `MAX_ERROR_CHARS`; answers are not read
beyond `MAX_ANSWER_BYTES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from urllib.parse import quote_plus

import aiohttp
import structlog

from pbx.attribution.integrations import (
    Integrations,
    backoff,
    ga4_measurement_id,
    ga4_secret_for,
    sign,
    with_api_secret,
)
from pbx.config import OutboxSettings
from pbx.records import iso_utc
from pbx.store import OutboxItem, Store

log = structlog.get_logger("pbx.service.outbox")

BATCH = 100
CONCURRENCY = 8
MAX_ERROR_CHARS = 300
MAX_ANSWER_BYTES = 4096


class OutboxDispatcher:
    """One background task delivering due outbox items; `start()` then `close()`."""

    def __init__(
        self,
        store: Store,
        settings: OutboxSettings,
        webhook_secret: str = "",
        clock: Callable[[], float] = time.time,
        *,
        ga4: Integrations | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.secret = webhook_secret
        self.ga4 = ga4 or Integrations()
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(CONCURRENCY)

    def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def wake(self) -> None:
        """Look for due items now instead of at the next poll."""
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            try:
                count = await self.run_once()
            except Exception:  # a store hiccup must not end deliveries for good
                log.exception("outbox.failed")
                count = 0
            if count >= BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            self._wake.clear()

    async def run_once(self) -> int:
        """Try every due item once; returns how many were tried."""
        items = await self.store.outbox.due(iso_utc(self.clock()), BATCH)
        if items:
            await asyncio.gather(*(self._deliver(item) for item in items))
        return len(items)

    async def _deliver(self, item: OutboxItem) -> None:
        async with self._limit:
            error = await self._post(item)
        now = self.clock()
        if error is None:
            await self.store.outbox.mark_delivered(item.id, iso_utc(now))
            log.info("outbox.delivered", id=item.id, kind=item.kind, attempts=item.attempts + 1)
            return
        attempts = item.attempts + 1
        next_at = None
        if attempts < self.settings.max_attempts:
            delay = backoff(attempts, self.settings.backoff_base, self.settings.backoff_max)
            next_at = iso_utc(now + delay)
        await self.store.outbox.mark_failed(item.id, next_at, error[:MAX_ERROR_CHARS])
        event = "outbox.retry" if next_at else "outbox.gave_up"
        log.warning(event, id=item.id, kind=item.kind, tries=attempts, error=error, next=next_at)

    def _headers(self, item: OutboxItem, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "pbx"}
        if item.kind == "webhook":
            with contextlib.suppress(ValueError, AttributeError):
                headers["X-Pbx-Event"] = str(json.loads(body).get("event", ""))
            headers["X-Pbx-Delivery"] = str(item.id)
            if self.secret:
                headers["X-Pbx-Signature"] = sign(self.secret, body, int(self.clock()))
        return headers

    async def _target(self, item: OutboxItem) -> tuple[str, str | None]:
        """(URL to post to, the secret in it to mask from errors); raises ValueError if none."""
        if item.kind != "ga4":
            return item.target_url, None
        measurement_id, legacy = ga4_measurement_id(item.target_url)
        if legacy or measurement_id is None:
            return item.target_url, None  # queued by an older pbx: posted as stored
        secret = ga4_secret_for(measurement_id, await self.store.sources.list(), self.ga4)
        if secret is None:
            raise ValueError(f"no GA4 API secret for measurement id {measurement_id}")
        return with_api_secret(item.target_url, secret), secret

    async def _post(self, item: OutboxItem) -> str | None:
        """None on a 2xx answer, else a short error text (with no secret in it)."""
        assert self._session is not None, "start() first"
        body = item.payload.encode()
        secret: str | None = None
        try:
            url, secret = await self._target(item)
            async with self._session.post(
                url, data=body, headers=self._headers(item, body)
            ) as answer:
                if 200 <= answer.status < 300:
                    return None
                text = (await answer.content.read(MAX_ANSWER_BYTES)).decode("utf-8", "replace")
                return _masked(f"HTTP {answer.status}: {text.strip()}", secret)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return _masked(f"{type(exc).__name__}: {exc}", secret)


def _masked(text: str, secret: str | None) -> str:
    """`text` with `secret` (and its URL-quoted form) replaced by `***`."""
    if not secret:
        return text
    return text.replace(quote_plus(secret), "***").replace(secret, "***")
