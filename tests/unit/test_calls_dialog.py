"""Call controller after answer: BYE, re-INVITE and other in-dialog requests, endings."""

from __future__ import annotations

import pytest

from pbx.call.model import (
    CloseMedia,
    Finished,
    FinishRecord,
    MediaLost,
    MediaTimedOut,
    SendRequest,
    SendResponse,
    SendStateless,
    SetMediaRemote,
    Shutdown,
)
from pbx.records import Disposition
from pbx.sip.message import Request
from pbx.sip.transaction import AckReceived, TransactionTimedOut
from pbx.sip.transaction_machines import Timer
from tests.calls_support import (
    CALLEES,
    OUR_HOST,
    RELAY,
    T0,
    TRUNK,
    Harness,
    kinds,
    make_call,
    of,
    requests,
    sdp,
    target,
)


def answered(*, talk_start: float = 4.0) -> Harness:
    h = make_call([[target(0)]])
    h.ringing()
    h.answer(0, 180, after=1)
    h.answer(0, 200, after=talk_start - 1)
    return h


def origin_of(body: bytes) -> list[str]:
    return next(x for x in body.decode().splitlines() if x.startswith("o=")).split()


def responses(actions: list, key: object) -> list[int]:  # type: ignore[type-arg]
    return [a.response.status for a in of(actions, SendResponse) if a.key == key]


# -- BYE --------------------------------------------------------------------------------


def test_bye_from_caller_ends_both_legs() -> None:
    h = answered()
    event, actions = h.caller_request("BYE", after=60)
    assert responses(actions, event.key) == [200]
    bye = requests(actions, "BYE")
    assert len(bye) == 1
    assert bye[0].dest == CALLEES[0]
    out = bye[0].request
    winner = h.call.branches[0]
    assert out.call_id == winner.call_id
    assert out.from_.tag == winner.invite.from_.tag
    assert out.to.tag == "callee-0"
    assert out.cseq.seq == winner.invite.cseq.seq + 1
    assert out.uri == "sip:callee0@198.51.100.20:5060"  # the callee's Contact (§12.2.1.1)
    final = of(actions, FinishRecord)[0].record
    assert final.hangup_by == "caller"
    assert final.disposition is Disposition.ANSWERED
    assert final.talk_seconds == 60.0
    assert final.ring_seconds == 4.0
    assert final.ended_at == "2023-11-14T22:14:24.000000Z"
    assert of(actions, CloseMedia)
    assert not of(actions, Finished)  # our BYE is still pending
    done = h.feed(h.reply_to(out, 200), after=0.05)
    assert done == [Finished()]
    assert h.call.finished


def test_bye_from_callee_ends_both_legs() -> None:
    h = answered()
    event, actions = h.callee_request("BYE", after=30)
    assert responses(actions, event.key) == [200]
    bye = requests(actions, "BYE")
    assert [b.dest for b in bye] == [TRUNK]
    out = bye[0].request
    assert out.call_id == h.call.inbound.invite.call_id
    assert out.from_.tag == h.call.inbound.to_tag  # we are the UAS of that dialog
    assert out.to.tag == "trunk-tag"
    assert out.uri == "sip:trunk@192.0.2.10:5060"
    final = of(actions, FinishRecord)[0].record
    assert final.hangup_by == "callee"
    assert final.talk_seconds == 30.0


def test_bye_timeout_still_finishes() -> None:
    h = answered()
    _, actions = h.caller_request("BYE")
    bye = requests(actions, "BYE")[0].request
    done = h.feed(TransactionTimedOut(h.call.builder.key_of(bye), Timer.F), after=32)
    assert done == [Finished()]


def test_second_bye_gets_200_and_nothing_else() -> None:
    h = answered()
    h.caller_request("BYE")
    event, actions = h.callee_request("BYE")
    assert kinds(actions) == ["SendResponse"]
    assert responses(actions, event.key) == [200]
    assert len(of(h.log, FinishRecord)) == 1


def test_bye_before_answer_from_the_caller_ends_the_call() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    h.answer(0, 180)
    event, actions = h.caller_request("BYE")
    assert responses(actions, event.key) == [200]
    assert responses(actions, h.inbound_key) == [487]
    assert requests(actions, "CANCEL")


