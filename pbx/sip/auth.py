"""HTTP digest authentication for SIP, client and server side (pure).

Client side (a trunk answering a 401/407 from its provider, RFC 3261 §22):

    client = DigestClient(Credentials("alice", "secret"), ids)     # one per account
    attempt = client.attempt()                                     # one per request chain
    headers = attempt.answer(challenges_in(response_headers), "INVITE", "sip:+14155550101@trunk")
    if headers is None: give up (credentials refused), else re-send with these headers.

Server side (the registrar of a later issue): `parse_authorization`,
`verify_authorization`, and the building blocks `ha1`, `compute_response`.

Supported (RFC 2617, RFC 7616, RFC 8760):
- algorithms MD5, MD5-sess, SHA-256, SHA-256-sess, SHA-512-256, SHA-512-256-sess
  (an absent `algorithm` means MD5, RFC 2617 §3.2.1);
- qop=auth (preferred) and qop=auth-int (H(body) in A2, RFC 2617 §3.2.2.3);
  no qop at all is the RFC 2069 form (no nc/cnonce);
- opaque echoed verbatim; userhash=true (RFC 7616 §3.4.4) hashes the username.

Decisions where the RFCs leave a choice:
- Several challenges for one realm (RFC 7616 §3.7): the strongest algorithm we
  support wins (SHA-512-256 > SHA-256 > MD5, "-sess" variants rank with their base).
  Challenges with an unknown algorithm or a non-Digest scheme are ignored.
- One `Authorization`/`Proxy-Authorization` per realm challenged (RFC 3261
  §22.3: a forking proxy chain can challenge with several realms at once).
- Rejection: within one request chain (`AuthAttempt`), a second challenge for
  a realm we already answered means the credentials were refused, unless it
  says stale=true (RFC 7616 §3.3: the nonce expired, retry with the new one
  without counting a failure). An attempt answers at most MAX_ROUNDS
  challenges in total so a peer that always says stale=true cannot loop us.
- nc is counted per (realm, nonce) in the long-lived `DigestClient`, 8 hex
  digits (RFC 7616 §3.4); the table keeps the MAX_NONCES most recent nonces.
- Non-ASCII usernames (`username*`, RFC 7616 §3.4.4) are not supported: the
  username is sent as a quoted-string with `"` and `\\` escaped.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pbx.errors import PbxError
from pbx.sip.headers import parse_auth, quote_string
from pbx.sip.status import SipParseError

MAX_PARAMS = 32  # a digest challenge has ~10 params; more is garbage or an attack
MAX_ROUNDS = 4  # challenges one request chain may answer (stale loops included)
MAX_NONCES = 64  # (realm, nonce) nc counters kept per account

WWW_AUTHENTICATE = "WWW-Authenticate"
PROXY_AUTHENTICATE = "Proxy-Authenticate"
AUTHORIZATION = "Authorization"
PROXY_AUTHORIZATION = "Proxy-Authorization"

# RFC 7616 §3.2, RFC 8760 §2: algorithm token -> hashlib name.
_HASHES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
_STRENGTH = {"MD5": 0, "SHA-256": 1, "SHA-512-256": 2}


class AuthError(PbxError):
    """A malformed challenge or Authorization value from a peer."""


class CnonceSource(Protocol):
    """The slice of `pbx.sip.ids.IdSource` digest needs."""

    def cnonce(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password for one account (trunk or extension)."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Challenge:
    """One parsed WWW-Authenticate / Proxy-Authenticate Digest challenge."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    userhash: bool = False
    proxy: bool = False  # True when it came in Proxy-Authenticate (407)

    @property
    def answer_header(self) -> str:
        """The header our answer goes in (RFC 3261 §22.2 / §22.3)."""
        return PROXY_AUTHORIZATION if self.proxy else AUTHORIZATION


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """A parsed Authorization / Proxy-Authorization Digest value (server side)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    userhash: bool = False


# --- parsing (RFC 7235 §2.1 auth-param, RFC 3261 §25.1 digest-cln) ----------------


def parse_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `Scheme k=v, k="quoted"` into the scheme and lower-cased keys -> values.

    Delegates to `pbx.sip.headers.parse_auth` (RFC 7235 §2.1 auth-param grammar).
    """
    try:
        parsed = parse_auth(value)
    except SipParseError as exc:
        raise AuthError(str(exc)) from exc
    if len(parsed.params) > MAX_PARAMS:
        raise AuthError("too many auth-params")
    return parsed.scheme, parsed.params


def parse_challenge(value: str, *, proxy: bool = False) -> Challenge:
    """Parse one Digest challenge; raises AuthError on other schemes or missing fields."""
    scheme, params = parse_params(value)
    if scheme.lower() != "digest":
        raise AuthError(f"unsupported auth scheme {scheme!r}")
    if "realm" not in params or "nonce" not in params:
        raise AuthError("Digest challenge without realm or nonce")
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        userhash=params.get("userhash", "").lower() == "true",
        proxy=proxy,
    )


