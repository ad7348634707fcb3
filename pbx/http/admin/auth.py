"""Admin app authentication: sessions, CSRF, login throttling, bearer tokens (I/O shell).

Decisions:
- Sessions are server-side, in this process's memory (`Sessions`): a
  restart logs everyone out, and several nodes do not share logins (put the
  admin listener on one node, or log in per node). The cookie holds only a
  random 256-bit id; it is HttpOnly, SameSite=Strict, Path=/, and Secure
  when the app is told it is behind TLS (`secure_cookies`).
- The login page gives a browser a session before it logs in (the login
  form needs a CSRF token too: login CSRF); no other route makes one. A
  successful login replaces it with a new id and a new CSRF token (no
  session fixation). Sessions end after `IDLE_SECONDS` without a request
  or `MAX_AGE_SECONDS` in all. At most `MAX_SESSIONS` logged-in and
  `MAX_ANONYMOUS` not-yet-logged-in sessions are kept, apart, the least
  recently used going first: a flood of login-page loads cannot push out
  the sessions of people who are logged in.
- CSRF: a request that changes something (POST/PUT/PATCH/DELETE) with a
  session cookie must carry the session's token as the `csrf_token` form
  field or the `X-CSRF-Token` header (compared in constant time), and an
  `Origin` header, when sent, must be this host. Bearer-token requests are
  not cookie-authenticated, so they need no CSRF token.
- Throttling: `MAX_FAILURES` failed logins within `WINDOW_SECONDS` for one
  user name or from one address lock that key for `COOLDOWN_SECONDS`;
  while locked, logins are answered 429 without checking the password
  (a right password does not get in). A good login clears the user's key,
  not the address's (one known account must not reset an attacker's count).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pbx.admin.users import Actor

COOKIE = "pbx_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
IDLE_SECONDS = 8 * 3600.0
MAX_AGE_SECONDS = 24 * 3600.0
MAX_SESSIONS = 10_000
MAX_ANONYMOUS = 1_000
MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60.0
COOLDOWN_SECONDS = 5 * 60.0
MAX_THROTTLE_KEYS = 10_000
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Clock = Callable[[], float]


@dataclass
class Session:
    """One browser's session; `actor` is None until it logs in."""

    sid: str
    csrf: str
    created: float
    seen: float
    actor: Actor | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as, and how it proved it (`session` or `token`)."""

    actor: Actor
    via: str


@dataclass
class Sessions:
    """Server-side sessions in memory (see the module docstring)."""

    clock: Clock = time.monotonic
    items: OrderedDict[str, Session] = field(default_factory=OrderedDict)  # logged in
    anonymous: OrderedDict[str, Session] = field(default_factory=OrderedDict)

    def new(self, actor: Actor | None = None) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now, actor)
        table, limit = (self.items, MAX_SESSIONS) if actor else (self.anonymous, MAX_ANONYMOUS)
        table[session.sid] = session
        while len(table) > limit:
            table.popitem(last=False)
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        table = self.items if sid in self.items else self.anonymous
        session = table.get(sid)
        if session is None:
            return None
        now = self.clock()
        if now - session.seen > IDLE_SECONDS or now - session.created > MAX_AGE_SECONDS:
            del table[sid]
            return None
        session.seen = now
        table.move_to_end(sid)
        return session

    def login(self, old: Session | None, actor: Actor) -> Session:
        """A fresh session for `actor`, replacing `old` (new id, new CSRF token)."""
        if old is not None:
            self.end(old)
        return self.new(actor)

    def end(self, session: Session) -> None:
        self.items.pop(session.sid, None)
        self.anonymous.pop(session.sid, None)

    def end_user(self, name: str) -> None:
        """Log out every session of user `name` (removed, or password changed)."""
        for sid in [s.sid for s in self.items.values() if s.actor and s.actor.name == name]:
            del self.items[sid]


def csrf_ok(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf, presented)


@dataclass
class Throttle:
    """Failed logins per key (`user:NAME`, `ip:ADDR`); see the module docstring."""

    clock: Clock = time.monotonic
    max_failures: int = MAX_FAILURES
    window: float = WINDOW_SECONDS
    cooldown: float = COOLDOWN_SECONDS
    failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self.failures.get(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def locked_for(self, *keys: str) -> float:
        """Seconds until every given key may try again (0 = not locked)."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.max_failures:
                wait = max(wait, times[-1] + self.cooldown - now)
        return max(0.0, wait)

    def fail(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            times = self._recent(key, now)
            times.append(now)
            while len(times) > self.max_failures:
                times.popleft()
            self.failures[key] = times
            self.failures.move_to_end(key)
        while len(self.failures) > MAX_THROTTLE_KEYS:
            self.failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self.failures.pop(key, None)
