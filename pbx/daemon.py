"""`pbx serve`: wires settings, store, SIP agent, RTP relay and HTTP; signals; drain (I/O).

Start-up order: store (and the crash sweep that marks unfinished calls
`interrupted`), RTP relay, SIP agent (UDP and TCP), HTTP `/health`, trunk
registrations; then one `pbx.ready` log line naming every bound address.
SIGTERM or SIGINT: new INVITEs get 503, calls in progress may run for
`timers.drain_timeout` seconds, then the rest are ended (BYE / final
error) and their records finalised, then everything closes.

Decisions:
- Overload (issue 7): the SIP agent gets a flood guard from `[flood]`
  (trunk addresses exempt, re-read from the store every `EXEMPT_REFRESH`
  seconds so CLI changes apply), the call path gets `pbx.service.overload` limits
  from `[calls]`, and `GET /metrics` serves `pbx.service.metrics` unless
  `metrics.enabled = false`. Details in those modules.
- Logs go to stdout (journald collects them; the CLI logs to stderr).
- The daemon runs on uvloop (a declared dependency): 4-5x the relay rate of
  the stock loop (DESIGN.md).
- If the media address would be a wildcard (`0.0.0.0`), SDP needs a
  concrete one: the SIP listen address if concrete, else 127.0.0.1 with a
  warning telling the admin to set `rtp.advertised_address`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
import uvloop
from aiohttp import web

from pbx.attribution.integrations import integrations_from
from pbx.call.model import LocalAddress
from pbx.config import Settings
from pbx.http import metrics as metrics_http
from pbx.http import visitors
from pbx.logs import setup_logging
from pbx.records import iso_utc
from pbx.rtp.ports import PortPairAllocator
from pbx.rtp.relay import MediaRelay
from pbx.service.checkpoint import MediaCheckpoint
from pbx.service.metrics import Metrics
from pbx.service.outbox import OutboxDispatcher
from pbx.service.overload import Overload, flood_guard, trunk_exemption
from pbx.service.registrar import RegistrarService, registrar_config
from pbx.service.runner import CallContext, CallManager
from pbx.sip.agent import SipAgent
from pbx.sip.auth import Credentials
from pbx.sip.peer import Peer, Transport
from pbx.sip.register import RegistrationClient, RegistrationConfig
from pbx.sip.transaction import TimerConfig
from pbx.store import Store, Trunk
from pbx.store.connect import open_store

log = structlog.get_logger("pbx.daemon")

PORT_QUARANTINE = 5.0  # seconds a released RTP pair rests before reuse (late packets)
EXEMPT_REFRESH = 15.0  # seconds between re-reads of trunk addresses for the flood guard
WILDCARDS = ("0.0.0.0", "::", "")


@dataclass
class Daemon:
    """The running parts, for shutdown and for tests that start it in-process."""

    settings: Settings
    store: Store
    agent: SipAgent
    relay: MediaRelay
    manager: CallManager
    http: web.AppRunner | None = None
    outbox: OutboxDispatcher | None = None
    metrics: Metrics | None = None
    guard_task: asyncio.Task[None] | None = None
    checkpoint: MediaCheckpoint | None = None  # media_at for the crash sweep

    async def close(self) -> None:
        if self.guard_task is not None:
            self.guard_task.cancel()
        if self.checkpoint is not None:
            await self.checkpoint.close()
        await self.manager.drain(self.settings.timers.drain_timeout)
        if self.outbox is not None:
            await self.outbox.close()  # undelivered items stay queued in the store
        if self.http is not None:
            await self.http.cleanup()
        await self.agent.close()
        self.relay.close()
        await self.store.close()


def _media_address(settings: Settings) -> str:
    for candidate in (settings.rtp.advertised_address, settings.rtp.host, settings.sip.host):
        if candidate and candidate not in WILDCARDS:
            return candidate
    log.warning("media.address_guessed", address="127.0.0.1", hint="set rtp.advertised_address")
    return "127.0.0.1"


async def start(settings: Settings) -> Daemon:
    """Bring every part up; raises on a port already in use or a bad database."""
    store = await open_store(settings.store.location)
    swept = await store.calls.mark_interrupted(iso_utc(time.time()))
    if swept:
        log.warning("calls.interrupted", count=swept)
    media = _media_address(settings)
    relay = MediaRelay(
        PortPairAllocator(settings.rtp.port_low, settings.rtp.port_high, PORT_QUARANTINE),
        settings.rtp.host or (settings.sip.host if settings.sip.host else "0.0.0.0"),
        media_timeout=settings.timers.media_timeout,
    )
    t = settings.timers
    agent = SipAgent(
        host=settings.sip.host,
        port=settings.sip.port,
        timers=TimerConfig(t1=t.t1, t2=t.t2, t4=t.t4),
        udp="udp" in settings.sip.transports,
        tcp="tcp" in settings.sip.transports,
        max_transactions=settings.sip.max_transactions,
    )
    await agent.start()
    sip_host = settings.sip.host if settings.sip.host not in WILDCARDS else media
    local = {tr: LocalAddress(sip_host, agent.port) for tr in settings.sip.transports}
    ctx = CallContext(
        agent=agent,
        store=store,
        relay=relay,
        ids=agent.ids,
        media_address=media,
        local=local,
        default_region=settings.phone.default_region,
        ring_timeout=settings.timers.ring_timeout,
        block_status=settings.calls.block_status,
        integrations=integrations_from(settings),
        overload=Overload(settings.calls),
        metrics=Metrics(),
    )
    manager = CallManager(ctx)
    agent.user = RegistrarService(  # REGISTER for local extensions; the rest to `manager`
        agent, store, manager, registrar_config(settings.registrar)
    )
    relay.on_timeout = manager.on_media_timeout
    daemon = Daemon(settings, store, agent, relay, manager, metrics=ctx.metrics)
    await _guard(daemon)
    daemon.http = await _start_http(daemon)
    daemon.outbox = OutboxDispatcher(
        store, settings.outbox, settings.webhooks.secret, ga4=integrations_from(settings)
    )
    daemon.outbox.start()
    daemon.checkpoint = MediaCheckpoint(store, ctx.metrics.live_media).start()
    await _register_trunks(daemon, sip_host)
    return daemon


async def _start_http(daemon: Daemon) -> web.AppRunner:
    app = web.Application()
    app.router.add_get("/health", _health(daemon))
    visitors.add_routes(app, daemon.store, daemon.settings)
    if daemon.settings.metrics.enabled and daemon.metrics is not None:
        metrics_http.add_routes(app, daemon.metrics, daemon.store)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, daemon.settings.http.host, daemon.settings.http.port)
    await site.start()
    return runner


def _health(daemon: Daemon) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        body = {
            "status": "draining" if daemon.manager.draining else "ok",
            "active_calls": len(daemon.manager.tasks),
            "media_sessions": len(daemon.relay),
        }
        return web.json_response(body, status=503 if daemon.manager.draining else 200)

    return handler


async def _guard(daemon: Daemon) -> None:
    """Flood guard on the agent (trunk addresses exempt, re-read periodically); metrics."""
    ctx = daemon.manager.ctx
    ctx.metrics.watch_active(lambda: ctx.overload.active)
    if daemon.settings.flood.rate <= 0:
        return
    guard = flood_guard(daemon.settings.flood)
    daemon.agent.flood = guard
    ctx.metrics.watch_flood(guard.stats)
    if not daemon.settings.flood.exempt_trunks:
        return
    guard.set_exempt(trunk_exemption(await daemon.store.trunks.list()))

    async def refresh() -> None:
        while True:
            await asyncio.sleep(EXEMPT_REFRESH)
            try:
                guard.set_exempt(trunk_exemption(await daemon.store.trunks.list()))
            except Exception:
                log.exception("flood.exempt_refresh_failed")

    daemon.guard_task = asyncio.get_running_loop().create_task(refresh())


async def _register_trunks(daemon: Daemon, sip_host: str) -> None:
    names: dict[int, str] = {}  # RegistrationClient id -> trunk name, for the metric
    metrics = daemon.metrics

    def exported(client: RegistrationClient) -> None:
        if metrics is not None and id(client) in names:
            metrics.registration(names[id(client)], client.registered)

    daemon.agent.on_registration = exported
    for trunk in await daemon.store.trunks.list():
        if trunk.register and trunk.enabled:
            client = daemon.agent.register(_registration(trunk, sip_host, daemon.agent.port))
            names[id(client)] = trunk.name
            exported(client)
            log.info("trunk.registering", trunk=trunk.name, host=trunk.host)


def _registration(trunk: Trunk, sip_host: str, port: int) -> RegistrationConfig:
    transport: Transport = "tcp" if trunk.transport == "tcp" else "udp"
    creds = None
    if trunk.username and trunk.password:
        creds = Credentials(trunk.username, trunk.password)
    user = trunk.username or "pbx"
    domain = trunk.realm or trunk.host
    return RegistrationConfig(
        aor=f"sip:{user}@{domain}",
        registrar=Peer(transport, trunk.host, trunk.port),
        local=Peer(transport, sip_host, port),
        credentials=creds,
    )


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain and stop."""
    daemon = await start(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "pbx.ready",
        sip=f"{settings.sip.host}:{daemon.agent.port}",
        transports=list(settings.sip.transports),
        rtp=f"{settings.rtp.port_low}-{settings.rtp.port_high}",
        http=f"{settings.http.host}:{settings.http.port}",
        db=settings.store.display,
    )
    await stop.wait()
    log.info("pbx.draining", calls=len(daemon.manager.tasks))
    await daemon.close()
    log.info("pbx.stopped")


def run(settings: Settings) -> None:
    """Blocking entry point for `pbx serve`."""
    setup_logging(settings.log.format, settings.log.level, stream=sys.stdout)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(settings))
