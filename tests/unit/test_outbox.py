"""pbx.service.outbox: local HTTP delivery, retries with backoff, restarts (real sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from pbx.attribution.integrations import Integrations, outbox_for, sign
from pbx.config import OutboxSettings
from pbx.records import CallRecord, Disposition
from pbx.service.outbox import OutboxDispatcher
from pbx.store.connect import open_store

FAST = OutboxSettings(poll_interval=0.02, backoff_base=0.02, backoff_max=0.1, max_attempts=5,
                      timeout=2.0)  # fmt: skip
WAIT = 10.0  # bound on every wait in these tests


@dataclass
class Receiver:
    """A local HTTP endpoint that fails the first `failures` posts, then accepts."""

    failures: int = 0
    bodies: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    accepted: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 1
    hits: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.hits <= self.failures:
            return web.Response(status=503, text="try later")
        self.bodies.append((request.path_qs, await request.read(), dict(request.headers)))
        if len(self.bodies) >= self.expected:
            self.accepted.set()
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    await runner.cleanup()


def _record() -> CallRecord:
    return CallRecord(
        id="abc123", inbound_call_id="c", started_at="2026-03-05T10:00:00.000000Z",
        ended_at="2026-03-05T10:01:00.000000Z", caller="+12125550123",
        tracking_number="+14155550101", source="Radio", disposition=Disposition.ANSWERED,
        talk_seconds=55.0,
    )  # fmt: skip


async def test_fails_twice_then_accepts_delivered_once(tmp_path: Path, receiver: Receiver) -> None:
    receiver.failures = 2
    cfg = Integrations(webhook_urls=(f"{receiver.url}/hook",))
    async with await open_store(tmp_path / "db.sqlite3") as store:
        await store.calls.finish(_record(), outbox_for(_record(), None, cfg, "ev-1", "now"))
        dispatcher = OutboxDispatcher(store, FAST, webhook_secret="s3cret")
        dispatcher.start()
        try:
            await asyncio.wait_for(receiver.accepted.wait(), WAIT)
            for _ in range(200):  # bounded: until the delivery is recorded
                (item,) = [i for i in [await store.outbox.get(1)] if i is not None]
                if item.delivered_at:
                    break
                await asyncio.sleep(0.01)
        finally:
            await dispatcher.close()
        assert receiver.hits == 3
        assert len(receiver.bodies) == 1
        path, body, headers = receiver.bodies[0]
        assert path == "/hook"
        assert json.loads(body)["event"] == "call.ended"
        stamp = int(headers["X-Pbx-Signature"].split(",")[0].removeprefix("t="))
        assert headers["X-Pbx-Signature"] == sign("s3cret", body, stamp)
        assert headers["X-Pbx-Event"] == "call.ended"
        assert item.attempts == 3
        assert item.last_error is not None
        assert item.last_error.startswith("HTTP 503")
        assert await store.outbox.due("9999") == []


async def test_undelivered_items_survive_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "db.sqlite3"
    dead = "http://127.0.0.1:9/mp"  # discard port: connection refused
    cfg = Integrations(ga4_measurement_id="G-1", ga4_api_secret="x", ga4_base_url=dead,
                       webhook_urls=(f"{dead}/hook",))  # fmt: skip
    async with await open_store(db) as store:
        await store.calls.finish(_record(), outbox_for(_record(), None, cfg, "ev-1", "now"))
        dispatcher = OutboxDispatcher(store, FAST)
        dispatcher.start()
        for _ in range(500):
            items = [await store.outbox.get(i) for i in (1, 2)]
            if all(i is not None and i.attempts >= 1 for i in items):
                break
            await asyncio.sleep(0.01)
        await dispatcher.close()
    # the "new daemon": same file, the endpoint now answers (point the items at it)
    async with await open_store(db) as store:
        pending = await store.outbox.due("9999")
        assert {i.kind for i in pending} == {"ga4", "webhook"}
        assert all(i.attempts >= 1 and i.delivered_at is None for i in pending)
    async with await open_store(db) as store:
        await _retarget(store, dead, receiver.url)
        receiver.expected = 2
        dispatcher = OutboxDispatcher(store, FAST, ga4=cfg)
        dispatcher.start()
        try:
            await asyncio.wait_for(receiver.accepted.wait(), WAIT)
        finally:
            await dispatcher.close()
        paths = sorted(p for p, _, _ in receiver.bodies)
        assert paths[0] == "/hook"
        assert paths[1].startswith("/mp/collect?measurement_id=G-1&api_secret=x")


async def _retarget(store: object, old: str, new: str) -> None:
    db = store._db  # type: ignore[attr-defined]
    async with db.write() as tx:
        await tx.run("UPDATE outbox SET target_url = replace(target_url, ?, ?), "
                     "next_attempt_at = NULL", (old, new))  # fmt: skip


async def test_gives_up_after_max_attempts(tmp_path: Path) -> None:
    settings = OutboxSettings(poll_interval=0.01, backoff_base=0.01, backoff_max=0.01,
                              max_attempts=2, timeout=1.0)  # fmt: skip
    cfg = Integrations(webhook_urls=("http://127.0.0.1:9/hook",))
    async with await open_store(tmp_path / "db.sqlite3") as store:
        await store.calls.finish(_record(), outbox_for(_record(), None, cfg, "e", "now"))
        dispatcher = OutboxDispatcher(store, settings)
        dispatcher.start()
        try:
            for _ in range(500):
                item = await store.outbox.get(1)
                if item is not None and item.gave_up:
                    break
                await asyncio.sleep(0.01)
        finally:
            await dispatcher.close()
        assert item is not None
        assert item.gave_up
        assert item.attempts == 2


async def test_ga4_secret_is_added_at_delivery_and_never_stored(
    tmp_path: Path, receiver: Receiver
) -> None:
    cfg = Integrations(ga4_measurement_id="G-1", ga4_api_secret="mp-s3cret",
                       ga4_base_url=f"{receiver.url}/mp")  # fmt: skip
    async with await open_store(tmp_path / "db.sqlite3") as store:
        await store.calls.finish(_record(), outbox_for(_record(), None, cfg, "e", "now"))
        stored = await store.outbox.get(1)
        assert stored is not None
        assert "mp-s3cret" not in stored.target_url
        assert "mp-s3cret" not in await store.dump()
        rotated = Integrations(ga4_measurement_id="G-1", ga4_api_secret="rotated")
        dispatcher = OutboxDispatcher(store, FAST, ga4=rotated)
        dispatcher.start()
        try:
            await asyncio.wait_for(receiver.accepted.wait(), WAIT)
        finally:
            await dispatcher.close()
    ((path, _, _),) = receiver.bodies
    assert path == "/mp/mp/collect?measurement_id=G-1&api_secret=rotated"


async def test_ga4_item_without_a_known_secret_fails_with_no_secret_in_the_error(
    tmp_path: Path,
) -> None:
    settings = OutboxSettings(poll_interval=0.01, backoff_base=0.01, backoff_max=0.01,
                              max_attempts=1, timeout=1.0)  # fmt: skip
    cfg = Integrations(ga4_measurement_id="G-9", ga4_api_secret="gone",
                       ga4_base_url="http://127.0.0.1:9")  # fmt: skip
    async with await open_store(tmp_path / "db.sqlite3") as store:
        await store.calls.finish(_record(), outbox_for(_record(), None, cfg, "e", "now"))
        dispatcher = OutboxDispatcher(store, settings, ga4=Integrations())
        dispatcher.start()
        try:
            for _ in range(500):
                item = await store.outbox.get(1)
                if item is not None and item.gave_up:
                    break
                await asyncio.sleep(0.01)
        finally:
            await dispatcher.close()
        assert item is not None
        assert item.last_error == "ValueError: no GA4 API secret for measurement id G-9"
