"""The registrar of local extensions: REGISTER + time in, a response and binding changes out (pure).

RFC 3261 §10.3 with digest authentication (RFC 7616 / RFC 8760, MD5 and
SHA-256, qop=auth). The async shell (`pbx.service.registrar`) reads the
extension and its bindings from the store, calls `Registrar.handle`, sends
the response and writes the changes it returns (STYLE.md §3.4: actions are
returned, never performed).

    registrar = Registrar(RegistrarConfig(realm="pbx"), secret=os.urandom(32))
    outcome = registrar.handle(request, source, account, bindings, now)
    send(outcome.response); apply(outcome.changes); if outcome.failed: throttle

Time: `now` is wall-clock epoch seconds (not monotonic), because bindings
are stored with their expiry and survive a daemon restart.

Decisions (the RFCs leave these open):
- Nonces are stateless: `<hex epoch s>.<hex serial>.<HMAC-SHA256(secret,
  time.serial:source host)>`; the serial makes two challenges in one second
  differ (a client without qop could not answer twice with one nonce). A
  nonce older than `nonce_ttl`, from another address, or signed with
  another secret (a restart draws a new one) is stale: when the
  digest itself is right, the answer is 401 with `stale=true` and a fresh
  nonce (RFC 7616 §3.3), so phones re-authenticate without a failure count.
- Replay (RFC 7616 §3.4): with qop=auth, `nc` must grow for each nonce;
  without qop (the RFC 2069 form some phones still use, pyVoIP among them)
  a nonce is good for one request only. A replay gets 401 stale=true and
  changes nothing. The nc table is bounded (`max_nonces`); a nonce evicted
  from it, or issued before an evicted one, counts as stale.
- Challenges: one SHA-256 then one MD5 WWW-Authenticate with the same nonce
  (RFC 8760 §2.4, RFC 7616 §3.7: preferred first), or only the algorithms
  the account allows (`Account.algorithms`, from `pbx extensions --digest`):
  many phones (baresip 1.0 among them) take the first challenge, know no
  SHA-256 and give up, so an extension may be MD5 only. Credentials with an
  algorithm the account does not allow get a fresh 401. An unknown name is
  challenged with both (the default). Only `auth` is offered as qop; "-sess"
  algorithms are not accepted (the store keeps HA1, not the password).
- Unknown extension: a request without credentials is challenged like any
  other (no probing for names); credentials for it get 403.
- Wrong digest, or a username that is not the To user: 403 (not a new 401,
  so a phone with a wrong password does not loop) and `failed=True` for
  the shell's per-address throttle (`FailureThrottle`). The digest `uri`
  must name the Request-URI's host (RFC 2617 §3.2.2.5), else 400.
- Too many contacts: a REGISTER adding contacts beyond `max_contacts` first
  drops the extension's other bindings that expire soonest (a rebooted
  phone behind NAT comes back on a new port and must not be locked out for
  an hour by its own stale binding); a REGISTER that alone carries more than
  `max_contacts` contacts is refused with 403.
- NAT (RFC 3581, RFC 5626 flow idea): a binding keeps the transport address
  the REGISTER came from (`received`), and calls to that contact go there,
  not to the Contact's host. Third-party registration of a contact on
  another host is therefore not supported. Path (RFC 3327) values are kept
  with it; calls go to the first Path hop instead. `encode_received` /
  `decode_received` define the stored text: `udp:192.0.2.7:5062` then, with
  Path, `|` and the Path values joined by `, ` (`|` cannot occur in a SIP URI).
- Contacts are matched by RFC 3261 §19.1.4 URI equality; the stored text of
  an existing binding is kept as its key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from pbx.sip.auth import AuthError, DigestCredentials, compute_response, parse_authorization
from pbx.sip.headers import (
    MAX_DELTA,
    NameAddr,
    is_star,
    parse_digits,
    parse_name_addr,
    quote_string,
)
from pbx.sip.message import Request, Response
from pbx.sip.peer import Peer
from pbx.sip.responses import make_response
from pbx.sip.status import SipParseError
from pbx.sip.uri import parse_host_port, parse_uri, uri_equal

NONCE_TTL = 300.0  # seconds a nonce is fresh; ample for a 401 round trip and a re-send
CLOCK_SKEW = 5.0  # a nonce "from the future" by more than this is not ours
MAX_NONCES = 4096  # nc counters kept (one per challenge answered recently)
MAX_CONTACTS_PER_REQUEST = 16  # Contact values read from one REGISTER (bounded work)
MAX_PATH = 8  # Path values kept per binding (RFC 3327 has no limit; edge proxies use 1-2)
_ONE_SHOT = 1 << 32  # nc recorded for a nonce used without qop (single use)
ALGORITHMS = ("SHA-256", "MD5")  # challenge order: preferred first (RFC 8760 §2.4)
# `pbx extensions --digest` choice -> the algorithms challenged, in order.
DIGEST_CHOICES: dict[str, tuple[str, ...]] = {
    "both": ALGORITHMS,
    "sha-256": ("SHA-256",),
    "md5": ("MD5",),
}


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    """Expiry bounds (RFC 3261 §10.2.1.1, §10.3 step 7) and nonce limits."""

    realm: str = "pbx"
    default_expires: int = 3600
    min_expires: int = 60
    max_expires: int = 7200
    nonce_ttl: float = NONCE_TTL
    max_nonces: int = MAX_NONCES


@dataclass(frozen=True, slots=True)
class Account:
    """An extension as the registrar sees it: name, HA1 hashes, realm, limit."""

    name: str
    ha1_md5: str = field(repr=False)
    ha1_sha256: str = field(repr=False)
    realm: str
    max_contacts: int = 1
    algorithms: tuple[str, ...] = ALGORITHMS  # challenged, in this order

    def ha1(self, algorithm: str) -> str | None:
        """The HA1 for `algorithm`, or None if the account does not allow it."""
        if algorithm not in self.algorithms:
            return None
        return {"MD5": self.ha1_md5, "SHA-256": self.ha1_sha256}.get(algorithm)


@dataclass(frozen=True, slots=True)
class BindingState:
    """A current binding: contact URI text, expiry (epoch s), Call-ID/CSeq, received."""

    contact: str
    expires_at: float
    call_id: str | None = None
    cseq: int | None = None
    received: str | None = None


@dataclass(frozen=True, slots=True)
class SetBinding:
    """Create or refresh the binding of `contact` (the shell writes it)."""

    contact: str
    expires_at: float
    call_id: str
    cseq: int
    received: str


@dataclass(frozen=True, slots=True)
class RemoveBinding:
    contact: str


Change = SetBinding | RemoveBinding


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to send, the binding changes to write, and whether auth failed."""

    response: Response
    changes: tuple[Change, ...] = ()
    failed: bool = False
    extension: str | None = None
    reason: str = ""


