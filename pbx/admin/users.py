"""Admin use cases for dashboard users, API tokens and the audit log (I/O through the store).

Shared by the CLI (`pbx users|tokens|audit`) and the admin HTTP API, like
`pbx.admin`: each use case validates everything first (bad input raises an
`InputError` subclass with one line, nothing changes), makes one store
change, then appends one audit row saying who (`actor`), when and what.

Decisions:
- Passwords are hashed with argon2id (argon2-cffi's `PasswordHasher`
  defaults: ~50-100 ms and 64 MiB each, so hashing runs on a worker thread,
  never on the daemon's event loop); 8-1024 characters. `verify_password` takes the same time for
  an unknown user as for a known one (it verifies against a dummy hash), so
  timing does not tell which user names exist; a hash made with older
  parameters is re-hashed on the next good login.
- A token is `pbx_` + 32 random bytes (urlsafe base64), shown once; only its
  SHA-256 hex is stored. 256 bits of entropy make a slow hash pointless and
  SHA-256 lets a request find its row by one index lookup.
- The audit row is written right after the change it describes, not in the
  same transaction (the store's repositories each commit on their own); a
  crash between the two loses that one audit row, never the change's
  validation. Audit details never hold a password, hash or token.
- Actors are `NAME` for a dashboard user, `token:NAME` for an API token and
  `cli:LOGIN` for the command line (`cli_actor`).
- Removing or demoting the last admin is refused: nobody could undo it.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from pbx.admin import provisioning as admin
from pbx.errors import ConflictError, InputError, NotFoundError
from pbx.records import CallRecord, iso_utc
from pbx.store.base import ROLES, ApiToken, AuditEntry, Role, Source, Store, User

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
TOKEN_PREFIX = "pbx_"  # noqa: S105 - a token's public prefix, not a secret
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not a password of anyone")
Clock = Callable[[], float]
_AUDITED_SOURCE_FIELDS = ("name", "tag", "description", "enabled", "cost_per_call_cents",
                          "monthly_budget_cents", "position")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is making a change, and with which role."""

    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def cli_actor() -> Actor:
    """The command line acts as an admin named after the OS login."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        login = "unknown"
    return Actor(f"cli:{login}", "admin")


# ---------------------------------------------------------------- checks


def check_user_name(name: str) -> str:
    if not _USER_NAME.match(name):
        raise InputError(
            "name must be 1-64 of letters, digits and . _ @ - (starting with a letter or digit)"
        )
    return name


def check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise InputError(f"role must be admin or viewer (got {role!r})")


def check_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InputError(f"password must be {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} characters")
    if "\n" in password or "\r" in password:
        raise InputError("password must be one line")
    return password


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- audit


async def record(
    store: Store,
    actor: Actor,
    action: str,
    subject: str,
    detail: Mapping[str, Any] | None = None,
    clock: Clock = time.time,
) -> AuditEntry:
    """Append one audit row: `actor` did `action` to `subject` (detail: JSON object)."""
    text = json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"), default=str)
    at = iso_utc(clock())
    entry = AuditEntry(at=at, actor=actor.name, action=action, subject=subject, detail=text)
    return await store.audit.add(entry)


def require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise PermissionDenied("this needs the admin role")


class PermissionDenied(InputError):
    """The actor's role does not allow the change (HTTP 403)."""


# ---------------------------------------------------------------- users


async def add_user(
    store: Store, actor: Actor, name: str, role: str, password: str, clock: Clock = time.time
) -> User:
    require_admin(actor)
    user = User(
        name=check_user_name(name),
        role=check_role(role),
        password_hash=await _hash(check_password(password)),
        created_at=iso_utc(clock()),
    )
    added = await store.users.add(user)
    await record(store, actor, "users.add", name, {"role": user.role}, clock)
    return added


async def list_users(store: Store) -> list[User]:
    return await store.users.list()


async def _other_admins(store: Store, name: str) -> int:
    return sum(1 for u in await store.users.list() if u.role == "admin" and u.name != name)


async def remove_user(store: Store, actor: Actor, name: str, clock: Clock = time.time) -> None:
    require_admin(actor)
    user = await admin.require(store.users.get(name), f"no user named '{name}'")
    if user.role == "admin" and not await _other_admins(store, name):
        raise ConflictError(f"'{name}' is the last admin: add another admin first")
    await store.users.remove(name)
    await record(store, actor, "users.remove", name, None, clock)


