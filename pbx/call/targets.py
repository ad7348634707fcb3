"""Where an `ext:NAME` destination rings: one target per registered contact (reads the store).

`extension_targets` expands an extension destination into one `Target` per
unexpired binding (newest first); `join_steps` flattens a plan over
destinations' target groups into a plan over targets. Used by
`pbx.call.intake`; the bindings are written by the registrar service
(`pbx.service.registrar`).

Decision: a binding's target has the registered contact as Request-URI and
goes to where the REGISTER came from (NAT), or to the first Path hop when
the REGISTER carried Path (an IP literal only: no DNS on the call path).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from pbx.call.model import Target
from pbx.records import iso_utc
from pbx.sip.headers import parse_name_addr
from pbx.sip.peer import Peer, as_transport
from pbx.sip.registrar import decode_received
from pbx.sip.status import SipParseError
from pbx.sip.uri import parse_uri
from pbx.store import Binding, Destination, Store

T = TypeVar("T")
MAX_TARGETS = 16  # contacts rung for one extension (max_contacts is normally lower)


def join_steps(steps: Sequence[Sequence[Sequence[T]]]) -> tuple[tuple[T, ...], ...]:
    """A plan over destinations' target groups -> a plan over targets (one step each).

    `rules.routing.plan` orders destinations; an extension is one destination
    whose contacts ring together, so each step's groups are concatenated.
    """
    joined = (tuple(t for group in step for t in group) for step in steps)
    return tuple(step for step in joined if step)


async def extension_targets(store: Store, dest: Destination, wall: float) -> tuple[Target, ...]:
    """One target per unexpired binding of `dest`'s extension; () when none (480).

    Newest registrations first; at most MAX_TARGETS.
    """
    name = dest.target.removeprefix("ext:")
    bindings = await store.extensions.bindings(name, iso_utc(wall))
    targets = [t for b in bindings if (t := binding_target(dest.name, b)) is not None]
    return tuple(targets[:MAX_TARGETS])


def binding_target(destination: str, binding: Binding) -> Target | None:
    """Where to ring one binding: its flow (or first Path hop), R-URI = the contact."""
    if binding.received is None:
        return None
    try:
        flow, path = decode_received(binding.received)
        peer = _path_peer(path[0], flow) if path else flow
    except (ValueError, SipParseError):
        return None
    if peer is None:
        return None
    return Target(destination, binding.contact, peer)


def _path_peer(hop: str, flow: Peer) -> Peer | None:
    """The first Path hop's address when it is an IP literal (no DNS on this path)."""
    uri = parse_name_addr(hop).uri if "<" in hop else parse_uri(hop)
    host = uri.host.strip("[]")
    if not host or not all(c in "0123456789abcdefABCDEF.:" for c in host):
        return None
    transport = as_transport(uri.transport, flow.transport) or flow.transport
    return Peer(transport, host, uri.port or 5060)
