"""`pbx serve`: wires settings, store, SIP agent, RTP relay and HTTP; signals; drain (I/O).

Start-up order: store (and the crash sweep that marks unfinished calls
`interrupted`), RTP relay, SIP agent (UDP and TCP), HTTP `/health`, trunk
registrations; then one `pbx.ready` log line naming every bound address.
SIGTERM or SIGINT: new INVITEs get 503, calls in progress may run for
`timers.drain_timeout` seconds, then the rest are ended (BYE / final
error) and their records finalised, then everything closes. SIGHUP
reloads the TLS certificate and key (`reload_tls`), nothing else.

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
import ipaddress
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
import uvloop
from aiohttp import web

from pbx import native
from pbx.attribution.integrations import integrations_from
from pbx.call.model import LocalAddress
from pbx.config import Settings, default_workers
from pbx.errors import ConfigError, InputError
from pbx.http import metrics as metrics_http
from pbx.http import visitors
from pbx.logs import setup_logging
from pbx.records import to_dict
from pbx.rtp.media import MediaEngine
from pbx.rtp.ports import PortPairAllocator
from pbx.rtp.relay import MediaRelay
from pbx.rtp.workers import WorkerEngine
from pbx.runtime import (
    FULL_COLLECTION_UNDER_LOAD,
    QUIET_CHECK_INTERVAL,
    collect_when_quiet,
    tune_collector,
)
from pbx.service import recordings
from pbx.service.checkpoint import MediaCheckpoint
from pbx.service.metrics import Metrics
from pbx.service.nodes import NodeKeeper
from pbx.service.outbox import OutboxDispatcher
from pbx.service.overload import Overload, flood_guard, trunk_exemption
from pbx.service.registrar import RegistrarService, registrar_config
from pbx.service.runner import CallContext, CallManager
from pbx.sip.agent import SipAgent
from pbx.sip.auth import Credentials
from pbx.sip.peer import Peer, Transport
from pbx.sip.register import RegistrationClient, RegistrationConfig
from pbx.sip.transaction import TimerConfig
from pbx.sip.transport import SipTransport, server_context
from pbx.store import Store, Trunk
from pbx.store.connect import open_store

log = structlog.get_logger("pbx.daemon")

STATUS_PATHS = frozenset({"/health", "/metrics"})
STATUS_ALLOW: web.AppKey[list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = web.AppKey(
    "status_allow"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PORT_QUARANTINE = 5.0  # seconds a released RTP pair rests before reuse (late packets)
EXEMPT_REFRESH = 15.0  # seconds between re-reads of trunk addresses for the flood guard
WILDCARDS = ("0.0.0.0", "::", "")


@dataclass
class Daemon:
    """The running parts, for shutdown and for tests that start it in-process."""

    settings: Settings
    store: Store
    agent: SipAgent
    relay: MediaEngine
    manager: CallManager
    http: web.AppRunner | None = None
    admin: web.AppRunner | None = None  # dashboard + REST API, its own listener
    admin_store: Store | None = None  # the admin app's own store (see pbx.http.admin)
    visitor_store: Store | None = None  # the visitor API's own store (see pbx.http.visitors)
    outbox: OutboxDispatcher | None = None
    metrics: Metrics | None = None
    guard_task: asyncio.Task[None] | None = None
    keeper: NodeKeeper | None = None
    purge_task: asyncio.Task[None] | None = None  # issue 13: daily recordings purge
    collector_task: asyncio.Task[None] | None = None  # full gc passes while no call is up
    checkpoint: MediaCheckpoint | None = None  # media_at for the crash sweep

    async def close(self) -> None:
        if self.guard_task is not None:
            self.guard_task.cancel()
        if self.purge_task is not None:  # issue 13
            self.purge_task.cancel()
        if self.collector_task is not None:
            self.collector_task.cancel()
        if self.checkpoint is not None:
            await self.checkpoint.close()
        await self.manager.drain(self.settings.timers.drain_timeout)
        await self.manager.records.close()
        if self.keeper is not None:
            await self.keeper.close()
        if self.outbox is not None:
            await self.outbox.close()  # undelivered items stay queued in the store
        await _stop_admin(self)
        await _stop_http(self)
        await self.agent.close()
        self.relay.close()
        await self.store.close()


async def _media_engine(settings: Settings) -> MediaEngine:
    """The media engine `[rtp]` asks for: the relay in worker processes, or in-process."""
    rtp = settings.rtp
    if rtp.engine == "rtpengine":
        from pbx.rtp.rtpengine_engine import RtpengineEngine

        anchored = await RtpengineEngine.open(
            rtp.rtpengine, _media_address(settings), media_timeout=settings.timers.media_timeout
        )
        log.info("media.rtpengine", instances=list(rtp.rtpengine))
        return anchored
    host = rtp.host or (settings.sip.host if settings.sip.host else "0.0.0.0")
    workers = rtp.workers if rtp.workers >= 0 else default_workers()  # Settings() not loaded
    if workers == 0:
        allocator = PortPairAllocator(rtp.port_low, rtp.port_high, PORT_QUARANTINE)
        return MediaRelay(allocator, host, media_timeout=settings.timers.media_timeout)
    engine = WorkerEngine(
        host, rtp.port_low, rtp.port_high, workers=workers,
        media_timeout=settings.timers.media_timeout, quarantine=PORT_QUARANTINE,
        log_format="json", log_level=settings.log.level,
    )  # fmt: skip
    await engine.start()
    log.info("media.workers", workers=workers, pids=list(engine.pids))
    return engine


def _media_address(settings: Settings) -> str:
    for candidate in (settings.rtp.advertised_address, settings.rtp.host, settings.sip.host):
        if candidate and candidate not in WILDCARDS:
            return candidate
    log.warning("media.address_guessed", address="127.0.0.1", hint="set rtp.advertised_address")
    return "127.0.0.1"


async def start(settings: Settings) -> Daemon:
    """Bring every part up; raises on a port already in use or a bad database.

    A part that fails to start undoes the ones started before it (worker
    processes ended, ports released, the lease given back), so a failed start
    exits at once and leaves nothing behind.
    """
    async with contextlib.AsyncExitStack() as undo:
        daemon = await _start_parts(settings, undo)
        undo.pop_all()
        return daemon
    raise AssertionError("unreachable")  # the exit stack re-raises any failure


async def _start_parts(settings: Settings, undo: contextlib.AsyncExitStack) -> Daemon:
    store = await open_store(settings.store.location)
    undo.push_async_callback(store.close)
    node = settings.node.id or socket.gethostname()
    keeper = NodeKeeper(store, node, settings.node.lease_seconds, lambda lost: None)
    await keeper.start()  # refuses a name a live node holds; the crash sweep
    undo.push_async_callback(keeper.close)
    await recordings.start_up(settings.recording.dir, store)  # issue 13: fix crash-cut files
    media = _media_address(settings)
    relay = await _media_engine(settings)
    undo.callback(relay.close)
    await _check_audio(store, relay, settings)
    t = settings.timers
    tls = None
    if "tls" in settings.sip.transports:  # a bad cert/key: one ConfigError line, before binding
        tls = server_context(settings.sip.tls_cert, settings.sip.tls_key)
    agent = SipAgent(
        host=settings.sip.host,
        port=settings.sip.port,
        timers=TimerConfig(t1=t.t1, t2=t.t2, t4=t.t4),
        udp="udp" in settings.sip.transports,
        tcp="tcp" in settings.sip.transports,
        tls=tls,
        tls_port=settings.sip.tls_port,
        max_transactions=settings.sip.max_transactions,
        tcp_idle_timeout=settings.sip.tcp_idle_timeout,
        tls_identity=(settings.sip.tls_cert, settings.sip.tls_key) if tls is not None else None,
    )
    await agent.start()
    undo.push_async_callback(agent.close)
    sip_host = settings.sip.host if settings.sip.host not in WILDCARDS else media
    local = {
        tr: LocalAddress(sip_host, agent.transport.tls_port if tr == "tls" else agent.port)
        for tr in settings.sip.transports
    }
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
        node=node,
        integrations=integrations_from(settings),
        overload=Overload(settings.calls),
        metrics=Metrics(),
        recording_dir=settings.recording.dir,  # issue 13
    )
    manager = CallManager(ctx)
    ctx.metrics.watch_records(lambda: manager.records.queued)
    keeper.on_lost = lambda lost: setattr(manager, "lease_lost", lost)
    agent.user = RegistrarService(  # REGISTER for local extensions; the rest to `manager`
        agent, store, manager, registrar_config(settings.registrar)
    )
    relay.on_timeout = manager.on_media_timeout
    relay.on_failure = manager.on_media_failure
    daemon = Daemon(settings, store, agent, relay, manager, metrics=ctx.metrics, keeper=keeper)
    await _guard(daemon)
    if daemon.guard_task is not None:
        undo.callback(daemon.guard_task.cancel)
    undo.push_async_callback(_stop_http, daemon)
    daemon.http = await _start_http(daemon)
    undo.push_async_callback(_stop_admin, daemon)
    await _start_admin(daemon)
    daemon.outbox = OutboxDispatcher(
        store, settings.outbox, settings.webhooks.secret, ga4=integrations_from(settings)
    )
    daemon.outbox.start()
    undo.push_async_callback(daemon.outbox.close)
    # issue 13: the daily retention sweep of recordings
    daemon.purge_task = asyncio.get_running_loop().create_task(
        recordings.purge_daily(settings.recording.dir, settings.recording.retention_days)
    )
    undo.callback(daemon.purge_task.cancel)
    daemon.checkpoint = MediaCheckpoint(store, ctx.metrics.live_media).start()
    undo.push_async_callback(daemon.checkpoint.close)
    await _register_trunks(daemon, sip_host)
    tune_collector(FULL_COLLECTION_UNDER_LOAD)
    daemon.collector_task = asyncio.get_running_loop().create_task(_collect_when_quiet(manager))
    undo.callback(daemon.collector_task.cancel)
    # last: start-up's own work (apps, workers, registrations) is not load to shed calls for
    lag_monitor = ctx.overload.monitor()
    if lag_monitor is not None:
        lag_monitor.start()
        undo.callback(lag_monitor.stop)
    return daemon


async def _collect_when_quiet(manager: CallManager) -> None:
    """pbx.runtime: the full garbage-collector pass, run while no call is up."""
    while True:
        await asyncio.sleep(QUIET_CHECK_INTERVAL)
        took = collect_when_quiet(len(manager.tasks))
        if took is not None:
            log.debug("runtime.full_collection", ms=round(took * 1000, 1))


async def _check_audio(store: Store, engine: MediaEngine, settings: Settings) -> None:
    """Refuse to start on an engine that cannot play or record while numbers need it.

    Both built-in engines (in-process and worker processes) carry audio; the
    rtpengine engine does not.
    """
    if engine.plays_audio:
        return
    numbers = [n.number for n in await store.numbers.list()
               if n.record or n.disclosure or n.whisper or n.whisper_text or n.screen
               or n.voicemail]  # fmt: skip
    sources = [s.name for s in await store.sources.list() if s.record or s.disclosure]
    if not numbers and not sources:
        return
    users = ", ".join([*numbers[:3], *sources[:3]])
    raise InputError(
        f"rtp.engine = {settings.rtp.engine} cannot play prompts or record calls, but {users} "
        "use recording, prompts or screening: set rtp.engine = builtin, or turn those off"
    )


async def _stop_http(daemon: Daemon) -> None:
    if daemon.http is not None:
        await daemon.http.cleanup()
        daemon.http = None
    if daemon.visitor_store is not None:
        await daemon.visitor_store.close()
        daemon.visitor_store = None


async def _stop_admin(daemon: Daemon) -> None:
    if daemon.admin is not None:
        await daemon.admin.cleanup()
    if daemon.admin_store is not None:
        await daemon.admin_store.close()


@web.middleware
async def _status_only_for_allowed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """/health and /metrics sit on the public listener: only `[http] status_allow` reads them."""
    if request.path in STATUS_PATHS:
        allow = request.app[STATUS_ALLOW]
        try:
            remote = ipaddress.ip_address(request.remote or "")
        except ValueError:
            remote = None
        if remote is None or not any(remote in net for net in allow):
            raise web.HTTPNotFound()
    return await handler(request)


async def _start_http(daemon: Daemon) -> web.AppRunner:
    app = web.Application(middlewares=[_status_only_for_allowed])
    app[STATUS_ALLOW] = [ipaddress.ip_network(c, strict=False)
                         for c in daemon.settings.http.status_allow]  # fmt: skip
    app.router.add_get("/health", _health(daemon))
    # The visitor API has a store of its own (connection, writer, lock): a flood of
    # page views never queues in front of the call path's record writes.
    daemon.visitor_store = await open_store(daemon.settings.store.location)
    visitors.add_routes(app, daemon.visitor_store, daemon.settings, daemon.metrics)
    if daemon.settings.metrics.enabled and daemon.metrics is not None:
        metrics_http.add_routes(app, daemon.metrics, daemon.store)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, daemon.settings.http.host, daemon.settings.http.port)
    await site.start()
    return runner


async def _start_admin(daemon: Daemon) -> None:
    """The dashboard and REST API on `[admin] host:port`, over a store of its own."""
    from pbx.http.admin.factory import make_admin_app  # jinja2 and argon2 only for this

    settings = daemon.settings
    daemon.admin_store = await open_store(settings.store.location)
    app = make_admin_app(
        daemon.admin_store,
        live_calls=_live_calls(daemon.manager),
        secure_cookies=settings.admin.secure_cookies,
        recordings_dir=settings.recording.dir,
        region=settings.phone.default_region,
    )
    daemon.admin = web.AppRunner(app, access_log=None)
    await daemon.admin.setup()
    await web.TCPSite(daemon.admin, settings.admin.host, settings.admin.port).start()


def _live_calls(manager: CallManager) -> Callable[[], list[dict[str, object]]]:
    """The calls running on this node now, as record dicts (for the live page)."""

    def live() -> list[dict[str, object]]:
        runners = {id(r): r for r in manager.by_record.values()}.values()
        calls = [r.call for r in runners if r.call is not None and not r.call.record.is_final]
        return [to_dict(call.record) for call in calls]

    return live


def _health(daemon: Daemon) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        manager = daemon.manager
        status = "ok"
        if manager.records.degraded:
            status = "degraded"  # the store refuses writes: new calls get 503
        if manager.draining:
            status = "draining"
        body = {
            "status": status,
            "active_calls": len(manager.tasks),
            "media_sessions": len(daemon.relay),
            "records_queued": manager.records.queued,
        }
        if manager.records.degraded:
            body["store"] = manager.records.cause
        return web.json_response(body, status=200 if status == "ok" else 503)

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
            client = daemon.agent.register(
                _registration(trunk, sip_host, daemon.agent.port, daemon.agent.transport.tls_port)
            )
            names[id(client)] = trunk.name
            exported(client)
            log.info("trunk.registering", trunk=trunk.name, host=trunk.host)


def _registration(trunk: Trunk, sip_host: str, port: int, tls_port: int) -> RegistrationConfig:
    transport: Transport = trunk.transport
    creds = None
    if trunk.username and trunk.password:
        creds = Credentials(trunk.username, trunk.password)
    user = trunk.username or "pbx"
    domain = trunk.realm or trunk.host
    return RegistrationConfig(
        aor=f"sip:{user}@{domain}",
        registrar=Peer(transport, trunk.host, trunk.port, server_name=trunk.host, ca=trunk.tls_ca),
        local=Peer(transport, sip_host, tls_port if transport == "tls" else port),
        credentials=creds,
    )


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain and stop."""
    loop = asyncio.get_running_loop()
    # A reload asked for while starting would kill the process (SIGHUP's default action).
    loop.add_signal_handler(signal.SIGHUP, _reload_while_starting)
    daemon = await start(settings)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_tls, settings, daemon.agent.transport)
    log.info(
        "pbx.ready",
        sip=f"{settings.sip.host}:{daemon.agent.port}",
        tls_port=daemon.agent.transport.tls_port if "tls" in settings.sip.transports else None,
        transports=list(settings.sip.transports),
        rtp=f"{settings.rtp.port_low}-{settings.rtp.port_high}",
        http=f"{settings.http.host}:{settings.http.port}",
        admin=f"{settings.admin.host}:{settings.admin.port}",
        db=settings.store.display,
        node=daemon.manager.ctx.node,
        native=native.reason,
    )
    await stop.wait()
    log.info("pbx.draining", calls=len(daemon.manager.tasks))
    await daemon.close()
    log.info("pbx.stopped")


def _reload_while_starting() -> None:
    log.info("pbx.reload", note="still starting up: ignored, send SIGHUP again after pbx.ready")


def reload_tls(settings: Settings, transport: SipTransport) -> None:
    """SIGHUP: read `sip.tls_cert`/`sip.tls_key` again (a renewed certificate); one log line.

    New TLS connections get the new certificate; open ones keep theirs. Files
    that do not load leave the running certificate in place (an error line
    says why), so a half-written renewal never takes TLS down. SIGHUP
    reloads nothing else: other settings need a restart.
    """
    if "tls" not in settings.sip.transports:
        log.info("pbx.reload", tls=False, note="nothing to reload: sip.transports has no tls")
        return
    try:
        ctx = server_context(settings.sip.tls_cert, settings.sip.tls_key)
    except ConfigError as exc:
        log.error("pbx.tls_reload_failed", error=str(exc), kept="the running certificate")
        return
    transport.reload_tls(ctx)
    log.info("pbx.tls_reloaded", cert=settings.sip.tls_cert)


def run(settings: Settings) -> None:
    """Blocking entry point for `pbx serve`."""
    setup_logging(settings.log.format, settings.log.level, stream=sys.stdout)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(settings))