def _canonical_algorithm(token: str) -> str:
    """Upper-case the algorithm token, keeping the '-sess' suffix lower-case (RFC 7616 §3.3)."""
    upper = token.strip().upper()
    if upper.endswith("-SESS"):
        return upper[: -len("-SESS")] + "-sess"
    return upper


def challenges_in(headers: Iterable[tuple[str, str]]) -> list[Challenge]:
    """Every usable Digest challenge among (name, value) header pairs; others are skipped."""
    found: list[Challenge] = []
    for name, value in headers:
        lname = name.lower()
        if lname not in ("www-authenticate", "proxy-authenticate"):
            continue
        try:
            challenge = parse_challenge(value, proxy=lname == "proxy-authenticate")
        except AuthError:
            continue
        if supports(challenge.algorithm):
            found.append(challenge)
    return found


def parse_authorization(value: str) -> DigestCredentials:
    """Parse an Authorization / Proxy-Authorization Digest value (server side)."""
    scheme, params = parse_params(value)
    if scheme.lower() != "digest":
        raise AuthError(f"unsupported auth scheme {scheme!r}")
    missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in params]
    if missing:
        raise AuthError(f"Digest credentials without {', '.join(missing)}")
    return DigestCredentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"].lower(),
        algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),
        qop=params.get("qop"),
        nc=params.get("nc"),
        cnonce=params.get("cnonce"),
        opaque=params.get("opaque"),
        userhash=params.get("userhash", "").lower() == "true",
    )


# --- computation (RFC 2617 §3.2.2, RFC 7616 §3.4) ----------------------------------


def supports(algorithm: str) -> bool:
    """True when `algorithm` (canonical form) can be computed here."""
    base = algorithm.removesuffix("-sess")
    if base not in _HASHES:
        return False
    try:
        hashlib.new(_HASHES[base])
    except ValueError:  # OpenSSL without SHA-512/256
        return False
    return True