class _Refused(Exception):
    """A REGISTER the registrar answers with an error (`status`, `reason`, headers)."""

    def __init__(
        self, status: int, reason: str, headers: Sequence[tuple[str, str]] = (), *, failed: bool
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = tuple(headers)
        self.failed = failed


# --- received / Path text ---------------------------------------------------------


def encode_received(source: Peer, path: Sequence[str] = ()) -> str:
    """The stored `received` text (see the module docstring)."""
    text = str(source)
    return f"{text}|{', '.join(path)}" if path else text


def decode_received(text: str) -> tuple[Peer, tuple[str, ...]]:
    """(where the REGISTER came from, Path values); raises ValueError on bad text."""
    flow, _, path_text = text.partition("|")
    transport, _, rest = flow.partition(":")
    if transport not in ("udp", "tcp", "tls"):
        raise ValueError(f"bad transport in {text!r}")
    try:
        host, port = parse_host_port(rest)
    except SipParseError as exc:
        raise ValueError(str(exc)) from exc
    if port is None:
        raise ValueError(f"no port in {text!r}")
    path = tuple(p.strip() for p in path_text.split(", ") if p.strip()) if path_text else ()
    return Peer(transport, host.strip("[]"), port), path  # type: ignore[arg-type]


# --- replay and throttle tables ------------------------------------------------------


@dataclass
class NonceCounters:
    """Highest nc seen per nonce, bounded; remembers the newest evicted stamp."""

    limit: int = MAX_NONCES
    seen: OrderedDict[str, int] = field(default_factory=OrderedDict)
    evicted_upto: int = -1

    def use(self, nonce: str, stamp: int, nc: int | None) -> bool:
        """Record one use; False for a replay (nc not above the last, or reused one-shot)."""
        last = self.seen.get(nonce)
        if last is None and stamp <= self.evicted_upto:
            return False
        count = _ONE_SHOT if nc is None else nc
        if last is not None and (nc is None or last >= count):
            return False
        self.seen[nonce] = count
        self.seen.move_to_end(nonce)
        while len(self.seen) > self.limit:
            old, _ = self.seen.popitem(last=False)
            self.evicted_upto = max(self.evicted_upto, _stamp_of(old) or 0)
        return True


@dataclass
class FailureThrottle:
    """Repeated auth failures per source host: `limit` in `window` s blocks it `block` s."""

    limit: int = 5
    window: float = 60.0
    block: float = 60.0
    max_hosts: int = 4096
    failures: OrderedDict[str, list[float]] = field(default_factory=OrderedDict)
    blocked_until: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def blocked(self, host: str, now: float) -> bool:
        until = self.blocked_until.get(host)
        if until is None:
            return False
        if now < until:
            return True
        del self.blocked_until[host]
        return False

    def record(self, host: str, now: float, *, failed: bool) -> None:
        """Count a failure (or forget the host's failures after a success)."""
        if not failed:
            self.failures.pop(host, None)
            return
        recent = [t for t in self.failures.pop(host, []) if now - t < self.window] + [now]
        if len(recent) >= self.limit:
            self.blocked_until[host] = now + self.block
            self.blocked_until.move_to_end(host)
            recent = []
        self.failures[host] = recent
        for table in (self.failures, self.blocked_until):
            while len(table) > self.max_hosts:
                table.popitem(last=False)


# --- nonces ---------------------------------------------------------------------


def _stamp_of(nonce: str) -> int | None:
    head, dot, _ = nonce.partition(".")
    if not dot or not head or len(head) > 12:
        return None
    try:
        return int(head, 16)
    except ValueError:
        return None


class Registrar:
    """One per daemon: holds the nonce secret and the replay table (see module doc)."""

    def __init__(self, config: RegistrarConfig, secret: bytes) -> None:
        self.config = config
        self._secret = secret
        self.counters = NonceCounters(config.max_nonces)
        self._serial = 0

    def nonce(self, source: Peer, now: float) -> str:
        """`<hex time>.<hex serial>.<mac>`: unique per challenge, even within a second."""
        self._serial += 1
        head = f"{int(now):x}.{self._serial:x}"
        return f"{head}.{self._mac(head, source.host)}"

    def _mac(self, head: str, host: str) -> str:
        data = f"{head}:{host}".encode()
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()[:32]

    def nonce_fresh(self, nonce: str, source: Peer, now: float) -> bool:
        """Ours, for this address, and not older than `nonce_ttl` (nor from the future)."""
        stamp = _stamp_of(nonce)
        if stamp is None:
            return False
        head, _, mac = nonce.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(head, source.host)):
            return False
        return -CLOCK_SKEW <= now - stamp <= self.config.nonce_ttl

    def challenges(
        self,
        source: Peer,
        now: float,
        realm: str,
        *,
        stale: bool = False,
        algorithms: tuple[str, ...] = ALGORITHMS,
    ) -> list[tuple[str, str]]:
        """WWW-Authenticate headers, one per algorithm in order, one nonce (RFC 8760 §2.4)."""
        nonce = self.nonce(source, now)
        extra = ", stale=true" if stale else ""
        return [
            (
                "WWW-Authenticate",
                f"Digest realm={quote_string(realm)}, nonce={quote_string(nonce)}, "
                f'algorithm={alg}, qop="auth"{extra}',
            )
            for alg in algorithms
        ]

    # --- the request --------------------------------------------------------------

    def handle(
        self,
        request: Request,
        source: Peer,
        account: Account | None,
        bindings: Sequence[BindingState],
        now: float,
    ) -> Outcome:
        """Answer one REGISTER; returns the response and the changes the caller must write."""
        to_tag = self._to_tag(request)
        try:
            user = request.to.uri.user
            self._authenticate(request, source, account, user, now)
            assert account is not None  # _authenticate refuses otherwise
            changes, current = _bindings_after(request, source, account, bindings, now, self.config)
        except _Refused as err:
            response = make_response(
                request, err.status, err.reason, to_tag=to_tag, headers=err.headers
            )
            name = account.name if account is not None else None
            return Outcome(response, (), err.failed, name, err.reason)
        except SipParseError as exc:
            response = make_response(request, 400, "Bad Request", to_tag=to_tag)
            return Outcome(response, (), False, None, str(exc))
        headers = _ok_headers(request, current, now)
        response = make_response(request, 200, to_tag=to_tag, headers=headers)
        return Outcome(response, tuple(changes), False, account.name, "registered")

    def _to_tag(self, request: Request) -> str:
        """A To tag derived from Call-ID and CSeq: the same for a retransmission."""
        key = f"{request.headers.get('Call-ID')}:{request.headers.get('CSeq')}".encode()
        return hmac.new(self._secret, key, hashlib.sha256).hexdigest()[:16]

    def _authenticate(
        self, request: Request, source: Peer, account: Account | None, user: str | None, now: float
    ) -> None:
        """Return when the request proves the account's password; raise `_Refused` otherwise."""
        realm = account.realm if account is not None else self.config.realm
        algorithms = account.algorithms if account is not None else ALGORITHMS
        creds = self._credentials(request, source, now, realm, algorithms)
        if account is None or user != account.name or creds.username != account.name:
            raise _Refused(403, "Forbidden", failed=True)
        key = account.ha1(creds.algorithm)
        if not key or (creds.qop is not None and creds.qop != "auth"):
            challenges = self.challenges(source, now, realm, algorithms=algorithms)
            raise _Refused(401, "Unauthorized", challenges, failed=False)
        if not _uri_matches(creds.uri, request):
            raise _Refused(400, "Bad Request (digest uri)", failed=True)
        expected = compute_response(
            creds.algorithm, key, creds.nonce, request.method, creds.uri,
            creds.qop, creds.nc, creds.cnonce,
        )  # fmt: skip
        if not hmac.compare_digest(expected, creds.response):
            raise _Refused(403, "Forbidden", failed=True)
        self._check_nonce(creds, source, now, algorithms)

    def _credentials(
        self, request: Request, source: Peer, now: float, realm: str, algorithms: tuple[str, ...]
    ) -> DigestCredentials:
        """The Authorization for `realm`; none -> 401 with challenges (RFC 3261 §22.4)."""
        for value in request.headers.get_all("Authorization", split=False)[:4]:
            try:
                creds = parse_authorization(value)
            except AuthError:
                raise _Refused(400, "Bad Request (Authorization)", failed=True) from None
            if creds.realm == realm:
                return creds
        challenges = self.challenges(source, now, realm, algorithms=algorithms)
        raise _Refused(401, "Unauthorized", challenges, failed=False)

    def _check_nonce(
        self, creds: DigestCredentials, source: Peer, now: float, algorithms: tuple[str, ...]
    ) -> None:
        """The digest is right: a stale, foreign or replayed nonce asks for a new one."""
        challenges = self.challenges(source, now, creds.realm, stale=True, algorithms=algorithms)
        stale = _Refused(401, "Unauthorized", challenges, failed=False)
        if not self.nonce_fresh(creds.nonce, source, now):
            raise stale
        nc = _nc_value(creds)
        if creds.qop is not None and nc is None:
            raise _Refused(400, "Bad Request (nc)", failed=True)
        stamp = _stamp_of(creds.nonce)
        if stamp is None or not self.counters.use(creds.nonce, stamp, nc):
            raise stale


