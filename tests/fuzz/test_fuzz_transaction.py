"""Fuzz target for the RFC 3261 §17 transaction layer (pbx.sip.transaction), server side.

A random script of peer input (requests and responses drawn from a small
space of branches, Call-IDs, CSeqs, tags and sent-by addresses, so they
collide and match: retransmissions, ACKs, CANCELs, stray responses, plus
damaged corpus messages that still parse), TU answers and clock steps.
Properties:
- `receive` and `handle_timer` never raise and return only events;
- the layer never holds more than `max_transactions`;
- every queued datagram serialises;
- once the TU has answered every request and the clock runs on for
  64*T1 + T4 and more, no transaction is left (memory is bounded in time).
"""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from pbx.sip.message import Message, Request, SipParseError, parse, serialize
from pbx.sip.peer import Peer
from pbx.sip.responses import make_response
from pbx.sip.transaction import (
    AckReceived,
    CancelReceived,
    MessageDropped,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionKey,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
)
from pbx.sip.transaction_machines import TransactionError

from ._support import corpus, fuzz_settings, mutated

EVENTS = (
    RequestReceived, CancelReceived, AckReceived, ResponseReceived, StrayResponse,
    TransactionTimedOut, TransactionTerminated, MessageDropped,
)  # fmt: skip
PEERS = [Peer("udp", "192.0.2.10", 5060), Peer("udp", "192.0.2.11", 5062),
         Peer("tcp", "192.0.2.10", 40001)]  # fmt: skip
MAX_TXNS = 6


@st.composite
def wire_messages(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER"]))
    branch = draw(st.sampled_from(["z9hG4bKa1", "z9hG4bKa2", "z9hG4bKb3", "legacy7", ""]))
    via_host = draw(st.sampled_from(["192.0.2.10:5060", "192.0.2.11", "[2001:db8::1]:5070"]))
    params = ";branch=" + branch if branch else ""
    params += draw(st.sampled_from(["", ";rport", ";rport=5099", ";received=192.0.2.99"]))
    call_id = draw(st.sampled_from(["c1", "c2"]))
    cseq = draw(st.sampled_from([1, 2]))
    to_tag = draw(st.sampled_from(["", ";tag=t1", ";tag=t2"]))
    head = (
        f"Via: SIP/2.0/UDP {via_host}{params}\r\n"
        f"From: <sip:+12125550123@192.0.2.10>;tag=f{cseq}\r\n"
        f"To: <sip:+14155550101@198.51.100.1>{to_tag}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
    )
    status = draw(st.sampled_from([0, 0, 0, 100, 180, 200, 404, 487, 503]))
    start = f"SIP/2.0 {status} X" if status else f"{method} sip:+14155550101@198.51.100.1 SIP/2.0"
    return f"{start}\r\n{head}\r\n".encode()


peer_input = st.one_of(wire_messages(), wire_messages(), mutated(corpus("sip", ".sip"), 2))
steps = st.lists(
    st.tuples(
        st.sampled_from(["recv", "recv", "recv", "answer", "tick"]),
        peer_input,
        st.sampled_from(PEERS),
        st.sampled_from([100, 180, 200, 486, 503]),
        st.floats(0, 40, allow_nan=False),
    ),
    max_size=40,
)


class Tu:
    """The fuzz TU: remembers what needs an answer and answers on request."""

    def __init__(self, layer: TransactionLayer) -> None:
        self.layer = layer
        self.open: dict[TransactionKey, Request] = {}

    def take(self, events: list[object]) -> None:
        for event in events:
            assert isinstance(event, EVENTS), event
            if isinstance(event, RequestReceived | CancelReceived):
                self.open[event.key] = event.request
        assert len(self.layer) <= MAX_TXNS
        for out in self.layer.datagrams_to_send():
            serialize(out.message)

    def answer(self, status: int, now: float) -> None:
        for key, request in list(self.open.items()):
            if self.layer.state_of(key) is None or status >= 200:
                del self.open[key]
            if self.layer.state_of(key) is not None:
                with contextlib.suppress(TransactionError):  # TU misuse is refused, fine
                    self.layer.send_response(key, make_response(request, status, to_tag="s1"), now)
            break


def parsed(data: bytes) -> Message | None:
    try:
        return parse(data)
    except SipParseError:
        return None


@fuzz_settings()
@given(steps)
def test_random_peer_input_and_timers(script: list[tuple[str, bytes, Peer, int, float]]) -> None:
    layer = TransactionLayer(max_transactions=MAX_TXNS)
    tu, now = Tu(layer), 0.0
    for op, data, peer, status, dt in script:
        if op == "recv" and (msg := parsed(data)) is not None:
            tu.take(list(layer.receive(msg, peer, now)))
        elif op == "answer":
            tu.answer(status, now)
        else:
            now += dt
            tu.take(list(layer.handle_timer(now)))
    for key, request in list(tu.open.items()):  # the TU answers everything still open
        if layer.state_of(key) is not None:
            with contextlib.suppress(TransactionError):
                layer.send_response(key, make_response(request, 486, to_tag="s1"), now)
    end = now + 600.0
    for _ in range(10_000):
        deadline = layer.next_deadline()
        if deadline is None or deadline > end:
            break
        tu.take(list(layer.handle_timer(deadline)))
    assert len(layer) == 0, [layer.state_of(k) for k in tu.open]
