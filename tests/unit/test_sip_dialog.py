"""Dialog state (RFC 3261 §12): CSeq, route set, target refresh, ACK/CANCEL/BYE construction."""

from __future__ import annotations

import pytest

from pbx.sip.dialog import Dialog, DialogError, DialogId, build_cancel, dialog_id
from pbx.sip.ids import CountingIds
from pbx.sip.message import Request, parse
from pbx.sip.uri import parse_uri
from tests.sip_transaction_support import reply, request, wire

RR = "Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n"
OUR_CONTACT = parse_uri("sip:pbx@198.51.100.1:5060")


def uac_dialog(extra: str = RR) -> tuple[Request, Dialog]:
    inv = request(cseq=10)
    ok = reply(inv, 200, to_tag="callee", extra=extra + "Contact: <sip:callee@203.0.113.9:5070>")
    return inv, Dialog.from_uac_response(inv, wire(ok))  # type: ignore[arg-type]


def test_uac_dialog_from_2xx() -> None:
    _inv, d = uac_dialog()
    assert d.id == DialogId("c1@192.0.2.10", "f1", "callee")
    assert d.local_cseq == 10
    assert d.remote_cseq is None
    assert str(d.remote_target) == "sip:callee@203.0.113.9:5070"
    # §12.1.2: the UAC's route set is the Record-Route list reversed.
    assert [str(r.uri) for r in d.route_set] == ["sip:p2.example;lr", "sip:p1.example;lr"]
    assert str(d.local_contact) == "sip:caller@192.0.2.10:5060"
    assert d.local_via == "SIP/2.0/UDP 192.0.2.10:5060"
    assert d.confirmed
    assert not d.secure
    assert d.local_uri.tag is None
    assert d.remote_uri.tag is None


def test_uas_dialog_from_invite() -> None:
    inv = request(cseq=7, extra=RR)
    d = Dialog.from_uas_request(inv, "ours", OUR_CONTACT)
    assert d.id == DialogId("c1@192.0.2.10", "ours", "f1")
    assert d.remote_cseq == 7
    assert d.local_cseq == 0
    # §12.1.1: the UAS keeps the Record-Route order.
    assert [str(r.uri) for r in d.route_set] == ["sip:p1.example;lr", "sip:p2.example;lr"]
    assert str(d.remote_target) == "sip:caller@192.0.2.10:5060"
    assert d.local_via == "SIP/2.0/UDP 198.51.100.1:5060"
    bye = d.new_request("BYE", CountingIds("d"))
    assert bye.cseq.seq == 1  # empty local CSeq starts at 1
    assert bye.from_.tag == "ours"
    assert bye.to.tag == "f1"
    assert str(bye.from_.uri) == "sip:+14155550101@198.51.100.1"


def test_new_request_increments_cseq_and_uses_loose_routing() -> None:
    _, d = uac_dialog()
    ids = CountingIds("x")
    bye = d.new_request("BYE", ids)
    assert bye.cseq.seq == 11
    assert bye.cseq.method == "BYE"
    assert d.new_request("INFO", ids).cseq.seq == 12
    assert bye.uri == "sip:callee@203.0.113.9:5070"  # remote target (lr)
    assert bye.headers.get_all("Route") == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    assert bye.max_forwards == 70
    via = bye.vias[0]
    assert via.branch is not None
    assert via.branch.startswith("z9hG4bK")
    assert via.wants_rport
    assert (via.host, via.port) == ("192.0.2.10", 5060)
    assert bye.call_id == d.call_id
    assert "Contact" not in bye.headers
    assert str(d.remote_peer_hint()) == "sip:p2.example;lr"
    # Every request gets a fresh branch; the request survives the wire.
    again = d.new_request("BYE", ids)
    assert again.branch != bye.branch
    assert wire(bye) == bye


def test_reinvite_carries_contact_and_body() -> None:
    _, d = uac_dialog()
    sdp = b"v=0\r\n"
    reinvite = d.new_request(
        "INVITE",
        CountingIds(),
        body=sdp,
        content_type="application/sdp",
        extra_headers=[("Supported", "timer")],
    )
    assert reinvite.headers.get("Contact") == "<sip:caller@192.0.2.10:5060>"
    assert reinvite.headers.get("Content-Type") == "application/sdp"
    assert reinvite.headers.get("Supported") == "timer"
    assert reinvite.body == sdp
    assert parse(bytes(reinvite)).body == sdp
    with pytest.raises(DialogError):
        d.new_request("INFO", CountingIds(), body=b"x")  # body without a type


def test_no_route_set_targets_remote_target() -> None:
    _, d = uac_dialog(extra="")
    bye = d.new_request("BYE", CountingIds())
    assert bye.uri == "sip:callee@203.0.113.9:5070"
    assert "Route" not in bye.headers
    assert d.remote_peer_hint() == d.remote_target


def test_strict_route_rewrites_request_uri() -> None:
    _, d = uac_dialog(extra="Record-Route: <sip:strict.example>\r\n")
    bye = d.new_request("BYE", CountingIds())
    assert bye.uri == "sip:strict.example"
    assert bye.headers.get_all("Route") == ["<sip:callee@203.0.113.9:5070>"]