def _nc_value(creds: DigestCredentials) -> int | None:
    if creds.qop is None or creds.nc is None:
        return None
    if len(creds.nc) != 8:
        return None
    try:
        return int(creds.nc, 16)
    except ValueError:
        return None


def _uri_matches(digest_uri: str, request: Request) -> bool:
    """The digest `uri` names the Request-URI's host (pyVoIP adds `;transport=UDP`)."""
    try:
        return parse_uri(digest_uri).host.lower() == request.request_uri.host.lower()
    except SipParseError:
        return False


# --- bindings (RFC 3261 §10.3 steps 5-8) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Wanted:
    contact: NameAddr
    expires: int


def _expires_header(request: Request) -> int | None:
    value = request.headers.get("Expires")
    if value is None:
        return None
    seconds = parse_digits(value.strip(), MAX_DELTA)  # RFC 3261 §20.19: 0 .. 2**32-1
    if seconds is None:
        raise _Refused(400, "Bad Request (Expires)", failed=False)
    return seconds


def _bindings_after(
    request: Request,
    source: Peer,
    account: Account,
    bindings: Sequence[BindingState],
    now: float,
    config: RegistrarConfig,
) -> tuple[list[Change], list[BindingState]]:
    """(changes to write, bindings after them) for an authenticated REGISTER."""
    current = [b for b in bindings if b.expires_at > now]
    header = _expires_header(request)
    values = request.headers.get_all("Contact")
    if any(is_star(v) for v in values):
        if len(values) != 1 or header != 0:
            raise _Refused(400, "Bad Request (Contact: * needs Expires: 0)", failed=False)
        return _remove_all(request, current)
    if len(values) > MAX_CONTACTS_PER_REQUEST:
        raise _Refused(403, "Forbidden (too many contacts)", failed=False)
    wanted = [_wanted(parse_name_addr(v), header, config) for v in values]
    path = tuple(request.headers.get_all("Path"))[:MAX_PATH]
    received = encode_received(source, path)
    changes, after = _merge(request, wanted, current, now, received)
    return _limit(changes, after, wanted, account.max_contacts)