def test_request_for_another_call_id_gets_481() -> None:
    h = answered()
    event, actions = h.caller_request("INFO")
    foreign = Request(event.request.method, event.request.uri, event.request.headers.copy())
    foreign.headers.set("Call-ID", "someone-else")
    from pbx.sip.transaction import RequestReceived

    actions = h.feed(RequestReceived(foreign, TRUNK, event.key))
    assert responses(actions, event.key) == [481]


# -- re-INVITE and other in-dialog requests ----------------------------------------------


def test_reinvite_from_caller_is_relayed_with_sdp_for_the_callee() -> None:
    h = answered()
    first_origin = origin_of(h.call.branches[0].invite.body)
    hold = sdp("192.0.2.10", 16000, version=2, direction="sendonly")
    event, actions = h.caller_request("INVITE", body=hold)
    assert of(actions, SetMediaRemote) == [SetMediaRemote("inbound", "192.0.2.10", 16000)]
    relayed = requests(actions, "INVITE")
    assert [r.dest for r in relayed] == [CALLEES[0]]
    out = relayed[0].request
    assert out.call_id == h.call.branches[0].call_id
    assert out.cseq.seq == 2
    text = out.body.decode()
    assert "a=sendonly" in text
    assert f"c=IN IP4 {OUR_HOST}" in text
    assert f"m=audio {RELAY.outbound[1]} " in text
    assert origin_of(out.body)[1] == first_origin[1]
    assert int(origin_of(out.body)[2]) == int(first_origin[2]) + 1  # changed: bumped
    assert out.headers.get("Contact") is not None
    # the callee answers; we ACK it ourselves and relay the answer back
    answer = sdp(CALLEES[0].host, 40000, version=2, direction="recvonly")
    back = h.feed(h.reply_to(out, 200, body=answer, to_tag="callee-0"))
    acks = of(back, SendStateless)
    assert len(acks) == 1
    assert acks[0].message.method == "ACK"  # type: ignore[union-attr]
    assert acks[0].message.cseq.seq == 2
    assert acks[0].dest == CALLEES[0]
    reply = of(back, SendResponse)
    assert [r.key for r in reply] == [event.key]
    assert reply[0].response.status == 200
    body = reply[0].response.body.decode()
    assert "a=recvonly" in body
    assert f"m=audio {RELAY.inbound[1]} " in body
    assert CALLEES[0].host not in body
    # a retransmitted 2xx of that re-INVITE is re-ACKed, nothing more
    again = h.feed(h.reply_to(out, 200, body=answer, to_tag="callee-0"))
    assert again == acks
    # the caller's ACK for our 200 is absorbed by us
    ack = Request("ACK", "sip:pbx@203.0.113.5:5060", event.request.headers.copy())
    assert h.feed(AckReceived(ack, TRUNK, event.key)) == []


def test_unchanged_reinvite_keeps_the_origin_version() -> None:
    h = answered()
    first = h.call.branches[0].invite.body
    _event, actions = h.caller_request("INVITE", body=h.call.inbound.invite.body)
    out = requests(actions, "INVITE")[0].request
    assert origin_of(out.body)[2] == origin_of(first)[2]  # RFC 3264 §8: no change, no bump


def test_reinvite_from_callee_is_relayed_to_the_caller() -> None:
    h = answered()
    ok_version = origin_of(h.to_caller()[-1].body)[2]
    offer = sdp(CALLEES[0].host, 40010, version=3, direction="sendonly")
    event, actions = h.callee_request("INVITE", body=offer)
    assert SetMediaRemote("outbound", CALLEES[0].host, 40010) in actions
    relayed = requests(actions, "INVITE")
    assert [r.dest for r in relayed] == [TRUNK]
    out = relayed[0].request
    assert out.call_id == h.call.inbound.invite.call_id
    assert out.from_.tag == h.call.inbound.to_tag
    assert f"m=audio {RELAY.inbound[1]} " in out.body.decode()
    assert int(origin_of(out.body)[2]) == int(ok_version) + 1
    back = h.feed(h.reply_to(out, 200, body=sdp("192.0.2.10", 16000, version=3)))
    assert [a.dest for a in of(back, SendStateless)] == [TRUNK]
    assert [r.key for r in of(back, SendResponse)] == [event.key]
    assert f"m=audio {RELAY.outbound[1]} " in of(back, SendResponse)[0].response.body.decode()