def hash_hex(algorithm: str, data: str | bytes) -> str:
    """H(data) for a digest algorithm, as lower-case hex."""
    raw = data.encode() if isinstance(data, str) else data
    base = algorithm.removesuffix("-sess")
    if base not in _HASHES:
        raise AuthError(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(_HASHES[base], raw).hexdigest()


def ha1(
    algorithm: str, username: str, realm: str, password: str, nonce: str = "", cnonce: str = ""
) -> str:
    """HA1 = H(user:realm:password); for "-sess", H(that:nonce:cnonce) (RFC 7616 §3.4.2)."""
    base = hash_hex(algorithm, f"{username}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        return hash_hex(algorithm, f"{base}:{nonce}:{cnonce}")
    return base


def compute_response(
    algorithm: str,
    ha1_hex: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The `response` value: KD(HA1, nonce[:nc:cnonce:qop]:HA2) (RFC 2617 §3.2.2.1)."""
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + hash_hex(algorithm, body)
    ha2 = hash_hex(algorithm, a2)
    if qop is None:  # RFC 2069 compatibility form
        return hash_hex(algorithm, f"{ha1_hex}:{nonce}:{ha2}")
    return hash_hex(algorithm, f"{ha1_hex}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def verify_authorization(
    creds: DigestCredentials, password: str, method: str, body: bytes = b""
) -> bool:
    """Server side: does `creds` prove knowledge of `password` for this request?

    Checks the response only; the caller checks realm, nonce freshness, opaque
    and that `creds.uri` matches the Request-URI (RFC 3261 §22.4).
    """
    if not supports(creds.algorithm) or (creds.qop is not None and creds.qop not in _QOPS):
        return False
    if creds.qop is not None and (creds.nc is None or creds.cnonce is None):
        return False
    key = ha1(
        creds.algorithm, creds.username, creds.realm, password, creds.nonce, creds.cnonce or ""
    )
    expected = compute_response(
        creds.algorithm,
        key,
        creds.nonce,
        method,
        creds.uri,
        creds.qop,
        creds.nc,
        creds.cnonce,
        body,
    )
    return hmac.compare_digest(expected, creds.response)


_QOPS = ("auth", "auth-int")


def _choose_qop(offered: Sequence[str]) -> str | None:
    """qop=auth when offered, else auth-int, else none (RFC 2069 form)."""
    if not offered:
        return None
    for qop in _QOPS:
        if qop in offered:
            return qop
    raise AuthError(f"no supported qop in {','.join(offered)!r}")


def build_authorization(
    challenge: Challenge,
    credentials: Credentials,
    method: str,
    uri: str,
    *,
    cnonce: str,
    nc: int,
    body: bytes = b"",
) -> str:
    """The Authorization / Proxy-Authorization value answering `challenge` (RFC 7616 §3.4)."""
    qop = _choose_qop(challenge.qop)
    nc_hex = f"{nc:08x}" if qop else None
    used_cnonce = cnonce if qop or challenge.algorithm.endswith("-sess") else None
    username = credentials.username
    if challenge.userhash:
        username = hash_hex(challenge.algorithm, f"{username}:{challenge.realm}")
    key = ha1(
        challenge.algorithm,
        credentials.username,
        challenge.realm,
        credentials.password,
        challenge.nonce,
        used_cnonce or "",
    )
    response = compute_response(
        challenge.algorithm, key, challenge.nonce, method, uri, qop, nc_hex, used_cnonce, body
    )
    return _format_credentials(challenge, username, uri, response, used_cnonce, qop, nc_hex)


def _format_credentials(
    challenge: Challenge,
    username: str,
    uri: str,
    response: str,
    cnonce: str | None,
    qop: str | None,
    nc_hex: str | None,
) -> str:
    """`Digest username="..", ...`: algorithm, qop and nc unquoted (RFC 7616 §3.4)."""
    parts = [
        f"username={quote_string(username)}",
        f"realm={quote_string(challenge.realm)}",
        f"nonce={quote_string(challenge.nonce)}",
        f"uri={quote_string(uri)}",
        f"response={quote_string(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    if cnonce is not None:
        parts.append(f"cnonce={quote_string(cnonce)}")
    if qop:
        parts += [f"qop={qop}", f"nc={nc_hex}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quote_string(challenge.opaque)}")
    if challenge.userhash:
        parts.append("userhash=true")
    return "Digest " + ", ".join(parts)


# --- client state ------------------------------------------------------------------


class DigestClient:
    """Answers digest challenges for one account; owns the nc counters (RFC 7616 §3.4)."""

    def __init__(self, credentials: Credentials, ids: CnonceSource) -> None:
        self.credentials = credentials
        self._ids = ids
        self._nc: OrderedDict[tuple[str, str], int] = OrderedDict()

    def next_nc(self, realm: str, nonce: str) -> int:
        """Count one more use of (realm, nonce): 1 for a new nonce."""
        key = (realm, nonce)
        count = self._nc.pop(key, 0) + 1
        self._nc[key] = count
        while len(self._nc) > MAX_NONCES:
            self._nc.popitem(last=False)
        return count

    def authorize(
        self, challenge: Challenge, method: str, uri: str, body: bytes = b""
    ) -> tuple[str, str]:
        """(header name, value) answering one challenge; uses a fresh cnonce."""
        nc = self.next_nc(challenge.realm, challenge.nonce)
        value = build_authorization(
            challenge, self.credentials, method, uri, cnonce=self._ids.cnonce(), nc=nc, body=body
        )
        return challenge.answer_header, value

    def attempt(self) -> AuthAttempt:
        """Start a request chain (one INVITE or one REGISTER and its re-sends)."""
        return AuthAttempt(self)


def strongest_per_realm(challenges: Iterable[Challenge]) -> list[Challenge]:
    """One challenge per (realm, header kind): the strongest supported algorithm."""
    best: dict[tuple[str, bool], Challenge] = {}
    for ch in challenges:
        if not supports(ch.algorithm):
            continue
        key = (ch.realm, ch.proxy)
        old = best.get(key)
        if old is None or _rank(ch) > _rank(old):
            best[key] = ch
    return list(best.values())


def _rank(challenge: Challenge) -> int:
    return _STRENGTH.get(challenge.algorithm.removesuffix("-sess"), -1)


class AuthAttempt:
    """One request chain's view of authentication: decides retry vs. give up."""

    def __init__(self, client: DigestClient) -> None:
        self._client = client
        self._answered: set[tuple[str, bool]] = set()
        self.rounds = 0
        self.refused = False

    def answer(
        self, challenges: Sequence[Challenge], method: str, uri: str, body: bytes = b""
    ) -> list[tuple[str, str]] | None:
        """Headers to add to the re-sent request, or None to give up.

        None when nothing usable was offered, when a realm we already answered
        challenges again without stale=true (credentials refused; `.refused` is
        set), or after MAX_ROUNDS rounds.
        """
        chosen = strongest_per_realm(challenges)
        if not chosen or self.rounds >= MAX_ROUNDS:
            return None
        for ch in chosen:
            if (ch.realm, ch.proxy) in self._answered and not ch.stale:
                self.refused = True
                return None
        self.rounds += 1
        headers: list[tuple[str, str]] = []
        for ch in chosen:
            self._answered.add((ch.realm, ch.proxy))
            try:
                headers.append(self._client.authorize(ch, method, uri, body))
            except AuthError:  # e.g. only an unknown qop was offered
                return None
        return headers
