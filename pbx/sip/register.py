"""REGISTER client for one trunk: register, refresh before expiry, back off on failure (pure).

    client = RegistrationClient(RegistrationConfig(...), ids)
    actions = client.start(now)              # -> [SendRequest(REGISTER, registrar)]
    actions = client.on_response(resp, now)  # final responses to our REGISTER
    actions = client.on_timeout(now)         # transaction timed out / transport error
    actions = client.handle_timer(now)       # when now >= client.next_deadline()
    actions = client.stop(now)               # unregister (Expires: 0)

Returns actions the caller must execute: each `SendRequest` goes through a new
non-INVITE client transaction; its final response comes back to `on_response`.

Decisions (RFC 3261 §10.2 leaves them to the UA):
- Call-ID and From tag are chosen once per client and kept across refreshes;
  CSeq increases by one per REGISTER sent (RFC 3261 §10.2.4). Each REGISTER
  carries a fresh Via branch (with `rport`, RFC 3581).
- Request-URI: `sip:<AOR host[:port]>` unless the config names one (§10.2).
- Granted expiry (§10.2.4): the `expires` param of our Contact in the 200,
  else the Expires header, else what we asked for. 0 means not registered.
- Refresh at max(E/2, E-300) seconds after the 200: long registrations refresh
  five minutes before expiry, short ones at half-time; either way the margin
  exceeds Timer F (64*T1 = 32 s) whenever E >= 64.
- Failure (any other final status, a timeout, refused credentials): retry after
  min(30 * 2**(n-1), 900) s for the n-th consecutive failure, no jitter (a PBX
  has few trunks). A binding still valid keeps `.registered` until it expires.
- 401/407 are answered through `auth.AuthAttempt` (one per REGISTER chain);
  refreshes send credentials for the last challenge up front (preemptive,
  nc incremented), and a stale nonce is simply challenged again.
- 423 Interval Too Brief: ask again at once with the Min-Expires value (§10.2.8),
  at most MAX_INTERVAL_RETRIES times in a row.
- Responses whose Call-ID or CSeq is not our outstanding REGISTER are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pbx.sip.auth import AuthAttempt, Credentials, DigestClient, challenges_in
from pbx.sip.headers import MAX_DELTA, SipParseError, parse_digits, parse_name_addr
from pbx.sip.ids import IdSource
from pbx.sip.message import Headers, Request, Response
from pbx.sip.peer import Peer
from pbx.sip.uri import parse_uri, uri_equal

BACKOFF_BASE = 30.0  # seconds before the first retry after a failure
BACKOFF_CAP = 900.0  # 15 minutes
REFRESH_MARGIN = 300.0  # refresh this long before expiry for long registrations
MAX_INTERVAL_RETRIES = 3  # 423 answers followed in a row
MAX_EXPIRES = 2**31 - 1


class RegState(Enum):
    IDLE = "idle"  # not started
    REGISTERING = "registering"  # a REGISTER is in flight
    REGISTERED = "registered"  # bound; waiting to refresh
    BACKOFF = "backoff"  # last attempt failed; waiting to retry
    UNREGISTERING = "unregistering"  # Expires: 0 in flight
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    """What a trunk with `register=True` needs to register itself."""

    aor: str  # address of record, e.g. "sip:alice@provider.example"
    registrar: Peer  # where REGISTER is sent
    local: Peer  # our transport address (Via sent-by and default Contact)
    credentials: Credentials | None = None
    expires: int = 3600
    contact: str | None = None  # Contact URI; default sip:<aor user>@<local>
    request_uri: str | None = None  # default sip:<aor host[:port]>
    user_agent: str = "pbx"


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send `request` to `dest` through a new client transaction."""

    request: Request
    dest: Peer


