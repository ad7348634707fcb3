"""Call controller: start, media, and the outbound INVITEs it builds (pure, no sockets)."""

from __future__ import annotations

import pytest

from pbx.call.model import (
    CloseMedia,
    Finished,
    FinishRecord,
    MediaFailed,
    OpenMedia,
    SendRequest,
    SetMediaRemote,
    WriteRecord,
)
from pbx.records import Disposition
from pbx.rtp.sdp import parse_sdp
from tests.calls_support import (
    CALLEES,
    CALLER,
    CALLER_SDP,
    OUR_HOST,
    RELAY,
    TRACKING,
    caller_invite,
    kinds,
    make_call,
    of,
    requests,
    target,
)


def test_start_writes_the_ringing_record_then_opens_media() -> None:
    h = make_call([[target(0)]])
    actions = h.start()
    assert kinds(actions) == ["WriteRecord", "OpenMedia"]
    assert isinstance(actions[0], WriteRecord)
    assert actions[0].record.disposition is Disposition.RINGING
    assert isinstance(actions[1], OpenMedia)
    assert h.call.state == "media"
    assert h.call.next_deadline() is None  # nothing rings before media is bound


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 488),  # late offer: not supported
        (b"this is not sdp", 488),
        (b"v=0\r\no=x 1 1 IN IP4 192.0.2.10\r\ns=-\r\nt=0 0\r\n", 488),  # no m= line
    ],
)
def test_start_refuses_an_unusable_offer(body: bytes, status: int) -> None:
    h = make_call([[target(0)]], invite=caller_invite(body=body))
    actions = h.start()
    assert [r.status for r in h.to_caller(actions)] == [status]
    assert kinds(actions)[-3:] == ["CloseMedia", "FinishRecord", "Finished"]
    final = of(actions, FinishRecord)[0].record
    assert final.sip_status == status
    assert final.is_final
    assert final.hangup_by == "system"
    assert not of(actions, OpenMedia)
    assert h.call.finished


def test_start_without_a_contact_refuses_400() -> None:
    """We could never reach the caller in the dialog (RFC 3261 §8.1.1.8: INVITE needs Contact)."""
    h = make_call([[target(0)]], invite=caller_invite(contact=False))
    actions = h.start()
    assert [r.status for r in h.to_caller(actions)] == [400]
    assert of(actions, Finished)


def test_start_with_no_steps_answers_480_with_a_final_record() -> None:
    h = make_call([])
    actions = h.start()
    assert [r.status for r in h.to_caller(actions)] == [480]
    record = of(actions, FinishRecord)[0].record
    assert record.disposition is Disposition.NO_ANSWER
    assert record.ended_at is not None


def test_refusal_carries_our_to_tag() -> None:
    h = make_call([])
    response = h.to_caller(h.start())[0]
    assert response.to.tag == h.call.inbound.to_tag


def test_media_failed_answers_503_and_sends_nothing_out() -> None:
    h = make_call([[target(0)]])
    h.start()
    actions = h.feed(MediaFailed("no ports"))
    assert [r.status for r in h.to_caller(actions)] == [503]
    assert not of(actions, SendRequest)
    assert of(actions, FinishRecord)[0].record.disposition is Disposition.FAILED
    assert of(actions, CloseMedia)


def test_media_opened_twice_places_the_invites_once() -> None:
    h = make_call([[target(0)]])
    h.start()
    assert len(requests(h.open_media(), "INVITE")) == 1
    assert h.open_media() == []


def test_media_opened_before_start_is_ignored() -> None:
    h = make_call([[target(0)]])
    assert h.open_media() == []


def test_media_opened_tells_the_relay_the_callers_address_then_invites_each_target() -> None:
    h = make_call([[target(0), target(1), target(2)]])
    h.start()
    actions = h.open_media()
    assert actions[0] == SetMediaRemote("inbound", "192.0.2.10", 16000)
    invites = requests(actions, "INVITE")
    assert [i.dest for i in invites] == list(CALLEES[:3])
    assert [i.request.uri for i in invites] == [target(n).uri for n in range(3)]
    assert len({i.request.call_id for i in invites}) == 3
    assert len({i.request.from_.tag for i in invites}) == 3
    assert len({i.request.branch for i in invites}) == 3
    assert h.call.next_deadline() == pytest.approx(h.now + 20.0)