async def set_password(
    store: Store, actor: Actor, name: str, password: str, clock: Clock = time.time
) -> User:
    """A new password for `name` (an admin for anyone, a user for themself)."""
    if not actor.is_admin and actor.name != name:
        raise PermissionDenied("only an admin can change another user's password")
    check_password(password)
    await admin.require(store.users.get(name), f"no user named '{name}'")
    updated = await store.users.update(name, password_hash=await _hash(password))
    await record(store, actor, "users.passwd", name, None, clock)
    return updated


async def verify_password(store: Store, name: str, password: str) -> User | None:
    """The user when `password` is theirs, else None (same work either way)."""
    user = await store.users.get(name) if _USER_NAME.match(name) else None
    stored = user.password_hash if user else _DUMMY_HASH
    if not await asyncio.to_thread(_matches, stored, password) or user is None:
        return None
    if _HASHER.check_needs_rehash(user.password_hash):
        user = await store.users.update(name, password_hash=await _hash(password))
    return user


def _matches(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def _hash(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


# ---------------------------------------------------------------- tokens


async def add_token(
    store: Store, actor: Actor, name: str, role: str, clock: Clock = time.time
) -> tuple[ApiToken, str]:
    """A new token row and the token itself (shown once, never stored)."""
    require_admin(actor)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=check_user_name(name),
        role=check_role(role),
        token_sha256=token_digest(token),
        created_at=iso_utc(clock()),
    )
    added = await store.tokens.add(row)
    await record(store, actor, "tokens.add", name, {"role": row.role}, clock)
    return added, token


async def revoke_token(store: Store, actor: Actor, name: str, clock: Clock = time.time) -> ApiToken:
    require_admin(actor)
    revoked = await store.tokens.revoke(name, iso_utc(clock()))
    await record(store, actor, "tokens.revoke", name, None, clock)
    return revoked


async def verify_token(store: Store, token: str, clock: Clock = time.time) -> ApiToken | None:
    """The active token row for a presented bearer token (its use is recorded), else None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    row = await store.tokens.find(token_digest(token))
    if row is None or row.revoked_at is not None:
        return None
    await store.tokens.touch(row.id, iso_utc(clock()))
    return row


# ---------------------------------------------------------------- dashboard edits


async def update_source(
    store: Store, actor: Actor, name: str, opts: admin.SourceOptions, clock: Clock = time.time
) -> Source:
    """`pbx sources update` (the same `pbx.admin` use case), audited."""
    require_admin(actor)
    before = await admin.require(store.sources.get(name), f"no source named '{name}'")
    after = await admin.update_source(store, name, opts)
    changed = {
        f: getattr(after, f)
        for f in _AUDITED_SOURCE_FIELDS
        if getattr(after, f) != getattr(before, f)
    }
    await record(store, actor, "sources.update", name, changed, clock)
    return after


async def set_call_tag(
    store: Store, actor: Actor, call_id: str, tag: str | None, clock: Clock = time.time
) -> CallRecord:
    """Change a finished call's tag ('' or None clears it). Live calls are refused:
    the daemon writes their row again when they end."""
    require_admin(actor)
    current = await admin.require(store.calls.get(call_id), f"no call {call_id}")
    if not current.is_final:
        raise ConflictError("the call is still live: change its tag after it ends")
    text = (tag or "").strip()
    if len(text) > admin.MAX_TAG_CHARS or any(ord(c) < 32 for c in text):
        raise InputError(f"tag must be at most {admin.MAX_TAG_CHARS} printable characters")
    new = replace(current, tag=text or None)
    await store.calls.update(new)
    await record(store, actor, "calls.tag", call_id, {"tag": new.tag, "was": current.tag}, clock)
    return new


__all__ = [
    "Actor",
    "ConflictError",
    "NotFoundError",
    "PermissionDenied",
    "add_token",
    "add_user",
    "cli_actor",
    "list_users",
    "record",
    "remove_user",
    "revoke_token",
    "set_call_tag",
    "set_password",
    "update_source",
    "verify_password",
    "verify_token",
]
