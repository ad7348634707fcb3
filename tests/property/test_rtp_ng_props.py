"""Properties of the ng codec and NgClient: round trips, no stray exceptions, bounded life."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.rtp.bencode import BencodeError, Value, decode, encode
from pbx.rtp.ng import (
    Address,
    Answer,
    Command,
    Completed,
    Delete,
    NgClient,
    NgError,
    Offer,
    Ping,
    Pong,
    Query,
    Refused,
    Request,
    SdpReply,
    StatsReply,
    Transmit,
    parse_reply,
)

values: st.SearchStrategy[Value] = st.recursive(
    st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.binary(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


T = TypeVar("T")


def attempt(fn: Callable[[], T], error: type[Exception]) -> tuple[T | None, str | None]:
    """(result, None), or (None, message) if `fn` raised `error`; anything else propagates."""
    try:
        return fn(), None
    except error as exc:
        return None, str(exc)


def is_one_line(message: str) -> bool:
    return "\n" not in message and 0 < len(message) < 200


@given(values)
def test_bencode_round_trip(value: Value) -> None:
    wire = encode(value)
    assert decode(wire) == value
    assert encode(decode(wire)) == wire  # canonical: sorted keys, one spelling


@given(st.binary(max_size=300))
def test_decode_arbitrary_bytes_value_or_bencode_error(data: bytes) -> None:
    value, error = attempt(lambda: decode(data), BencodeError)
    if error is not None:
        assert is_one_line(error)  # whatever the input
        return
    assert value is not None
    assert decode(encode(value)) == value  # whatever decodes is a real value


@given(values, st.data())
def test_decode_mutated_encodings_value_or_bencode_error(value: Value, data: st.DataObject) -> None:
    wire = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(wire)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "cut":
            del wire[pos:]
        elif action == "insert":
            wire[pos:pos] = data.draw(st.binary(min_size=1, max_size=3))
        elif pos < len(wire):
            wire[pos] = data.draw(st.sampled_from(b"ilde:0123456789-x"))
    try:
        decoded = decode(bytes(wire))
    except BencodeError:
        return
    assert decode(encode(decoded)) == decoded


@given(st.sampled_from(list(Command)), values | st.binary(max_size=200))
def test_parse_reply_typed_or_ng_error(command: Command, body: Value) -> None:
    raw = body if isinstance(body, bytes) else encode(body)
    reply, error = attempt(lambda: parse_reply(command, raw), NgError)
    if error is not None:
        assert is_one_line(error)
        return
    assert isinstance(reply, Pong | Refused | SdpReply | StatsReply)


leaf = st.integers(-5, 10**6) | st.sampled_from([b"RTP", b"RTCP", b"", b"ok", b"127.0.0.1"])
counters = (
    st.fixed_dictionaries({}, optional={b"packets": leaf, b"bytes": leaf, b"errors": leaf}) | values
)
stream = st.fixed_dictionaries(
    {},
    optional={
        b"local port": leaf,
        b"flags": st.lists(leaf, max_size=3) | leaf,
        b"endpoint": st.fixed_dictionaries({}, optional={b"address": leaf, b"port": leaf}) | leaf,
        b"stats": counters,
    },
)
media = st.fixed_dictionaries(
    {}, optional={b"index": leaf, b"type": leaf, b"streams": st.lists(stream, max_size=3) | leaf}
)
side = st.fixed_dictionaries({}, optional={b"medias": st.lists(media, max_size=2) | leaf})
reply_like = st.fixed_dictionaries(
    {b"result": st.sampled_from([b"ok", b"error", b"pong", b"junk"]) | leaf},
    optional={
        b"sdp": leaf,
        b"warning": leaf,
        b"error-reason": leaf,
        b"created": leaf,
        b"totals": st.fixed_dictionaries({}, optional={b"RTP": counters, b"RTCP": counters}) | leaf,
        b"tags": st.dictionaries(st.binary(max_size=4), side, max_size=2) | leaf,
    },
)


@given(st.sampled_from(list(Command)), reply_like)
def test_parse_reply_like_dicts_typed_or_ng_error(
    command: Command, body: dict[bytes, Value]
) -> None:
    reply, error = attempt(lambda: parse_reply(command, encode(body)), NgError)
    if error is not None:
        assert is_one_line(error)
        return
    assert isinstance(reply, Pong | Refused | SdpReply | StatsReply)
    if isinstance(reply, StatsReply) and reply.stats is not None:
        assert all(isinstance(s.counters.packets, int) for s in reply.stats.streams)


# --- NgClient simulation ----------------------------------------------------------

INSTANCES: list[Address] = [("127.0.0.1", 2223), ("127.0.0.1", 2224), ("127.0.0.1", 2225)]
INTERVALS = (0.5, 1.0, 2.0)
CALLS = ["c1", "c2", "c3"]


def make_request(kind: int, call: str) -> Request:
    options: list[Request] = [
        Ping(),
        Offer(call, "ta", b"v=0\r\n"),
        Answer(call, "ta", "tb", b"v=0\r\n"),
        Delete(call),
        Query(call),
    ]
    return options[kind]


REPLIES = {
    Command.PING: {"result": "pong"},
    Command.OFFER: {"result": "ok", "sdp": "v=0\r\n"},
    Command.ANSWER: {"result": "ok", "sdp": "v=0\r\n"},
    Command.DELETE: {"result": "ok"},
    Command.QUERY: {"result": "error", "error-reason": "Unknown call-id"},
}

ops = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.integers(0, 4), st.sampled_from(CALLS)),
        st.tuples(
            st.just("reply"),
            st.integers(0, 20),
            st.sampled_from(["ok", "garbled", "wrong-address", "stale"]),
        ),
        st.tuples(st.just("advance"), st.floats(0.0, 5.0)),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
    ),
    max_size=40,
)


@dataclass
class Sim:
    client: NgClient
    now: float = 0.0
    live: dict[int, Transmit] = field(default_factory=dict)  # request id -> last Transmit
    commands: dict[int, Command] = field(default_factory=dict)
    sends: dict[int, int] = field(default_factory=dict)
    old_cookies: list[tuple[str, Address]] = field(default_factory=list)
    ended: set[int] = field(default_factory=set)

    def sent(self, t: Transmit) -> None:
        assert t.request_id not in self.ended, "transmit after completion"
        previous = self.live.get(t.request_id)
        if previous is not None and previous.cookie != t.cookie:
            assert previous.address != t.address, "a new cookie only for a new instance"
            self.old_cookies.append((previous.cookie, previous.address))
        if previous is not None and previous.cookie == t.cookie:
            assert (previous.address, previous.datagram) == (t.address, t.datagram)
        self.sends[t.request_id] = self.sends.get(t.request_id, 0) + 1
        assert self.sends[t.request_id] <= len(INSTANCES) * len(INTERVALS)
        self.live[t.request_id] = t

    def done(self, c: Completed) -> None:
        assert c.request_id in self.live, "completed twice or never started"
        del self.live[c.request_id]
        self.ended.add(c.request_id)

    def step(self, actions: list[Transmit | Completed]) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                self.sent(action)
            else:
                self.done(action)

    def reply(self, index: int, kind: str) -> None:
        if not self.live:
            return
        rid = sorted(self.live)[index % len(self.live)]
        t = self.live[rid]
        body = encode(REPLIES[self.commands[rid]])
        if kind == "stale" and self.old_cookies:
            cookie, address = self.old_cookies[index % len(self.old_cookies)]
            assert self.client.on_datagram(cookie.encode() + b" " + body, address, self.now) is None
            return
        data = t.cookie.encode() + b" " + (body[:-1] if kind == "garbled" else body)
        source = ("127.0.0.9", 9) if kind == "wrong-address" else t.address
        result = self.client.on_datagram(data, source, self.now)
        if kind == "wrong-address":
            assert result is None
        else:
            assert result is not None
            assert result.request_id == rid
            self.done(result)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_client_never_retransmits_after_completion_and_always_ends(
    script: list[tuple[object, ...]],
) -> None:
    sim = Sim(NgClient(INSTANCES, intervals=INTERVALS))
    for op in script:
        if op[0] == "request":
            request = make_request(int(op[1]), str(op[2]))  # type: ignore[call-overload]
            t = sim.client.request(request, sim.now)
            sim.commands[t.request_id] = request.command
            sim.sent(t)
        elif op[0] == "reply":
            sim.reply(int(op[1]), str(op[2]))  # type: ignore[call-overload]
        elif op[0] == "advance":
            sim.now += float(op[1])  # type: ignore[arg-type]
            sim.step(sim.client.on_timer(sim.now))
        elif op[0] == "cancel" and sim.live:
            rid = sorted(sim.live)[int(op[1]) % len(sim.live)]  # type: ignore[call-overload]
            sim.client.cancel(rid)
            del sim.live[rid]
            sim.ended.add(rid)
    # Silence from here on: every request ends within the bounded schedule.
    limit = sim.now + len(INSTANCES) * sum(INTERVALS) + 1e-9
    while (deadline := sim.client.next_deadline()) is not None:
        assert deadline <= limit
        sim.now = deadline
        sim.step(sim.client.on_timer(sim.now))
    assert sim.live == {}
    assert sim.client.in_flight == 0
    assert sim.client.on_timer(sim.now + 1000.0) == []
