"""Admission: which trunk a request's source address belongs to, and the dialed number (pure).

`trunk_for_source` is Kamailio's `permissions` idea: each trunk has an
allow-list of CIDRs (`pbx trunks add ... --allow CIDR`); an INVITE from an
address no trunk allows gets 403 (DESIGN, call flow step 2).

Decisions (the spec is silent):
- The most specific match wins (longest prefix), ties go to the earlier
  trunk in the sequence, so `10.0.0.0/8` on one trunk and `10.1.2.3/32` on
  another route 10.1.2.3 to the second one.
- A trunk's `host`, when it is an IP literal and the trunk has no allow
  list, is allowed implicitly as a /32 or /128 (the address we send calls
  to may send calls back). An explicit allow list is authoritative: an
  admin who lists the provider's signalling ranges means only those. A host
  name is not resolved here (that is I/O): list its addresses with --allow.
- IPv4-mapped IPv6 sources (`::ffff:192.0.2.1`, what a dual-stack socket
  reports) are compared as IPv4. Brackets and a `%zone` suffix are
  stripped. An unparsable source or an invalid stored CIDR matches nothing;
  `parse_cidr` is the check the CLI runs on admin input.
- `dialed_number` takes the Request-URI user part first and falls back to
  the To user part. It accepts a bare user part, a `tel:` URI or a whole
  `sip:`/`sips:` URI; drops parameters after `;` (RFC 4694 `;npdi`,
  `;rn=`, `;isub=`), percent-decodes (`%2B` -> `+`), removes RFC 3966
  visual separators (`-`, `.`, `(`, `)`, space), and keeps a leading `+`.
  Anything else (letters, `*`, `#`, an empty result, more than
  `MAX_DIGITS` digits) is not a number: None. Normalising to E.164 is
  `pbx.numbers.normalise`'s job.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import unquote

from pbx.errors import InputError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_DIGITS = 20  # E.164 has at most 15; room for national prefixes, no more
MAX_INPUT_CHARS = 256  # a user part longer than this is not a phone number
_VISUAL_SEPARATORS = re.compile(r"[-.() ]")  # RFC 3966 §5.1.1 visual-separator
_NUMBER = re.compile(r"^\+?[0-9]+$")
_SCHEME = re.compile(r"^(sips?|tel):", re.IGNORECASE)


@dataclass(frozen=True)
class TrunkAcl:
    """What admission needs of a trunk: its name, allowed CIDRs, optional IP host."""

    name: str
    allow: tuple[str, ...] = field(default_factory=tuple)
    host: str | None = None


def parse_cidr(text: str) -> str:
    """Normalise an admin's `--allow` value (`192.0.2.0/24`, `2001:db8::/32`, a bare IP).

    Host bits are allowed and cleared (`192.0.2.7/24` -> `192.0.2.0/24`).
    Raises `InputError` with one line.
    """
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        msg = f"invalid CIDR {text!r} (use e.g. 192.0.2.0/24 or 2001:db8::/32)"
        raise InputError(msg) from None


def parse_address(host: str) -> Address | None:
    """A source host as an address; brackets, `%zone` and IPv4 mapping handled."""
    text = host.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=4096)
def _network(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        address = parse_address(text)
        return ipaddress.ip_network(address) if address is not None else None


def _networks(trunk: TrunkAcl) -> list[Network]:
    texts = list(trunk.allow) or ([trunk.host] if trunk.host else [])
    return [n for n in (_network(t) for t in texts) if n is not None]


def trunk_for_source(trunks: Sequence[TrunkAcl], host: str) -> TrunkAcl | None:
    """The trunk whose allow-list holds `host` most specifically, or None (answer 403)."""
    address = parse_address(host)
    if address is None:
        return None
    best: TrunkAcl | None = None
    best_prefix = -1
    for trunk in trunks:
        for network in _networks(trunk):
            same_family = address.version == network.version
            if same_family and address in network and network.prefixlen > best_prefix:
                best, best_prefix = trunk, network.prefixlen
    return best


def _user_part(text: str) -> str:
    """The user part of a bare user, `tel:` URI or `sip:` URI, without parameters."""
    value = text.strip()
    scheme = _SCHEME.match(value)
    if scheme:
        value = value[scheme.end() :]
        if scheme.group(1).lower() != "tel":
            value = value.split("@", 1)[0] if "@" in value else ""
    return value.split(";", 1)[0]


def _clean(user: str | None) -> str | None:
    if not user or len(user) > MAX_INPUT_CHARS:
        return None
    number = _VISUAL_SEPARATORS.sub("", unquote(_user_part(user)))
    if not _NUMBER.match(number) or len(number.lstrip("+")) > MAX_DIGITS:
        return None
    return number


def dialed_number(request_uri_user: str | None, to_user: str | None) -> str | None:
    """The number the caller dialed: R-URI user part first, else the To user part."""
    return _clean(request_uri_user) or _clean(to_user)