def test_refused_reinvite_is_relayed_back_without_our_ack() -> None:
    h = answered()
    event, actions = h.caller_request("INVITE", body=h.call.inbound.invite.body)
    out = requests(actions, "INVITE")[0].request
    back = h.feed(h.reply_to(out, 488))
    assert not of(back, SendStateless)  # the ICT ACKs a non-2xx itself (§17.1.1.3)
    assert responses(back, event.key) == [488]


def test_provisional_to_a_relayed_request_is_absorbed() -> None:
    h = answered()
    _, actions = h.caller_request("INVITE", body=h.call.inbound.invite.body)
    out = requests(actions, "INVITE")[0].request
    assert h.feed(h.reply_to(out, 100)) == []


def test_second_reinvite_while_one_is_pending_gets_491() -> None:
    h = answered()
    h.caller_request("INVITE", body=h.call.inbound.invite.body)
    event, actions = h.callee_request("INVITE", body=sdp(CALLEES[0].host, 40000))
    assert responses(actions, event.key) == [491]
    assert not requests(actions, "INVITE")
    event, actions = h.caller_request("UPDATE", body=h.call.inbound.invite.body)
    assert responses(actions, event.key) == [491]


def test_info_is_relayed_while_a_reinvite_is_pending() -> None:
    h = answered()
    h.caller_request("INVITE", body=h.call.inbound.invite.body)
    _, actions = h.caller_request(
        "INFO", body=b"Signal=5\r\nDuration=160\r\n", extra=["Content-Type: application/dtmf-relay"]
    )
    assert len(requests(actions, "INFO")) == 1


@pytest.mark.parametrize("method", ["INFO", "OPTIONS", "UPDATE"])
def test_in_dialog_requests_are_relayed_and_answered_back(method: str) -> None:
    h = answered()
    extra = ["Content-Type: application/dtmf-relay"] if method == "INFO" else []
    body = b"Signal=5\r\nDuration=160\r\n" if method == "INFO" else b""
    event, actions = h.caller_request(method, body=body, extra=extra)
    relayed = requests(actions, method)
    assert [r.dest for r in relayed] == [CALLEES[0]]
    out = relayed[0].request
    assert out.call_id == h.call.branches[0].call_id
    assert out.body == body  # not SDP: passed as is
    if method == "INFO":
        assert out.headers.get("Content-Type") == "application/dtmf-relay"
    back = h.feed(h.reply_to(out, 200))
    assert not of(back, SendStateless)
    assert responses(back, event.key) == [200]


def test_info_from_callee_goes_to_the_caller() -> None:
    h = answered()
    _event, actions = h.callee_request("INFO", body=b"x", extra=["Content-Type: text/plain"])
    assert [r.dest for r in requests(actions, "INFO")] == [TRUNK]


def test_relayed_request_that_times_out_gets_408() -> None:
    h = answered()
    event, actions = h.caller_request("OPTIONS")
    out = requests(actions, "OPTIONS")[0].request
    back = h.feed(TransactionTimedOut(h.call.builder.key_of(out), Timer.F), after=32)
    assert responses(back, event.key) == [408]
    # the next request is relayed again (nothing left pending)
    _, again = h.caller_request("INFO", body=b"x", extra=["Content-Type: text/plain"])
    assert requests(again, "INFO")


@pytest.mark.parametrize("method", ["MESSAGE", "REFER", "SUBSCRIBE", "PRACK"])
def test_unknown_in_dialog_method_gets_501(method: str) -> None:
    h = answered()
    event, actions = h.caller_request(method)
    assert kinds(actions) == ["SendResponse"]
    assert responses(actions, event.key) == [501]
    assert of(actions, SendResponse)[0].response.headers.get("Allow") is not None


def test_unmatched_cancel_gets_481() -> None:
    h = answered()
    event, actions = h.caller_request("CANCEL")
    assert responses(actions, event.key) == [481]


def test_reinvite_with_bad_sdp_gets_488() -> None:
    h = answered()
    event, actions = h.caller_request("INVITE", body=b"not sdp")
    assert responses(actions, event.key) == [488]
    assert not of(actions, SendRequest)


