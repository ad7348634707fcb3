"""Call controller before answer: provisionals, the answer, hunting, timers, auth, CANCEL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pbx.call.branches import dialled
from pbx.call.model import (
    ArmMedia,
    CloseMedia,
    Finished,
    FinishRecord,
    SendRequest,
    SendResponse,
    SendStateless,
    SetMediaRemote,
    Shutdown,
    WriteRecord,
)
from pbx.records import Disposition
from pbx.rtp.sdp import parse_sdp
from pbx.sip.auth import Credentials
from pbx.sip.transaction import TransactionTimedOut
from pbx.sip.transaction_machines import Timer
from tests.calls_support import (
    CALLEES,
    OUR_HOST,
    RELAY,
    T0,
    Harness,
    kinds,
    make_call,
    of,
    requests,
    target,
)

CHALLENGE = ("WWW-Authenticate", 'Digest realm="trunk.example", nonce="abc123", qop="auth"')
PROXY_CHALLENGE = ("Proxy-Authenticate", 'Digest realm="proxy.example", nonce="n1"')
CREDS = Credentials("acct", "s3cret")


def statuses(h: Harness) -> list[int]:
    return [r.status for r in h.to_caller()]


# -- provisionals ------------------------------------------------------------------


def test_100_is_absorbed() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    assert h.answer(0, 100) == []


def test_180_is_relayed_to_the_caller_once() -> None:
    h = make_call([[target(0), target(1)]])
    h.ringing()
    first = h.answer(0, 180)
    assert [r.status for r in h.to_caller(first)] == [180]
    ringing = h.to_caller(first)[0]
    assert ringing.to.tag == h.call.inbound.to_tag
    assert ringing.contacts[0].uri.host == OUR_HOST
    assert not ringing.body
    assert h.answer(0, 180, after=1) == []
    assert h.answer(1, 180, after=1) == []  # another branch ringing: still one 180
    assert statuses(h) == [180]


def test_repeated_180s_do_not_restart_the_ring_timer() -> None:
    h = make_call([[target(0)]], ring_timeout=20)
    h.ringing()
    deadline = h.call.next_deadline()
    assert deadline == T0 + 20
    for _ in range(5):
        h.answer(0, 180, after=3)
    assert h.call.next_deadline() == deadline


def test_183_with_sdp_opens_early_media() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    actions = h.answer(0, 183)
    assert actions[0] == SetMediaRemote("outbound", CALLEES[0].host, 40000)
    progress = h.to_caller(actions)
    assert [r.status for r in progress] == [183]
    text = progress[0].body.decode()
    assert f"c=IN IP4 {OUR_HOST}" in text
    assert f"m=audio {RELAY.inbound[1]} " in text
    assert CALLEES[0].host not in text
    assert progress[0].content_type is not None
    assert h.call.inbound.early_media
    assert h.answer(0, 180) == []  # the caller already hears progress


def test_183_without_sdp_is_relayed_as_ringing() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    actions = h.answer(0, 183, body=b"")
    assert [r.status for r in h.to_caller(actions)] == [180]
    assert not of(actions, SetMediaRemote)


def test_183_with_bad_sdp_is_dropped() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    assert h.answer(0, 183, body=b"garbage") == []


def test_second_early_media_branch_is_not_relayed() -> None:
    h = make_call([[target(0), target(1)]])
    h.ringing()
    h.answer(0, 183)
    assert h.answer(1, 183) == []


# -- the answer --------------------------------------------------------------------


def test_2xx_acks_cancels_the_others_and_answers_the_caller() -> None:
    h = make_call([[target(0), target(1), target(2)]])
    h.ringing()
    h.answer(0, 180, after=1)  # ringing: will be CANCELled
    # branch 2 never sent a provisional: abandoned, no CANCEL (RFC 3261 §9.1)
    actions = h.answer(1, 200, after=4)
    assert kinds(actions) == [
        "SendStateless",
        "SendRequest",
        "SetMediaRemote",
        "SendResponse",
        "ArmMedia",
        "WriteRecord",
    ]
    ack = of(actions, SendStateless)[0]
    assert ack.message.method == "ACK"  # type: ignore[union-attr]
    assert ack.dest == CALLEES[1]
    assert ack.message.to.tag == "callee-1"
    assert ack.message.cseq.seq == 1
    cancel = requests(actions, "CANCEL")
    assert [c.dest for c in cancel] == [CALLEES[0]]
    assert cancel[0].request.branch == h.branch_invite(0).branch
    assert of(actions, SetMediaRemote) == [SetMediaRemote("outbound", CALLEES[1].host, 40002)]
    ok = h.to_caller(actions)[0]
    assert ok.status == 200
    assert ok.to.tag == h.call.inbound.to_tag
    assert ok.contacts[0].uri.host == OUR_HOST
    answer = parse_sdp(ok.body).endpoints()[0]
    assert answer is not None
    assert (answer.host, answer.port) == RELAY.inbound
    assert CALLEES[1].host not in ok.body.decode()
    record = of(actions, WriteRecord)[0].record
    assert record.disposition is Disposition.ANSWERED
    assert record.destination == "dest1"
    assert record.outbound_call_id == h.call.branches[1].call_id
    assert record.answered_at == "2023-11-14T22:13:25.000000Z"
    assert record.ring_seconds == 5.0
    assert [(a.target, a.status) for a in record.attempts] == [
        ("dest0", 487),
        ("dest2", 487),
        ("dest1", 200),
    ]
    # every attempt names what was dialled, not only the destination's name
    assert [a.dialled for a in record.attempts] == [target(i).uri for i in (0, 2, 1)]
    assert h.call.state == "answered"
    assert h.call.next_deadline() is None


def test_answer_sdp_origin_is_ours_and_stable_per_leg() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    early = h.to_caller(h.answer(0, 183))[0].body.decode()
    ok = h.to_caller(h.answer(0, 200))[0].body.decode()

    def origin(text: str) -> list[str]:
        return next(x for x in text.splitlines() if x.startswith("o=")).split()

    assert origin(early)[1] == origin(ok)[1]  # one session id per leg
    assert origin(early)[2] == origin(ok)[2]  # same SDP: version unchanged (RFC 3264 §8)
    assert origin(early)[0] == "o=pbx"


def test_late_2xx_from_another_branch_is_acked_and_byed() -> None:
    h = make_call([[target(0), target(1)]])
    h.ringing()
    h.answer(0, 180)
    h.answer(1, 180)
    h.answer(0, 200)
    late = h.answer(1, 200, after=0.1)
    assert kinds(late) == ["SendStateless", "SendRequest"]
    bye = requests(late, "BYE")[0]
    assert bye.dest == CALLEES[1]
    assert bye.request.to.tag == "callee-1"
    assert bye.request.call_id == h.call.branches[1].call_id
    assert statuses(h) == [180, 200]  # nothing more to the caller
    assert h.call.winner is h.call.branches[0]
    # its retransmission is only re-ACKed, never BYEd twice
    assert kinds(h.answer(1, 200)) == ["SendStateless"]
    # the BYE's answer closes it quietly
    assert h.feed(h.reply_to(bye.request, 200)) == []


def test_retransmitted_2xx_from_the_winner_is_only_re_acked() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    h.answer(0, 200)
    again = h.answer(0, 200, after=0.5)
    assert kinds(again) == ["SendStateless"]
    assert again[0].message.method == "ACK"  # type: ignore[union-attr]
    assert statuses(h) == [200]


def test_second_2xx_with_another_to_tag_is_acked_and_byed_once() -> None:
    """A forking proxy behind the callee: §13.2.2.4, ACK every 2xx, BYE the extra dialog."""
    h = make_call([[target(0)]])
    h.ringing()
    h.answer(0, 200)
    fork = h.answer(0, 200, to_tag="other-ua")
    assert kinds(fork) == ["SendStateless", "SendRequest"]
    assert fork[0].message.to.tag == "other-ua"  # type: ignore[union-attr]
    assert requests(fork, "BYE")[0].request.to.tag == "other-ua"
    assert kinds(h.answer(0, 200, to_tag="other-ua")) == ["SendStateless"]
    assert h.call.winner is h.call.branches[0]


def test_2xx_without_contact_fails_the_branch_and_hunting_goes_on() -> None:
    h = make_call([[target(0)], [target(1)]])
    h.ringing()
    actions = h.answer(0, 200, contact=False)
    assert [i.dest for i in requests(actions, "INVITE")] == [CALLEES[1]]
    assert h.call.branches[0].state == "failed"
    assert h.call.record.attempts[0].status == 502
    assert h.answer(0, 200, contact=False) == []  # its retransmissions too


def test_stray_2xx_for_the_winner_is_re_acked() -> None:
    from pbx.sip.transaction import StrayResponse

    h = make_call([[target(0)]])
    h.ringing()
    h.answer(0, 200)
    response = h.response(0, 200).response
    actions = h.feed(StrayResponse(response, CALLEES[0]))
    assert kinds(actions) == ["SendStateless"]
    assert h.feed(StrayResponse(h.response(0, 486).response, CALLEES[0])) == []


# -- hunting ------------------------------------------------------------------------


def test_busy_on_branch_1_rings_branch_2() -> None:
    h = make_call([[target(0)], [target(1)]], ring_timeout=15)
    h.ringing()
    actions = h.answer(0, 486, after=2)
    invites = requests(actions, "INVITE")
    assert [i.dest for i in invites] == [CALLEES[1]]
    assert h.call.next_deadline() == T0 + 2 + 15  # its own ring timeout
    assert statuses(h) == []
    assert h.call.record.attempts[0].status == 486
    h.answer(1, 200, after=3)
    assert statuses(h) == [200]
    assert [a.status for a in h.call.record.attempts] == [486, 200]


@pytest.mark.parametrize("status", [600, 603, 604, 606])
def test_6xx_stops_hunting(status: int) -> None:
    h = make_call([[target(0)], [target(1)]])
    h.ringing()
    actions = h.answer(0, status)
    assert not requests(actions, "INVITE")
    assert statuses(h) == [status]
    final = of(actions, FinishRecord)[0].record
    assert final.sip_status == status
    assert final.is_final


def test_6xx_in_a_simultaneous_step_stops_hunting_once_the_step_ends() -> None:
    h = make_call([[target(0), target(1)], [target(2)]])
    h.ringing()
    assert h.answer(0, 603) == []  # branch 1 still rings: another person may answer
    actions = h.answer(1, 486)
    assert not requests(actions, "INVITE")
    assert statuses(h) == [603]


def test_a_6xx_branch_does_not_stop_a_sibling_from_answering() -> None:
    h = make_call([[target(0), target(1)]])
    h.ringing()
    h.answer(0, 603)
    h.answer(1, 200)
    assert statuses(h) == [200]


def test_one_busy_branch_of_a_simultaneous_step_waits_for_the_others() -> None:
    h = make_call([[target(0), target(1)], [target(2)]])
    h.ringing()
    assert h.answer(0, 486) == []
    actions = h.answer(1, 480)
    assert [i.dest for i in requests(actions, "INVITE")] == [CALLEES[2]]


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        ((486, 404), 486),
        ((404, 500), 404),
        ((503, 503), 500),
        ((401, 302), 480),
        ((487, 410), 480),  # a CANCELled branch reads as no answer
    ],
)
def test_all_fail_answers_the_caller_with_routing_final_status(
    failures: tuple[int, int], expected: int
) -> None:
    h = make_call([[target(0)], [target(1)]])
    h.ringing()
    h.answer(0, failures[0])
    actions = h.answer(1, failures[1])
    assert statuses(h) == [expected]
    final = of(actions, FinishRecord)[0].record
    assert final.sip_status == expected
    assert [a.status for a in final.attempts] == list(failures)
    assert final.hangup_by == "system"
    assert of(actions, CloseMedia)
    assert of(actions, Finished)


def test_busy_everywhere_is_recorded_busy() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    actions = h.answer(0, 486, after=7)
    final = of(actions, FinishRecord)[0].record
    assert final.disposition is Disposition.BUSY
    assert final.ring_seconds == 7.0
    assert final.ended_at == "2023-11-14T22:13:27.000000Z"


def test_final_after_failure_is_ignored() -> None:
    h = make_call([[target(0)], [target(1)]])
    h.ringing()
    h.answer(0, 486)
    assert h.answer(0, 486) == []  # a retransmission must not hunt twice
    assert len(h.call.branches) == 2


# -- ring timeout and Timer B -----------------------------------------------------------


def test_ring_timeout_without_provisional_abandons_then_cancels_on_a_late_1xx() -> None:
    h = make_call([[target(0)], [target(1)]], ring_timeout=10)
    h.ringing()
    assert h.tick(T0 + 9.9) == []
    actions = h.tick(T0 + 10)
    assert not requests(actions, "CANCEL")  # RFC 3261 §9.1: no CANCEL before a 1xx
    assert [i.dest for i in requests(actions, "INVITE")] == [CALLEES[1]]
    assert h.call.branches[0].state == "abandoned"
    attempt = h.call.record.attempts[0]
    assert (attempt.status, attempt.reason) == (None, "ring timeout")
    late = h.answer(0, 180)
    assert [c.dest for c in requests(late, "CANCEL")] == [CALLEES[0]]
    assert h.answer(0, 180) == []  # one CANCEL only
    assert statuses(h) == []  # the abandoned branch's ringing is not relayed


def test_ring_timeout_with_provisional_cancels() -> None:
    h = make_call([[target(0)], [target(1)]], ring_timeout=10)
    h.ringing()
    h.answer(0, 180, after=1)
    actions = h.tick(T0 + 10)
    assert [c.dest for c in requests(actions, "CANCEL")] == [CALLEES[0]]
    assert [i.dest for i in requests(actions, "INVITE")] == [CALLEES[1]]
    assert h.call.branches[0].state == "cancelled"
    assert h.answer(0, 487) == []  # the CANCELled INVITE's final is absorbed


def test_ring_timeout_on_the_last_step_answers_480() -> None:
    h = make_call([[target(0)]], ring_timeout=10)
    h.ringing()
    h.answer(0, 180)
    actions = h.tick(T0 + 30)
    assert statuses(h) == [180, 480]
    final = of(actions, FinishRecord)[0].record
    assert final.disposition is Disposition.NO_ANSWER
    assert final.ring_seconds == 30.0


def test_handle_timer_before_any_deadline_does_nothing() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    assert h.tick(T0 + 1) == []
    assert h.call.branches[0].state == "calling"


def test_timer_b_counts_as_408_and_hunting_continues() -> None:
    h = make_call([[target(0)], [target(1)]])
    h.ringing()
    key = h.call.branches[0].key
    actions = h.feed(TransactionTimedOut(key, Timer.B), after=32)
    assert [i.dest for i in requests(actions, "INVITE")] == [CALLEES[1]]
    assert h.call.record.attempts[0].status == 408
    actions = h.feed(TransactionTimedOut(h.call.branches[1].key, Timer.B), after=32)
    assert statuses(h) == [408]


def test_timer_b_after_the_branch_ended_is_ignored() -> None:
    h = make_call([[target(0)], [target(1)]])
    h.ringing()
    h.answer(0, 486)
    assert h.feed(TransactionTimedOut(h.call.branches[0].key, Timer.B)) == []


# -- digest authentication ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "challenge", "header"),
    [(401, CHALLENGE, "Authorization"), (407, PROXY_CHALLENGE, "Proxy-Authorization")],
)
def test_challenge_with_credentials_re_invites(
    status: int, challenge: tuple[str, str], header: str
) -> None:
    h = make_call([[target(0, creds=CREDS)]])
    first = requests(h.ringing(), "INVITE")[0].request
    actions = h.answer(0, status, extra=[challenge])
    retry = requests(actions, "INVITE")
    assert len(retry) == 1
    again = retry[0].request
    assert retry[0].dest == CALLEES[0]
    assert again.cseq.seq == first.cseq.seq + 1
    assert again.branch != first.branch
    assert again.call_id == first.call_id
    assert again.from_.tag == first.from_.tag
    assert again.body == first.body
    value = again.headers.get(header)
    assert value is not None
    assert value.startswith("Digest ")
    assert 'username="acct"' in value
    assert h.call.branches[0].key.branch == again.branch
    assert statuses(h) == []
    h.answer(0, 200)
    assert statuses(h) == [200]
    assert [a.status for a in h.call.record.attempts] == [200]


def test_challenge_without_credentials_fails_the_branch() -> None:
    h = make_call([[target(0)], [target(1)]])
    h.ringing()
    actions = h.answer(0, 401, extra=[CHALLENGE])
    assert [i.dest for i in requests(actions, "INVITE")] == [CALLEES[1]]


def test_refused_credentials_fail_the_branch() -> None:
    h = make_call([[target(0, creds=CREDS)], [target(1)]])
    h.ringing()
    h.answer(0, 401, extra=[CHALLENGE])
    actions = h.answer(0, 401, extra=[CHALLENGE])  # same realm again, not stale: refused
    assert [i.dest for i in requests(actions, "INVITE")] == [CALLEES[1]]
    assert h.call.branches[0].state == "failed"
    assert h.call.record.attempts[0].status == 401


def test_refused_credentials_on_the_last_branch_answer_500() -> None:
    h = make_call([[target(0, creds=CREDS)]])
    h.ringing()
    h.answer(0, 407, extra=[PROXY_CHALLENGE])
    h.answer(0, 407, extra=[PROXY_CHALLENGE])
    assert statuses(h) == [500]  # routing: a lone 401/407 becomes 500 (ours to fix)


def test_challenge_without_a_usable_header_fails_the_branch() -> None:
    h = make_call([[target(0, creds=CREDS)]])
    h.ringing()
    h.answer(0, 401)
    assert statuses(h) == [500]


# -- CANCEL from the caller ---------------------------------------------------------------


def test_caller_cancel_before_answer() -> None:
    h = make_call([[target(0), target(1)]])
    h.ringing()
    h.answer(0, 180, after=2)
    actions = h.caller_cancel(after=1)
    responses = of(actions, SendResponse)
    assert responses[0].key.method == "CANCEL"
    assert responses[0].response.status == 200
    assert responses[1].key == h.inbound_key
    assert responses[1].response.status == 487
    assert responses[1].response.to.tag == h.call.inbound.to_tag
    assert [c.dest for c in requests(actions, "CANCEL")] == [CALLEES[0]]  # branch 1: no 1xx
    final = of(actions, FinishRecord)[0].record
    assert final.disposition is Disposition.CANCELLED
    assert final.hangup_by == "caller"
    assert final.sip_status == 487
    assert final.ring_seconds == 3.0
    assert [a.status for a in final.attempts] == [487, 487]
    assert kinds(actions)[-3:] == ["CloseMedia", "FinishRecord", "Finished"]
    assert h.call.finished
    # the branches' finals and a 2xx race afterwards
    assert h.answer(0, 487) == []
    race = h.answer(1, 200)
    assert kinds(race) == ["SendStateless", "SendRequest"]
    assert statuses(h) == [180, 487]


def test_caller_cancel_while_media_opens() -> None:
    h = make_call([[target(0)]])
    h.start()
    actions = h.caller_cancel()
    assert [r.status for r in h.to_caller(actions)] == [487]
    assert h.open_media() == []  # no INVITE goes out after the caller gave up
    assert not requests(h.log, "INVITE")


def test_caller_cancel_after_answer_gets_only_200() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    h.answer(0, 200)
    actions = h.caller_cancel()
    assert kinds(actions) == ["SendResponse"]
    assert of(actions, SendResponse)[0].response.status == 200
    assert h.call.state == "answered"


def test_shutdown_before_answer_answers_503_and_cancels() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    h.answer(0, 180)
    actions = h.feed(Shutdown())
    assert statuses(h) == [180, 503]
    assert [c.dest for c in requests(actions, "CANCEL")] == [CALLEES[0]]
    assert of(actions, FinishRecord)[0].record.disposition is Disposition.FAILED


def test_events_after_the_end_send_nothing_to_the_caller() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    h.answer(0, 486)
    for event in (h.response(0, 180), h.response(0, 486)):
        h.feed(event)
    h.feed(Shutdown())
    h.tick(T0 + 100)
    assert statuses(h) == [486]
    assert len(of(h.log, FinishRecord)) == 1
    assert not of(h.log, ArmMedia)


def test_send_request_actions_name_their_peer() -> None:
    h = make_call([[target(0), target(1)]])
    actions = h.ringing()
    for action in of(actions, SendRequest):
        assert action.dest.host in action.request.uri


def test_dialled_is_the_number_through_a_trunk_else_the_uri() -> None:
    direct = target(0)
    assert dialled(direct) == direct.uri  # sip: destinations and extension contacts
    assert dialled(replace(direct, trunk="carrier")) == "+14155550150"