def test_ack_for_2xx_keeps_invite_cseq_and_new_branch() -> None:
    inv, d = uac_dialog()
    ack = d.ack_for_2xx(10, CountingIds("a"))
    assert (ack.method, ack.cseq.seq, ack.cseq.method) == ("ACK", 10, "ACK")
    assert ack.branch != inv.branch  # §13.2.2.4: a new transaction
    assert ack.headers.get_all("Route") == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    assert ack.to.tag == "callee"
    assert d.local_cseq == 10  # the ACK does not consume a CSeq
    with_answer = d.ack_for_2xx(10, CountingIds("a"), b"v=0\r\n")
    assert with_answer.headers.get("Content-Type") == "application/sdp"
    with pytest.raises(DialogError):
        d.new_request("ACK", CountingIds())


def test_build_cancel_mirrors_the_invite() -> None:
    inv = request(cseq=4, extra="Route: <sip:edge.example;lr>\r\n")
    cancel = build_cancel(inv)
    assert cancel.method == "CANCEL"
    assert cancel.uri == inv.uri
    assert cancel.branch == inv.branch  # §9.1: same branch
    assert (cancel.cseq.seq, cancel.cseq.method) == (4, "CANCEL")
    assert cancel.from_ == inv.from_
    assert cancel.to == inv.to
    assert cancel.to.tag is None
    assert cancel.call_id == inv.call_id
    assert cancel.headers.get_all("Route") == ["<sip:edge.example;lr>"]
    assert len(cancel.vias) == 1


def test_remote_cseq_rejects_lower_numbers() -> None:
    d = Dialog.from_uas_request(request(cseq=5), "ours", OUR_CONTACT)
    assert d.receive_request(request("INFO", cseq=6, to_tag="ours"))
    assert d.remote_cseq == 6
    assert not d.receive_request(request("BYE", cseq=3, to_tag="ours"))  # TU answers 500
    assert d.remote_cseq == 6
    assert d.receive_request(request("ACK", cseq=5, to_tag="ours"))  # ACK keeps INVITE's number
    assert d.receive_request(request("BYE", cseq=6, to_tag="ours"))


def test_target_refresh_by_reinvite_and_by_2xx() -> None:
    d = Dialog.from_uas_request(request(cseq=1), "ours", OUR_CONTACT)
    moved = request("INVITE", cseq=2, to_tag="ours")
    moved.headers.set("Contact", "<sip:caller@192.0.2.44:5062>")
    assert d.receive_request(moved)
    assert str(d.remote_target) == "sip:caller@192.0.2.44:5062"
    info = request("INFO", cseq=3, to_tag="ours")
    info.headers.set("Contact", "<sip:ignored@192.0.2.45>")
    d.receive_request(info)
    assert str(d.remote_target) == "sip:caller@192.0.2.44:5062"  # INFO is no refresh

    _inv, uac = uac_dialog()
    reinvite = uac.new_request("INVITE", CountingIds())
    ok = reply(reinvite, 200, extra="Contact: <sip:callee@203.0.113.10>")
    uac.update_from_response(ok)
    assert str(uac.remote_target) == "sip:callee@203.0.113.10"
    uac.update_from_response(reply(reinvite, 488, extra="Contact: <sip:no@203.0.113.11>"))
    assert str(uac.remote_target) == "sip:callee@203.0.113.10"


def test_early_dialog_confirmed_by_2xx_recomputes_route_set() -> None:
    inv = request()
    ringing = reply(inv, 180, to_tag="callee", extra=RR + "Contact: <sip:callee@203.0.113.9>")
    d = Dialog.from_uac_response(inv, ringing)
    assert not d.confirmed
    ok = reply(
        inv,
        200,
        to_tag="callee",
        extra="Record-Route: <sip:p9.example;lr>\r\nContact: <sip:callee@203.0.113.12>",
    )
    d.update_from_response(ok)
    assert d.confirmed
    assert [str(r.uri) for r in d.route_set] == ["sip:p9.example;lr"]
    assert str(d.remote_target) == "sip:callee@203.0.113.12"


def test_dialog_errors_carry_a_status() -> None:
    inv = request()
    no_tag = reply(inv, 200, to_tag=None, extra="Contact: <sip:x@203.0.113.9>")
    with pytest.raises(DialogError) as err:
        Dialog.from_uac_response(inv, no_tag)
    assert err.value.status_hint == 400
    no_contact = request()
    no_contact.headers.remove("Contact")
    with pytest.raises(DialogError):
        Dialog.from_uas_request(no_contact, "ours", OUR_CONTACT)


def test_sips_dialog_is_secure() -> None:
    inv = request()
    inv.uri = "sips:+14155550101@198.51.100.1"
    assert Dialog.from_uas_request(inv, "ours", OUR_CONTACT).secure


def test_dialog_id_helper_both_sides() -> None:
    _inv, uac = uac_dialog()
    bye_out = uac.new_request("BYE", CountingIds())
    assert dialog_id(bye_out, is_uac=True) == uac.id
    # The callee receives the same BYE: its local tag is the To tag.
    assert dialog_id(bye_out, is_uac=False) == DialogId(uac.call_id, "callee", "f1")
    assert dialog_id(reply(bye_out, 200), is_uac=True) == uac.id
    broken = request()
    broken.headers.set("From", "<<<")
    assert dialog_id(broken, is_uac=False) is None


def test_tcp_contact_gives_tcp_via() -> None:
    d = Dialog.from_uas_request(
        request(), "ours", parse_uri("sip:pbx@198.51.100.1:5070;transport=tcp")
    )
    assert d.local_via == "SIP/2.0/TCP 198.51.100.1:5070"
