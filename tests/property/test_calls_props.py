"""Property tests of the call controller: random plausible event sequences (hypothesis).

Whatever order the peers, timers and media events arrive in, the `Call` never
raises, answers the caller's INVITE at most once with a final response and
never after it, and once the call has ended its record is final and exactly
one `FinishRecord` was emitted; `Finished` comes only with nothing pending.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.call.model import (
    Action,
    Finished,
    FinishRecord,
    MediaFailed,
    MediaTimedOut,
    SendRequest,
    SendResponse,
    Shutdown,
)
from pbx.sip.auth import Credentials
from pbx.sip.transaction import StrayResponse, TransactionTimedOut
from pbx.sip.transaction_machines import Timer
from tests.calls_support import CALLEES, RELAY, Harness, make_call, sdp, target

STATUSES = (100, 180, 183, 200, 202, 302, 401, 404, 407, 408, 480, 486, 487, 500, 503, 600, 603)
# answers and ringing are likelier than any one failure, as on a real trunk
WEIGHTED = (*STATUSES, 180, 180, 183, 200, 200, 200, 200)
CHALLENGE = ("WWW-Authenticate", 'Digest realm="r", nonce="n", qop="auth"')
PLANS = (
    ((0,),),
    ((0,), (1,)),
    ((0, 1),),
    ((0, 1), (2,)),
    ((0,), (1,), (2,)),
)


@dataclass(frozen=True)
class Resp:
    branch: int
    status: int
    other_tag: bool
    contact: bool
    sdp_body: bool


@dataclass(frozen=True)
class Reply:
    index: int
    status: int


@dataclass(frozen=True)
class Simple:
    name: str
    arg: float = 0.0


responses = st.builds(
    Resp,
    st.sampled_from((0, 0, 0, 1, 1, 2, 3)),
    st.sampled_from(WEIGHTED),
    st.integers(0, 5).map(lambda n: n == 0),  # mostly the branch's own UA
    st.integers(0, 5).map(lambda n: n != 0),  # mostly with Contact
    st.integers(0, 5).map(lambda n: n != 0),  # mostly with SDP
)
replies = st.builds(Reply, st.integers(0, 20), st.sampled_from((100, 200, 481, 487, 488, 500)))
benign = st.one_of(
    st.builds(Simple, st.just("tick"), st.floats(0.0, 20.0)),
    st.builds(Simple, st.just("timer_b"), st.integers(0, 3).map(float)),
    st.builds(Simple, st.just("stray"), st.integers(0, 3).map(float)),
    st.sampled_from(
        [
            Simple("media_opened"),
            Simple("reinvite_caller"),
            Simple("reinvite_callee"),
            Simple("info_caller"),
            Simple("options_callee"),
            Simple("message_caller"),
            Simple("timeout_pending"),
        ]
    ),
)
# events that end the call: rarer, so that most sequences get to talk first
ending = st.sampled_from(
    [
        Simple("media_failed"),
        Simple("media_timeout"),
        Simple("shutdown"),
        Simple("cancel"),
        Simple("bye_caller"),
        Simple("bye_callee"),
        Simple("timer_l"),
    ]
)
# weights by hand: st.one_of flattens nested one_ofs, which would drown the responses
KINDS: dict[str, st.SearchStrategy[Resp | Reply | Simple]] = {
    "response": responses,
    "reply": replies,
    "benign": benign,
    "ending": ending,
}
WEIGHTS = ("response",) * 6 + ("reply",) * 2 + ("benign",) * 3 + ("ending",)
events = st.lists(
    st.sampled_from(WEIGHTS).flatmap(KINDS.__getitem__),
    min_size=3,
    max_size=40,
)


def apply(h: Harness, event: Resp | Reply | Simple) -> list[Action]:
    """Feed one generated event; events that make no sense right now are skipped."""
    branches = h.call.branches
    match event:
        case Resp(index, status, other_tag, contact, sdp_body):
            if index >= len(branches):
                return []
            extra = [CHALLENGE] if status in (401, 407) else []
            if status == 407:
                extra = [("Proxy-Authenticate", CHALLENGE[1])]
            body = None if sdp_body else b""
            tag = "fork-ua" if other_tag else None
            return h.feed(
                h.response(index, status, body=body, to_tag=tag, contact=contact, extra=extra),
                after=0.5,
            )
        case Reply(index, status):
            sent = [a.request for a in h.log if isinstance(a, SendRequest)]
            in_dialog = [r for r in sent if r.to.tag is not None or r.method == "CANCEL"]
            if not in_dialog:
                return []
            return h.feed(h.reply_to(in_dialog[index % len(in_dialog)], status), after=0.1)
        case Simple("tick", arg):
            return h.tick(h.now + arg)
        case Simple("timer_b", arg):
            if int(arg) >= len(branches):
                return []
            return h.feed(TransactionTimedOut(branches[int(arg)].key, Timer.B), after=1)
        case Simple("stray", arg):
            if int(arg) >= len(branches):
                return []
            response = h.response(int(arg), 200).response
            return h.feed(StrayResponse(response, CALLEES[int(arg)]))
        case Simple("media_opened"):
            return h.feed(RELAY)
        case Simple("media_failed"):
            return h.feed(MediaFailed("no ports"))
        case Simple("media_timeout"):
            return h.feed(MediaTimedOut(), after=1)
        case Simple("shutdown"):
            return h.feed(Shutdown())
        case Simple("cancel"):
            return h.caller_cancel(after=0.2)
        case Simple("bye_caller"):
            return h.caller_request("BYE", after=1)[1]
        case Simple("bye_callee"):
            return h.callee_request("BYE", after=1)[1] if h.call.winner else []
        case Simple("reinvite_caller"):
            return h.caller_request("INVITE", body=sdp("192.0.2.10", 16004))[1]
        case Simple("reinvite_callee"):
            if h.call.winner is None:
                return []
            return h.callee_request("INVITE", body=sdp(CALLEES[0].host, 41000))[1]
        case Simple("info_caller"):
            return h.caller_request("INFO", body=b"x", extra=["Content-Type: text/plain"])[1]
        case Simple("options_callee"):
            return h.callee_request("OPTIONS")[1] if h.call.winner else []
        case Simple("message_caller"):
            return h.caller_request("MESSAGE", body=b"hi", extra=["Content-Type: text/plain"])[1]
        case Simple("timer_l"):
            return h.feed(TransactionTimedOut(h.inbound_key, Timer.L), after=32)
        case Simple("timeout_pending"):
            if not h.call.pending:
                return []
            key = next(iter(h.call.pending))
            return h.feed(TransactionTimedOut(key, Timer.F if key.method != "INVITE" else Timer.B))
    return []


def check(h: Harness, batch: list[Action]) -> None:
    """The invariants after every event."""
    finals = [r for r in h.to_caller() if r.status >= 200]
    assert len(finals) <= 1, "a second final response to the caller's INVITE"
    inbound = [a for a in h.log if isinstance(a, SendResponse) and a.key == h.inbound_key]
    if finals:
        first_final = next(i for i, a in enumerate(inbound) if a.response.status >= 200)
        assert first_final == len(inbound) - 1, "a response to the INVITE after its final"
    finishes = [a for a in h.log if isinstance(a, FinishRecord)]
    assert len(finishes) <= 1
    if h.call.state == "ended":
        assert len(finishes) == 1, "the call ended without exactly one FinishRecord"
        assert finishes[0].record.is_final
        assert finishes[0].record.ended_at is not None
        assert h.call.record.is_final
        assert finals or h.call.inbound.answered
    else:
        assert not finishes
    if any(isinstance(a, Finished) for a in batch):
        assert h.call.finished
    if finals and finals[0].status == 200:
        assert h.call.winner is not None
    for action in batch:
        if isinstance(action, SendRequest) and action.request.method == "INVITE":
            new_leg = action.request.to.tag is None
            assert not (new_leg and h.call.state == "ended"), "dialing after the end"


@settings(max_examples=400, deadline=None)
@given(
    plan=st.sampled_from(PLANS),
    auth=st.booleans(),
    opening=st.sampled_from(("none", "media", "media", "answered")),
    sequence=events,
)
def test_random_event_sequences_keep_the_invariants(
    plan: tuple[tuple[int, ...], ...],
    auth: bool,
    opening: str,
    sequence: list[Resp | Reply | Simple],
) -> None:
    creds = Credentials("acct", "pw") if auth else None
    steps = [[target(i, creds=creds) for i in step] for step in plan]
    h = make_call(steps, ring_timeout=15)
    check(h, h.start())
    if opening != "none":
        check(h, h.feed(RELAY))
    if opening == "answered":  # a third of the runs start talking at once
        check(h, h.answer(0, 200, after=1))
        assert h.call.state == "answered"
    for event in sequence:
        check(h, apply(h, event))
    # drain: whatever happened, a shutdown and the timers end the call for good
    check(h, h.feed(Shutdown()))
    check(h, h.tick(h.now + 1000))
    assert h.call.state == "ended"
    assert h.call.next_deadline() is None


@settings(max_examples=200, deadline=None)
@given(
    statuses=st.lists(st.sampled_from((180, 183, 200, 486, 603, 408, 487)), max_size=12),
    which=st.lists(st.integers(0, 1), min_size=12, max_size=12),
)
def test_at_most_one_branch_wins(statuses: list[int], which: list[int]) -> None:
    h = make_call([[target(0), target(1)]])
    h.ringing()
    for status, index in zip(statuses, which, strict=False):
        check(h, h.answer(index, status, after=0.1))
    answered = [b for b in h.call.branches if b.state == "answered"]
    assert len(answered) <= 1
    if answered:
        assert h.call.winner is answered[0]
        assert h.call.record.destination == answered[0].target.destination