class RegistrationClient:
    """RFC 3261 §10.2 UAC for one address of record; see the module docstring."""

    def __init__(self, config: RegistrationConfig, ids: IdSource) -> None:
        self.config = config
        self._ids = ids
        self._call_id = ids.call_id()
        self._from_tag = ids.tag()
        self._cseq = 0
        self._auth = DigestClient(config.credentials, ids) if config.credentials else None
        self._attempt: AuthAttempt | None = None
        self._challenges: list[tuple[str, str]] = []  # last challenge headers, for refreshes
        self._asked = config.expires
        self._interval_retries = 0
        self.state = RegState.IDLE
        self.failures = 0
        self.expires_at: float | None = None  # end of the current binding
        self.last_status: int | None = None
        self.last_reason = ""
        self._deadline: float | None = None

    # --- inspection -----------------------------------------------------------

    @property
    def registered(self) -> bool:
        """True while a binding we know of is valid (as of the last input)."""
        return self.expires_at is not None

    @property
    def contact(self) -> str:
        if self.config.contact:
            return self.config.contact
        user = parse_uri(self.config.aor).user
        local = self.config.local
        host = f"[{local.host}]" if ":" in local.host else local.host
        userpart = f"{user}@" if user else ""
        transport = "" if local.transport == "udp" else f";transport={local.transport}"
        return f"sip:{userpart}{host}:{local.port}{transport}"

    def next_deadline(self) -> float | None:
        """When `handle_timer` wants to run next, or None."""
        candidates = [t for t in (self._deadline, self.expires_at) if t is not None]
        return min(candidates) if candidates else None

    # --- inputs ---------------------------------------------------------------

    def start(self, now: float) -> list[SendRequest]:
        """Begin registering (from IDLE, BACKOFF or STOPPED)."""
        if self.state in (RegState.REGISTERING, RegState.UNREGISTERING):
            return []
        self._asked = self.config.expires
        return [self._send(self._asked, fresh_chain=True)]

    def stop(self, now: float) -> list[SendRequest]:
        """Remove our binding (Expires: 0) and stop refreshing."""
        self._deadline = None
        if not self.registered:
            self.state = RegState.STOPPED
            return []
        return [self._send(0, fresh_chain=True)]

    def handle_timer(self, now: float) -> list[SendRequest]:
        """Run due timers: binding expiry, refresh, retry after backoff."""
        if self.expires_at is not None and now >= self.expires_at:
            self.expires_at = None
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        if self.state in (RegState.REGISTERED, RegState.BACKOFF):
            return [self._send(self._asked, fresh_chain=True)]
        return []

    def on_timeout(self, now: float) -> list[SendRequest]:
        """The outstanding REGISTER got no final response (Timer F or transport error)."""
        if self.state not in (RegState.REGISTERING, RegState.UNREGISTERING):
            return []
        return self._fail(now, 408, "Request Timeout")

    def on_response(self, response: Response, now: float) -> list[SendRequest]:
        """A response to our REGISTER; provisional ones are ignored."""
        if not self._is_ours(response) or response.status < 200:
            return []
        self.last_status, self.last_reason = response.status, response.reason
        if self.state == RegState.UNREGISTERING:
            return self._unregistered(response)
        if response.status in (401, 407):
            return self._challenged(response, now)
        if response.status == 423:
            return self._too_brief(response, now)
        if 200 <= response.status < 300:
            return self._accepted(response, now)
        return self._fail(now, response.status, response.reason)

    # --- outcomes -------------------------------------------------------------

    def _accepted(self, response: Response, now: float) -> list[SendRequest]:
        granted = self._granted(response)
        self._attempt = None
        self._interval_retries = 0
        if granted <= 0:
            return self._fail(now, response.status, "registration not granted")
        self.state = RegState.REGISTERED
        self.failures = 0
        self.expires_at = now + granted
        self._deadline = now + max(granted / 2, granted - REFRESH_MARGIN)
        return []

    def _challenged(self, response: Response, now: float) -> list[SendRequest]:
        if self._auth is None or self._attempt is None:
            return self._fail(now, response.status, "challenged but no credentials")
        challenge_headers = [
            (name, value)
            for name, value in response.headers.items()
            if name.lower() in ("www-authenticate", "proxy-authenticate")
        ]
        answer = self._attempt.answer(
            challenges_in(challenge_headers), "REGISTER", self._request_uri()
        )
        if answer is None:
            reason = "credentials refused" if self._attempt.refused else "unusable challenge"
            return self._fail(now, response.status, reason)
        self._challenges = challenge_headers
        return [self._send(self._asked, fresh_chain=False, auth=answer)]

    def _too_brief(self, response: Response, now: float) -> list[SendRequest]:
        value = response.headers.get("Min-Expires") or ""
        minimum = parse_digits(value.strip(), MAX_DELTA) or 0
        self._interval_retries += 1
        if minimum <= self._asked or self._interval_retries > MAX_INTERVAL_RETRIES:
            return self._fail(now, 423, "bad Min-Expires")
        self._asked = min(minimum, MAX_EXPIRES)
        return [self._send(self._asked, fresh_chain=True)]

    def _unregistered(self, response: Response) -> list[SendRequest]:
        if response.status in (401, 407) and self._attempt is not None and self._auth:
            answer = self._attempt.answer(
                challenges_in(response.headers.items()), "REGISTER", self._request_uri()
            )
            if answer is not None:
                return [self._send(0, fresh_chain=False, auth=answer)]
        self.state = RegState.STOPPED
        self.expires_at = None
        self._deadline = None
        return []

    def _fail(self, now: float, status: int, reason: str) -> list[SendRequest]:
        self.last_status, self.last_reason = status, reason
        self.failures += 1
        self._attempt = None
        self._interval_retries = 0
        if self.state == RegState.UNREGISTERING:
            self.state, self.expires_at, self._deadline = RegState.STOPPED, None, None
            return []
        self.state = RegState.BACKOFF
        self._asked = self.config.expires
        self._deadline = now + backoff_delay(self.failures)
        return []

    # --- building -------------------------------------------------------------

    def _is_ours(self, response: Response) -> bool:
        try:
            cseq = response.cseq
            return (
                response.call_id == self._call_id
                and cseq.seq == self._cseq
                and (cseq.method == "REGISTER")
            )
        except SipParseError:
            return False

    def _granted(self, response: Response) -> int:
        ours = parse_uri(self.contact)
        try:
            contacts = response.contacts
        except SipParseError:
            contacts = []
        for contact in contacts:
            if uri_equal(contact.uri, ours) and contact.expires is not None:
                return contact.expires
        if len(contacts) == 1 and contacts[0].expires is not None:
            return contacts[0].expires  # a NAT-rewritten or reformatted Contact of ours
        seconds = parse_digits((response.headers.get("Expires") or "").strip(), MAX_DELTA)
        return self._asked if seconds is None else seconds

    def _request_uri(self) -> str:
        if self.config.request_uri:
            return self.config.request_uri
        return f"sip:{parse_uri(self.config.aor).host_port}"

    def _send(
        self, expires: int, *, fresh_chain: bool, auth: list[tuple[str, str]] | None = None
    ) -> SendRequest:
        if fresh_chain:
            self._attempt = self._auth.attempt() if self._auth else None
            auth = self._preemptive()
        self.state = RegState.UNREGISTERING if expires == 0 else RegState.REGISTERING
        self._deadline = None
        self._cseq += 1
        return SendRequest(self._build(expires, auth or []), self.config.registrar)

    def _preemptive(self) -> list[tuple[str, str]]:
        """Credentials for the last challenge, sent with a refresh (nc incremented)."""
        if self._auth is None or not self._challenges:
            return []
        challenges = challenges_in(self._challenges)
        attempt = self._auth.attempt()
        return attempt.answer(challenges, "REGISTER", self._request_uri()) or []

    def _build(self, expires: int, auth: list[tuple[str, str]]) -> Request:
        local = self.config.local
        host = f"[{local.host}]" if ":" in local.host else local.host
        aor = parse_name_addr(self.config.aor)
        headers = Headers(
            [
                (
                    "Via",
                    f"SIP/2.0/{local.transport.upper()} {host}:{local.port}"
                    f";branch={self._ids.branch()};rport",
                ),
                ("Max-Forwards", "70"),
                ("From", f"<{aor.uri}>;tag={self._from_tag}"),
                ("To", f"<{aor.uri}>"),
                ("Call-ID", self._call_id),
                ("CSeq", f"{self._cseq} REGISTER"),
                ("Contact", f"<{self.contact}>"),
                ("Expires", str(expires)),
                ("User-Agent", self.config.user_agent),
            ]
        )
        for name, value in auth:
            headers.add(name, value)
        return Request("REGISTER", self._request_uri(), headers)


def backoff_delay(failures: int) -> float:
    """Seconds to wait after the n-th consecutive failure: 30, 60, ... capped at 900."""
    exponent = min(max(failures, 1) - 1, 16)
    return min(BACKOFF_BASE * float(1 << exponent), BACKOFF_CAP)
