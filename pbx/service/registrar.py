"""Local extensions at run time: REGISTER handling and ext: call targets (async: store I/O).

`RegistrarService` wraps the daemon's transaction user (`runner.CallManager`):
out-of-dialog REGISTERs go to the pure `pbx.sip.registrar.Registrar`, every
other event goes to the wrapped user unchanged. Per REGISTER it reads the
extension and its bindings from the store, asks the registrar, writes the
binding changes, and only then sends the response, so a phone told 200 is
registered even if the daemon stops right after (bindings live in the store
and survive a restart). Calls to a registered extension are routed by
`pbx.call.targets`.

Decisions:
- A REGISTER from an address a trunk's allow-list holds gets 403 and never
  creates a binding: trunk peers send calls, not registrations.
- Throttle: an address with `FailureThrottle.limit` failed authentications
  (wrong password, unknown extension, garbage credentials) within the
  window gets 403 "Too many failed attempts" for `block` seconds without
  any store read; a success clears its count.
- REGISTERs are handled one at a time (one lock): they are rare next to
  calls, and it keeps max_contacts exact when a phone sends two at once.
  At most MAX_PENDING wait; more get 503 with Retry-After.
- Expired bindings of the extension are deleted when it registers again,
  so a phone that changes address on every reboot leaves no rows behind.
- The nonce secret is drawn at start: nonces of a previous run are stale,
  and phones answer the fresh challenge (stale=true) without a failure.
- A binding's target: the Request-URI is the registered contact; the
  INVITE goes to where the REGISTER came from (NAT), or to the first Path
  hop when the REGISTER carried Path. Pbx does not add Route headers for
  the rest of the Path (`Target` has no route set yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from pbx.config import RegistrarSettings
from pbx.errors import NotFoundError
from pbx.records import iso_utc
from pbx.rules.admission import TrunkAcl, trunk_for_source
from pbx.sip.agent import SipAgent, TransactionUser
from pbx.sip.message import Request, Response
from pbx.sip.peer import Peer
from pbx.sip.registrar import (
    ALGORITHMS,
    DIGEST_CHOICES,
    Account,
    BindingState,
    FailureThrottle,
    Outcome,
    Registrar,
    RegistrarConfig,
    SetBinding,
)
from pbx.sip.responses import make_response
from pbx.sip.status import SipParseError
from pbx.sip.transaction import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionError,
    TransactionTimedOut,
)
from pbx.store import Binding, Extension, Store

log = structlog.get_logger("pbx.registrar")

MAX_PENDING = 64  # REGISTERs waiting for the lock; more get 503 (bounded memory)


def registrar_config(settings: RegistrarSettings) -> RegistrarConfig:
    return RegistrarConfig(
        realm=settings.realm,
        default_expires=settings.default_expires,
        min_expires=settings.min_expires,
        max_expires=settings.max_expires,
    )


def account_of(ext: Extension) -> Account:
    """The registrar's view of an extension; `digest` picks the challenges (DIGEST_CHOICES)."""
    algorithms = DIGEST_CHOICES.get(ext.digest, ALGORITHMS)
    return Account(ext.name, ext.ha1_md5, ext.ha1_sha256, ext.realm, ext.max_contacts, algorithms)


