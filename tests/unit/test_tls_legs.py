"""TLS on the wire of a call (pure): Via SIP/2.0/TLS, Contact ;transport=tls or sips:, and the
targets a TLS trunk or a sips: destination give (name to verify, CA, port 5061)."""

from __future__ import annotations

import copy

from pbx.call.intake import _sip_target, _trunk_target
from pbx.call.legs import LegBuilder
from pbx.call.model import LocalAddress, Target
from pbx.sip.ids import CountingIds
from pbx.sip.peer import Peer
from pbx.store import Destination, Trunk
from tests.calls_support import make_call, target

LOCAL = {"udp": LocalAddress("192.0.2.1", 5060), "tls": LocalAddress("192.0.2.1", 5061)}
TLS_PEER = Peer("tls", "198.51.100.7", 5061, "sip.example.net", "PEM")


def test_branch_over_tls_says_so_in_via_and_contact() -> None:
    h = make_call([[target(0)]])
    builder = LegBuilder(CountingIds(), LOCAL)
    tls = Target("secure", "sip:+14155550101@sip.example.net:5061;transport=tls", TLS_PEER)
    branch = builder.new_branch(tls, h.call.inbound.invite, b"", 0.0, h.call.setup)
    assert (branch.invite.headers.get("Via") or "").startswith("SIP/2.0/TLS 192.0.2.1:5061;branch=")
    assert branch.invite.headers.get("Contact") == "<sip:pbx@192.0.2.1:5061;transport=tls>"
    sips = Target("secure", "sips:+14155550101@sip.example.net", TLS_PEER)
    branch = builder.new_branch(sips, h.call.inbound.invite, b"", 0.0, h.call.setup)
    assert branch.invite.headers.get("Contact") == "<sips:pbx@192.0.2.1:5061>"


def test_caller_on_a_sips_uri_gets_a_sips_contact() -> None:
    h = make_call([[target(0)]])
    builder = LegBuilder(CountingIds(), LOCAL)
    inbound = copy.copy(h.call.inbound)
    inbound.source = Peer("tls", "198.51.100.7", 40312)
    plain = builder.to_caller(inbound, 180)
    assert plain.headers.get("Contact") == "<sip:pbx@192.0.2.1:5061;transport=tls>"
    inbound.invite = copy.copy(inbound.invite)
    inbound.invite.uri = inbound.invite.uri.replace("sip:", "sips:", 1)
    secure = builder.to_caller(inbound, 180)
    assert secure.headers.get("Contact") == "<sips:pbx@192.0.2.1:5061>"


async def test_tls_trunk_target_verifies_the_trunk_host_with_its_ca() -> None:
    trunk = Trunk(name="secure", host="198.51.100.7", port=5061, transport="tls", tls_ca="PEM")
    dest = Destination(name="office", target="+14155550101", kind="number")
    got = await _trunk_target(dest, trunk)
    assert got is not None
    assert got.uri == "sip:+14155550101@198.51.100.7:5061;transport=tls"
    assert got.dest == Peer("tls", "198.51.100.7", 5061)
    assert (got.dest.server_name, got.dest.ca) == ("198.51.100.7", "PEM")


async def test_sips_destination_is_tls_on_5061_checked_against_its_host() -> None:
    dest = Destination(name="desk", target="sips:+14155550101@198.51.100.8", kind="sip")
    got = await _sip_target(dest)
    assert got is not None
    assert got.dest == Peer("tls", "198.51.100.8", 5061)
    assert (got.dest.server_name, got.dest.ca) == ("198.51.100.8", "")
    udp = Destination(name="bad", target="sips:+14155550101@198.51.100.8;transport=udp", kind="sip")
    assert await _sip_target(udp) is None  # sips: means TLS (RFC 5630)