def test_only_the_first_step_is_dialed() -> None:
    h = make_call([[target(0)], [target(1)]])
    invites = requests(h.ringing(), "INVITE")
    assert [i.dest for i in invites] == [CALLEES[0]]


def test_outbound_sdp_is_anchored_at_the_relays_outbound_address() -> None:
    h = make_call([[target(0)]])
    invite = requests(h.ringing(), "INVITE")[0].request
    offer = parse_sdp(invite.body)
    assert invite.content_type is not None
    assert invite.content_type.mime == "application/sdp"
    text = invite.body.decode()
    assert f"c=IN IP4 {OUR_HOST}" in text
    assert f"m=audio {RELAY.outbound[1]} RTP/AVP 0 101" in text
    assert "192.0.2.10" not in text  # nothing of the caller's addresses crosses
    origin = next(line for line in text.splitlines() if line.startswith("o="))
    assert origin.split()[0] == "o=pbx"
    assert origin.split()[-1] == OUR_HOST
    assert "a=rtpmap:101 telephone-event/8000" in text  # lines we do not own pass
    endpoint = offer.endpoints()[0]
    assert endpoint is not None
    assert (endpoint.host, endpoint.port) == RELAY.outbound


def test_extra_streams_are_offered_rejected() -> None:
    body = CALLER_SDP + b"m=video 16002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    h = make_call([[target(0)]], invite=caller_invite(body=body))
    invite = requests(h.ringing(), "INVITE")[0].request
    assert "m=video 0 RTP/AVP 96" in invite.body.decode()


def test_outbound_invite_is_a_new_dialog_with_decremented_max_forwards() -> None:
    h = make_call([[target(0)]], max_forwards=42)
    caller = h.call.inbound.invite
    invite = requests(h.ringing(), "INVITE")[0].request
    assert invite.call_id != caller.call_id
    assert invite.from_.tag not in (None, caller.from_.tag)
    assert invite.to.tag is None
    assert str(invite.to.uri) == target(0).uri
    assert invite.cseq.seq == 1
    assert invite.cseq.method == "INVITE"
    assert invite.max_forwards == 41  # RFC 7332 §3: decremented across the B2BUA
    assert invite.vias[0].host == OUR_HOST
    assert invite.branch is not None
    assert invite.branch.startswith("z9hG4bK")
    assert invite.contacts[0].uri.host == OUR_HOST
    assert invite.headers.get("Record-Route") is None


def test_max_forwards_never_goes_below_zero() -> None:
    h = make_call([[target(0)]], max_forwards=0)
    invite = requests(h.ringing(), "INVITE")[0].request
    assert invite.max_forwards == 0


def test_caller_id_passes_through_by_default() -> None:
    h = make_call([[target(0)]])
    invite = requests(h.ringing(), "INVITE")[0].request
    assert invite.from_.uri.user == CALLER
    assert invite.from_.display == "Alice Example"
    assert invite.from_.uri.host == OUR_HOST


def test_present_tracking_number_replaces_the_from_user() -> None:
    h = make_call([[target(0)]], caller_id_user=TRACKING)
    invite = requests(h.ringing(), "INVITE")[0].request
    assert invite.from_.uri.user == TRACKING


def test_caller_without_display_name_gets_none() -> None:
    h = make_call([[target(0)]], invite=caller_invite(display=None))
    invite = requests(h.ringing(), "INVITE")[0].request
    assert invite.from_.display is None


def test_nothing_of_the_callers_request_crosses_wholesale() -> None:
    h = make_call([[target(0)]])
    invite = requests(h.ringing(), "INVITE")[0].request
    caller = h.call.inbound.invite
    assert all(v.branch != caller.branch for v in invite.vias)
    assert len(invite.vias) == 1
    assert "trunk" not in bytes(invite).decode().replace("trunk-tag", "")


def test_call_ids_cover_every_leg() -> None:
    h = make_call([[target(0), target(1)]])
    h.ringing()
    ids = h.call.call_ids
    assert h.call.inbound.invite.call_id in ids
    assert {b.call_id for b in h.call.branches} <= ids
    assert len(ids) == 3