def epoch_of(iso: str) -> float:
    """The records' `YYYY-MM-DDTHH:MM:SS.ffffffZ` back to epoch seconds."""
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class RegistrarService:
    """The daemon's transaction user for REGISTER; everything else goes to `inner`."""

    agent: SipAgent
    store: Store
    inner: TransactionUser
    config: RegistrarConfig = field(default_factory=RegistrarConfig)
    wall_clock: Callable[[], float] = time.time
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    throttle: FailureThrottle = field(default_factory=FailureThrottle)
    registrar: Registrar = field(init=False)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.registrar = Registrar(self.config, self.secret)

    # -- TransactionUser -----------------------------------------------------------

    def on_request(self, event: RequestReceived, now: float) -> bool:
        request = event.request
        if request.method != "REGISTER" or _to_tag(request) is not None:
            return self.inner.on_request(event, now)
        source = event.source
        if self.throttle.blocked(source.host, self.wall_clock()):
            self._respond(event, make_response(request, 403, "Too many failed attempts"))
            return True
        if len(self.tasks) >= MAX_PENDING:
            busy = make_response(request, 503, headers=[("Retry-After", "5")])
            self._respond(event, busy)
            return True
        task = asyncio.get_running_loop().create_task(self._serve(event))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    def on_cancel(self, event: CancelReceived, now: float) -> bool:
        return self.inner.on_cancel(event, now)

    def on_ack(self, event: AckReceived, now: float) -> None:
        self.inner.on_ack(event, now)

    def on_response(self, event: ResponseReceived, now: float) -> None:
        self.inner.on_response(event, now)

    def on_stray_response(self, event: StrayResponse, now: float) -> None:
        self.inner.on_stray_response(event, now)

    def on_timeout(self, event: TransactionTimedOut, now: float) -> None:
        self.inner.on_timeout(event, now)

    # -- one REGISTER --------------------------------------------------------------

    async def _serve(self, event: RequestReceived) -> None:
        try:
            response = await self.process(event.request, event.source)
        except Exception:
            log.exception("register.failed", peer=str(event.source))
            response = make_response(event.request, 500)
        self._respond(event, response)

    def _respond(self, event: RequestReceived, response: Response) -> None:
        try:
            self.agent.respond(event.key, response)
        except TransactionError:  # the transaction ended meanwhile (e.g. daemon closing)
            log.info("register.unanswered", peer=str(event.source))

    async def process(self, request: Request, source: Peer) -> Response:
        """Answer one REGISTER and write its binding changes (the whole use case)."""
        async with self.lock:
            wall = self.wall_clock()
            if await self._from_trunk(source):
                log.info("register.refused", peer=str(source), reason="trunk address")
                return make_response(request, 403, "Forbidden (trunk address)")
            ext = await self._extension(request)
            bindings = await self._current(ext, wall) if ext is not None else []
            account = account_of(ext) if ext is not None else None
            outcome = self.registrar.handle(request, source, account, bindings, wall)
            if ext is not None:
                await self._apply(ext.name, outcome)
        if outcome.response.status != 401:
            self.throttle.record(source.host, wall, failed=outcome.failed)
        _log_outcome(outcome, source)
        return outcome.response

    async def _from_trunk(self, source: Peer) -> bool:
        trunks = await self.store.trunks.list()
        acls = [TrunkAcl(t.name, t.allow, t.host) for t in trunks if t.enabled]
        return trunk_for_source(acls, source.host) is not None

    async def _extension(self, request: Request) -> Extension | None:
        try:
            user = request.to.uri.user
        except SipParseError:
            return None
        return await self.store.extensions.get(user) if user else None

    async def _current(self, ext: Extension, wall: float) -> list[BindingState]:
        """Unexpired bindings; expired ones are deleted on the way."""
        current: list[BindingState] = []
        for b in await self.store.extensions.bindings(ext.name):
            expires = epoch_of(b.expires_at)
            if expires <= wall:
                await self._remove(ext.name, b.contact)
                continue
            current.append(BindingState(b.contact, expires, b.call_id, b.cseq, b.received))
        return current

    async def _apply(self, name: str, outcome: Outcome) -> None:
        for change in outcome.changes:
            if isinstance(change, SetBinding):
                await self.store.extensions.set_binding(
                    Binding(
                        extension=name,
                        contact=change.contact,
                        expires_at=iso_utc(change.expires_at),
                        call_id=change.call_id,
                        cseq=change.cseq,
                        received=change.received,
                    )
                )
            else:
                await self._remove(name, change.contact)

    async def _remove(self, name: str, contact: str) -> None:
        with contextlib.suppress(NotFoundError):  # already gone (the CLI removed it)
            await self.store.extensions.remove_binding(name, contact)


def _to_tag(request: Request) -> str | None:
    try:
        return request.to.tag
    except SipParseError:
        return None


def _log_outcome(outcome: Outcome, source: Peer) -> None:
    status = outcome.response.status
    if status == 200:
        log.info("register.ok", extension=outcome.extension, peer=str(source))
    elif status != 401:
        log.info(
            "register.refused",
            extension=outcome.extension,
            peer=str(source),
            status=status,
            reason=outcome.reason,
        )
