"""Admin use cases for local extensions behind `pbx extensions ...` (I/O through the store only).

Validates completely, then makes one store call, like `pbx.admin.provisioning`.

Decisions:
- A name is the SIP user part phones register with: 1-64 characters of
  letters, digits and `-._~` (RFC 3261 §25.1 unreserved), so it needs no
  escaping in a URI or a digest username; `100` and `front-desk` are fine.
- A password is 8-128 printable ASCII characters, stored only as digest
  HA1 for MD5 and SHA-256 (H(name:realm:password)), never in clear and
  never printed. Weak SIP passwords are the first thing scanners try.
- The realm comes from `--realm` (default `pbx`, the daemon's default
  `registrar.realm`): the CLI does not read the daemon's config. The
  daemon challenges each extension with its own stored realm, so a realm
  that differs from the config still works.
- HA1 depends on name and realm: `update --rename` or `--realm` needs
  `--password` in the same command (the old hash cannot be carried over).
- `max_contacts` is 1-16: the phones (contacts) one extension may have
  registered at once; a call rings all of them.
- `digest` (`--digest md5|sha-256|both`, default both): the algorithms the
  registrar challenges this extension with, SHA-256 first (RFC 7616 §3.7).
  Both HA1 hashes are stored whatever the choice, so changing it later needs
  no password. Older phones that stop at the first challenge they cannot
  answer (baresip 1.0, many desk phones) need `md5`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from pbx.errors import InputError, NotFoundError
from pbx.records import iso_utc
from pbx.sip.auth import ha1
from pbx.store import Binding, Extension, Store
from pbx.store.base import DigestChoice

MAX_CONTACTS = 16
DEFAULT_REALM = "pbx"
_NAME = re.compile(r"[A-Za-z0-9._~-]{1,64}")
_PASSWORD = re.compile(r"[\x20-\x7e]{8,128}")
DIGESTS: tuple[DigestChoice, ...] = ("both", "md5", "sha-256")
_REALM = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?")


@dataclass(frozen=True, slots=True)
class ExtensionOptions:
    """CLI values; None = not given."""

    password: str | None = field(default=None, repr=False)  # a secret: never in a repr
    max_contacts: int | None = None
    realm: str | None = None
    rename: str | None = None
    digest: str | None = None


def check_digest(digest: str) -> DigestChoice:
    for choice in DIGESTS:
        if digest == choice:
            return choice
    raise InputError(f"--digest must be one of {', '.join(DIGESTS)}")


def check_extension_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InputError(
            f"extension name {name!r} must be 1-64 letters, digits or - . _ ~ (a SIP user part)"
        )
    return name


def check_password(password: str) -> str:
    if not _PASSWORD.fullmatch(password):
        raise InputError("password must be 8-128 printable ASCII characters")
    return password


def check_realm(realm: str) -> str:
    if not _REALM.fullmatch(realm) or '"' in realm or "\\" in realm:
        raise InputError("realm must be 1-128 printable characters without quotes or backslashes")
    return realm


def check_max_contacts(count: int) -> int:
    if not 1 <= count <= MAX_CONTACTS:
        raise InputError(f"--max-contacts must be between 1 and {MAX_CONTACTS}")
    return count


def hashed(name: str, realm: str, password: str) -> tuple[str, str]:
    """(HA1 MD5, HA1 SHA-256) of name:realm:password (RFC 7616 §3.4.2)."""
    return ha1("MD5", name, realm, password), ha1("SHA-256", name, realm, password)


async def add_extension(store: Store, name: str, opts: ExtensionOptions) -> Extension:
    check_extension_name(name)
    if opts.password is None:
        raise InputError("a password is required: --password-stdin, --password-file or a prompt")
    realm = check_realm(opts.realm if opts.realm is not None else DEFAULT_REALM)
    md5, sha256 = hashed(name, realm, check_password(opts.password))
    count = check_max_contacts(opts.max_contacts if opts.max_contacts is not None else 1)
    digest = check_digest(opts.digest if opts.digest is not None else "both")
    ext = Extension(name=name, ha1_md5=md5, ha1_sha256=sha256, realm=realm, max_contacts=count,
                    digest=digest)  # fmt: skip
    return await store.extensions.add(ext)


async def update_extension(store: Store, name: str, opts: ExtensionOptions) -> Extension:
    current = await store.extensions.get(name)
    if current is None:
        raise NotFoundError(f"no extension named '{name}'")
    new_name = check_extension_name(opts.rename) if opts.rename is not None else current.name
    realm = check_realm(opts.realm) if opts.realm is not None else current.realm
    new = replace(current, name=new_name, realm=realm)
    if opts.max_contacts is not None:
        new = replace(new, max_contacts=check_max_contacts(opts.max_contacts))
    if opts.digest is not None:
        new = replace(new, digest=check_digest(opts.digest))
    if opts.password is not None:
        md5, sha256 = hashed(new_name, realm, check_password(opts.password))
        new = replace(new, ha1_md5=md5, ha1_sha256=sha256)
    elif (new_name, realm) != (current.name, current.realm):
        raise InputError(
            "changing the name or realm needs the password again, e.g. --password-stdin "
            "(the hash includes them)"
        )
    changes = {
        k: getattr(new, k)
        for k in ("name", "realm", "max_contacts", "digest", "ha1_md5", "ha1_sha256")
        if getattr(new, k) != getattr(current, k)
    }
    if not changes:
        raise InputError(
            "nothing to change: give --password-stdin, --max-contacts, --realm, --digest "
            "or --rename"
        )
    return await store.extensions.update(name, **changes)


def public(ext: Extension, bindings: list[Binding] | None = None) -> dict[str, object]:
    """An extension as the CLI shows it: no hashes, with its current bindings."""
    row: dict[str, object] = {
        "name": ext.name,
        "realm": ext.realm,
        "max_contacts": ext.max_contacts,
        "digest": ext.digest,
    }
    if bindings is not None:
        row["registered"] = len(bindings)
        row["contacts"] = [
            {"contact": b.contact, "expires_at": b.expires_at, "received": b.received}
            for b in bindings
        ]
    return row


async def list_extensions(store: Store, wall: float) -> list[dict[str, object]]:
    now = iso_utc(wall)
    rows = await store.extensions.list()
    return [public(e, await store.extensions.bindings(e.name, now)) for e in rows]


async def show_extension(store: Store, name: str, wall: float) -> dict[str, object]:
    ext = await store.extensions.get(name)
    if ext is None:
        raise NotFoundError(f"no extension named '{name}'")
    return public(ext, await store.extensions.bindings(name, iso_utc(wall)))