def _wanted(contact: NameAddr, header: int | None, config: RegistrarConfig) -> _Wanted:
    if contact.uri.scheme not in ("sip", "sips"):
        raise _Refused(400, "Bad Request (Contact must be a SIP URI)", failed=False)
    expires = contact.expires if contact.expires is not None else header
    if expires is None:
        expires = config.default_expires
    if 0 < expires < config.min_expires:
        headers = [("Min-Expires", str(config.min_expires))]
        raise _Refused(423, "Interval Too Brief", headers, failed=False)  # §10.3 step 7
    return _Wanted(contact, min(expires, config.max_expires))


def _out_of_order(request: Request, binding: BindingState) -> bool:
    """§10.3 step 7: same Call-ID and a CSeq not above the stored one."""
    return (
        binding.call_id == request.call_id
        and binding.cseq is not None
        and request.cseq.seq <= binding.cseq
    )


def _remove_all(
    request: Request, current: list[BindingState]
) -> tuple[list[Change], list[BindingState]]:
    """`Contact: *`: remove every binding but those the request is older than (§10.3 step 6)."""
    keep = [b for b in current if _out_of_order(request, b)]
    changes: list[Change] = [RemoveBinding(b.contact) for b in current if b not in keep]
    return changes, keep


def _merge(
    request: Request,
    wanted: list[_Wanted],
    current: list[BindingState],
    now: float,
    received: str,
) -> tuple[list[Change], list[BindingState]]:
    changes: list[Change] = []
    after = list(current)
    seq = request.cseq.seq
    for item in wanted:
        old = next((b for b in after if _same_contact(b.contact, item.contact)), None)
        if old is not None and _out_of_order(request, old):
            raise _Refused(500, "Server Internal Error (out of order REGISTER)", failed=False)
        if old is not None:
            after.remove(old)
        if item.expires == 0:
            if old is not None:
                changes.append(RemoveBinding(old.contact))
            continue
        key = old.contact if old is not None else str(item.contact.uri)
        new = SetBinding(key, now + item.expires, request.call_id, seq, received)
        changes.append(new)
        after.append(BindingState(key, new.expires_at, new.call_id, new.cseq, received))
    return changes, after


def _same_contact(stored: str, contact: NameAddr) -> bool:
    try:
        return uri_equal(stored, contact.uri)
    except SipParseError:
        return stored == str(contact.uri)


def _limit(
    changes: list[Change], after: list[BindingState], wanted: list[_Wanted], limit: int
) -> tuple[list[Change], list[BindingState]]:
    """Keep at most `limit` bindings: drop the others' soonest-expiring first."""
    added = {c.contact for c in changes if isinstance(c, SetBinding)}
    if len(added) > limit:
        raise _Refused(403, f"Forbidden (at most {limit} contacts)", failed=False)
    others = sorted((b for b in after if b.contact not in added), key=lambda b: b.expires_at)
    excess = len(after) - limit
    dropped = others[: max(0, excess)]
    for binding in dropped:
        changes.append(RemoveBinding(binding.contact))
    return changes, [b for b in after if b not in dropped]


def _ok_headers(request: Request, current: list[BindingState], now: float) -> list[tuple[str, str]]:
    """§10.3 step 8: every current binding with its remaining expiry; Path echoed (RFC 3327)."""
    headers = [
        ("Contact", f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}") for b in current
    ]
    headers += [("Path", p) for p in request.headers.get_all("Path")[:MAX_PATH]]
    return headers