def test_in_dialog_request_before_answer_gets_481() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    event, actions = h.caller_request("INFO", body=b"x", extra=["Content-Type: text/plain"])
    assert responses(actions, event.key) == [481]


def test_relayed_answer_after_the_call_ended_still_reaches_its_sender_then_finishes() -> None:
    h = answered()
    event, actions = h.caller_request("INVITE", body=h.call.inbound.invite.body)
    out = requests(actions, "INVITE")[0].request
    _, bye_actions = h.callee_request("BYE")
    bye = requests(bye_actions, "BYE")[0].request
    assert not of(bye_actions, Finished)
    assert h.feed(h.reply_to(bye, 200)) == []  # the relayed re-INVITE is still pending
    back = h.feed(h.reply_to(out, 487))
    assert responses(back, event.key) == [487]
    assert back[-1] == Finished()


# -- endings ------------------------------------------------------------------------------


def test_media_timeout_byes_both_sides() -> None:
    h = answered()
    actions = h.feed(MediaTimedOut(), after=45)
    assert sorted(b.dest.host for b in requests(actions, "BYE")) == sorted(
        [TRUNK.host, CALLEES[0].host]
    )
    final = of(actions, FinishRecord)[0].record
    assert final.hangup_by == "system"
    assert final.sip_reason == "media timeout"
    assert final.talk_seconds == 45.0
    assert not of(actions, Finished)
    for bye in requests(actions, "BYE"):
        h.feed(h.reply_to(bye.request, 200))
    assert h.log[-1] == Finished()
    assert len(of(h.log, Finished)) == 1


def test_lost_media_byes_both_sides_with_the_reason() -> None:
    """A worker that died takes the call's media: both legs get BYE, the record says why."""
    h = answered()
    actions = h.feed(MediaLost("media_failed"), after=20)
    assert sorted(b.dest.host for b in requests(actions, "BYE")) == sorted(
        [TRUNK.host, CALLEES[0].host]
    )
    final = of(actions, FinishRecord)[0].record
    assert (final.hangup_by, final.sip_reason, final.talk_seconds) == (
        "system",
        "media_failed",
        20.0,
    )


def test_lost_media_before_answer_is_503_to_the_caller() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    actions = h.feed(MediaLost("media_failed"), after=1)
    assert [r.status for r in h.to_caller(actions)] == [503]
    assert of(actions, FinishRecord)[0].record.sip_reason == "media_failed"


def test_shutdown_after_answer_byes_both_sides() -> None:
    h = answered()
    actions = h.feed(Shutdown(), after=10)
    assert len(requests(actions, "BYE")) == 2
    assert of(actions, FinishRecord)[0].record.sip_reason == "shutdown"
    assert h.to_caller(actions) == []


def test_timer_l_on_our_200_byes_both_sides() -> None:
    """RFC 3261 §13.3.1.4: our 2xx never ACKed -> the UAS ends the dialog."""
    h = answered()
    actions = h.feed(TransactionTimedOut(h.inbound_key, Timer.L), after=32)
    assert len(requests(actions, "BYE")) == 2
    assert of(actions, FinishRecord)[0].record.hangup_by == "system"


def test_other_timeouts_on_the_inbound_key_are_ignored() -> None:
    h = answered()
    assert h.feed(TransactionTimedOut(h.inbound_key, Timer.H)) == []
    assert h.call.state == "answered"


def test_finished_only_when_no_transaction_is_pending() -> None:
    h = answered()
    actions = h.feed(MediaTimedOut())
    byes = requests(actions, "BYE")
    assert not h.call.finished
    assert h.feed(h.reply_to(byes[0].request, 200)) == []
    assert not h.call.finished
    assert h.feed(h.reply_to(byes[1].request, 481)) == [Finished()]
    assert h.call.finished


def test_record_times_follow_the_virtual_clock() -> None:
    h = answered(talk_start=12.5)
    h.caller_request("BYE", after=100.25)
    final = of(h.log, FinishRecord)[0].record
    assert final.started_at == "2023-11-14T22:13:20.000000Z"
    assert final.answered_at == "2023-11-14T22:13:32.500000Z"
    assert final.ended_at == "2023-11-14T22:15:12.750000Z"
    assert final.ring_seconds == 12.5
    assert final.talk_seconds == 100.25
    assert h.now == T0 + 112.75
