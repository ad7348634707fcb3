"""ng protocol: request encoding, reply parsing, and NgClient's cookies, timers and fail-over."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pbx.rtp.bencode import Encodable, decode, encode
from pbx.rtp.ng import (
    Address,
    Answer,
    CallStats,
    Command,
    Completed,
    Counters,
    Delete,
    Failure,
    MediaOptions,
    NgClient,
    NgError,
    Offer,
    Ping,
    Pong,
    Query,
    Refused,
    SdpReply,
    StatsReply,
    Transmit,
    encode_request,
    parse_reply,
    split_datagram,
)

A: Address = ("127.0.0.1", 2223)
B: Address = ("127.0.0.1", 2224)
C: Address = ("127.0.0.1", 2225)
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


def body_of(datagram: bytes) -> dict[bytes, object]:
    _cookie, body = split_datagram(datagram)
    value = decode(body)
    assert isinstance(value, dict)
    return dict(value)


def reply(cookie: str, value: Encodable) -> bytes:
    return cookie.encode() + b" " + encode(value)


# --- requests -----------------------------------------------------------------


def test_ping_matches_the_doc_example() -> None:
    assert encode_request(Ping(), "5323_1") == b"5323_1 d7:command4:pinge"


def test_offer_carries_b2bua_defaults() -> None:
    body = body_of(encode_request(Offer("c1", "ta", SDP), "k1"))
    assert body == {
        b"command": b"offer",
        b"call-id": b"c1",
        b"from-tag": b"ta",
        b"sdp": SDP,
        b"ICE": b"remove",
        b"replace": [b"origin"],
    }


def test_offer_options_map_to_documented_keys() -> None:
    options = MediaOptions(
        flags=("trust-address", "strict-source"),
        replace=(),
        ice=None,
        direction=("priv", "pub"),
        rtcp_mux=("demux",),
        transport_protocol="RTP/AVP",
        address_family="IP4",
        media_address="127.0.0.1",
        label="caller",
        extra={"command": "delete", "record call": "no"},
    )
    body = body_of(encode_request(Offer("c1", "ta", SDP, options, via_branch="z9hG4bK1"), "k"))
    assert body[b"command"] == b"offer"  # extra cannot override the command
    assert body[b"flags"] == [b"trust-address", b"strict-source"]
    assert body[b"direction"] == [b"priv", b"pub"]
    assert body[b"rtcp-mux"] == [b"demux"]
    assert body[b"transport-protocol"] == b"RTP/AVP"
    assert body[b"address family"] == b"IP4"
    assert body[b"media address"] == b"127.0.0.1"
    assert body[b"label"] == b"caller"
    assert body[b"record call"] == b"no"
    assert body[b"via-branch"] == b"z9hG4bK1"
    assert b"ICE" not in body
    assert b"replace" not in body


def test_answer_has_to_tag_and_no_direction() -> None:
    options = MediaOptions(direction=("priv", "pub"))
    body = body_of(encode_request(Answer("c1", "ta", "tb", SDP, options), "k"))
    assert body[b"command"] == b"answer"
    assert (body[b"from-tag"], body[b"to-tag"]) == (b"ta", b"tb")
    assert b"direction" not in body  # ng doc: meaningless in an answer


def test_delete_and_query_keys() -> None:
    assert body_of(encode_request(Delete("c1"), "k")) == {b"command": b"delete", b"call-id": b"c1"}
    body = body_of(encode_request(Delete("c1", "ta", flags=("fatal",), delete_delay=0), "k"))
    assert body == {
        b"command": b"delete",
        b"call-id": b"c1",
        b"from-tag": b"ta",
        b"flags": [b"fatal"],
        b"delete delay": 0,
    }
    query = body_of(encode_request(Query("c1", to_tag="tb"), "k"))
    assert query == {b"command": b"query", b"call-id": b"c1", b"to-tag": b"tb"}


def test_request_wire_is_canonical_bencode() -> None:
    wire = encode_request(Query("c1"), "k9")
    assert wire == b"k9 d7:call-id2:c17:command5:querye"


@pytest.mark.parametrize("cookie", ["", "a b", "é", "x" * 65, "tab\t"])
def test_bad_cookie_refused(cookie: str) -> None:
    with pytest.raises(NgError, match="cookie"):
        encode_request(Ping(), cookie)


def test_request_larger_than_a_datagram_refused() -> None:
    with pytest.raises(NgError, match="exceeds one datagram"):
        encode_request(Offer("c1", "ta", b"a" * 70000), "k")


# --- replies ------------------------------------------------------------------

QUERY_REPLY: dict[str, Encodable] = {  # shape of rtpengine 10.5's reply, trimmed
    "created": 1796162002,
    "last signal": 1796162003,
    "SSRC": {},
    "tags": {
        "ta": {
            "tag": "ta",
            "medias": [
                {
                    "index": 1,
                    "type": "audio",
                    "streams": [
                        {
                            "local port": 41018,
                            "endpoint": {"family": "IPv4", "address": "127.0.0.1", "port": 5000},
                            "flags": ["RTP", "filled"],
                            "stats": {"packets": 10, "bytes": 1720, "errors": 0},
                        },
                        {
                            "local port": 41019,
                            "flags": ["RTCP"],
                            "stats": {"packets": 1, "bytes": 52, "errors": 0},
                        },
                    ],
                }
            ],
        },
        "tb": {"tag": "tb", "medias": []},
    },
    "totals": {
        "RTP": {"packets": 20, "bytes": 3440, "errors": 1},
        "RTCP": {"packets": 1, "bytes": 52, "errors": 0},
    },
    "result": "ok",
}


def test_parse_query_reply_counters() -> None:
    parsed = parse_reply(Command.QUERY, encode(QUERY_REPLY))
    assert isinstance(parsed, StatsReply)
    stats = parsed.stats
    assert isinstance(stats, CallStats)
    assert stats.rtp == Counters(packets=20, bytes=3440, errors=1)
    assert stats.rtcp == Counters(packets=1, bytes=52, errors=0)
    assert (stats.created, stats.last_signal) == (1796162002, 1796162003)
    rtp, rtcp = stats.streams
    assert (rtp.tag, rtp.media_index, rtp.media_type, rtp.rtcp) == ("ta", 1, "audio", False)
    assert (rtp.local_port, rtp.endpoint) == (41018, ("127.0.0.1", 5000))
    assert rtp.counters == Counters(10, 1720, 0)
    assert (rtcp.rtcp, rtcp.endpoint, rtcp.counters.packets) == (True, None, 1)


def test_parse_delete_reply_without_totals_keeps_warning() -> None:
    wire = encode({"result": "ok", "warning": "Call-ID not found or tags didn't match"})
    assert parse_reply(Command.DELETE, wire) == StatsReply(
        None, "Call-ID not found or tags didn't match"
    )


@pytest.mark.parametrize(
    ("command", "value", "expected"),
    [
        (Command.PING, {"result": "pong"}, Pong()),
        (Command.PING, {"result": "ok"}, Pong()),
        (Command.OFFER, {"result": "error", "error-reason": "Unknown call-id"}, None),
        (Command.ANSWER, {"result": "ok", "sdp": "v=0\r\n"}, SdpReply(b"v=0\r\n")),
        (Command.OFFER, {"result": "ok", "sdp": "v=0", "warning": "w"}, SdpReply(b"v=0", "w")),
    ],
)
def test_parse_reply_results(command: Command, value: Encodable, expected: object) -> None:
    parsed = parse_reply(command, encode(value))
    if expected is None:
        assert parsed == Refused("Unknown call-id")
    else:
        assert parsed == expected


def test_error_without_reason_is_still_a_refusal() -> None:
    assert parse_reply(Command.QUERY, b"d6:result5:errore") == Refused("no error-reason")


@pytest.mark.parametrize(
    ("command", "body", "why"),
    [
        (Command.PING, b"junk", "garbled reply"),
        (Command.PING, b"le", "reply is not a dictionary"),
        (Command.PING, b"de", "result is not a string"),
        (Command.PING, b"d6:resulti1ee", "result is not a string"),
        (Command.QUERY, encode({"result": "pong"}), "unexpected result"),
        (Command.OFFER, encode({"result": "maybe"}), "unexpected result"),
        (Command.OFFER, encode({"result": "ok"}), "has no sdp"),
        (Command.ANSWER, encode({"result": "ok", "sdp": 5}), "has no sdp"),
        (Command.QUERY, encode({"result": "ok", "totals": []}), "totals is not a dictionary"),
        (
            Command.QUERY,
            encode({"result": "ok", "totals": {"RTP": {"packets": "many"}}}),
            "totals.RTP is not an integer",
        ),
        (
            Command.DELETE,
            encode({"result": "ok", "totals": {}, "tags": {"a": {"medias": 1}}}),
            "medias is not a list",
        ),
        (
            Command.DELETE,
            encode({"result": "ok", "totals": {}, "tags": {"a": {"medias": [{"streams": [1]}]}}}),
            "stream is not a dictionary",
        ),
    ],
)
def test_garbled_replies_raise_ng_error(command: Command, body: bytes, why: str) -> None:
    with pytest.raises(NgError, match=why):
        parse_reply(command, body)


@pytest.mark.parametrize(
    "data", [b"", b"nocookie", b" d6:result4:ponge", b"\xff\xfe x", b"a\x01 de"]
)
def test_split_datagram_needs_a_cookie(data: bytes) -> None:
    with pytest.raises(NgError, match="cookie"):
        split_datagram(data)


# --- NgClient -------------------------------------------------------------------


def pong(t: Transmit) -> bytes:
    return reply(t.cookie, {"result": "pong"})


def sdp_ok(t: Transmit) -> bytes:
    return reply(t.cookie, {"result": "ok", "sdp": "v=0\r\n"})


def run_until_done(
    client: NgClient, start: float
) -> tuple[list[tuple[float, Transmit]], Completed]:
    """Fire every deadline until the request completes; the (time, Transmit) log."""
    sent: list[tuple[float, Transmit]] = []
    now = start
    for _ in range(100):
        deadline = client.next_deadline()
        assert deadline is not None
        now = deadline
        for action in client.on_timer(now):
            if isinstance(action, Completed):
                return sent, action
            sent.append((now, action))
    raise AssertionError("never completed")


def test_request_then_reply_completes() -> None:
    client = NgClient([A, B], cookie_prefix="t-")
    first = client.request(Ping(), 10.0)
    assert (first.address, first.cookie, first.deadline) == (A, "t-2", 10.5)
    assert first.datagram == b"t-2 d7:command4:pinge"
    done = client.on_datagram(pong(first), A, 10.1)
    assert done == Completed(first.request_id, "t-2", A, Pong())
    assert client.next_deadline() is None
    assert client.on_timer(100.0) == []
    assert client.in_flight == 0


def test_cookies_are_fresh_per_request() -> None:
    client = NgClient([A])
    cookies = {client.request(Ping(), 0.0).cookie for _ in range(5)}
    assert len(cookies) == 5


def test_unknown_cookie_wrong_address_and_junk_are_ignored() -> None:
    client = NgClient([A])
    t = client.request(Ping(), 0.0)
    assert client.on_datagram(reply("other-7", {"result": "pong"}), A, 0.1) is None
    assert client.on_datagram(pong(t), B, 0.1) is None  # right cookie, wrong sender
    assert client.on_datagram(b"\x00\x01junk", A, 0.1) is None
    assert client.ignored == {"no cookie": 1, "unknown cookie": 1, "wrong address": 1}
    assert client.in_flight == 1
    assert client.on_datagram(pong(t), ("127.0.0.1", 2223, 0, 0), 0.2) is not None  # type: ignore[arg-type]


def test_retransmission_schedule_then_fail_over_then_timeout() -> None:
    client = NgClient([A, B], cookie_prefix="t-")
    first = client.request(Ping(), 0.0)
    assert client.on_timer(0.49) == []
    sent, done = run_until_done(client, 0.0)
    schedule = [(now, t.address, t.cookie) for now, t in sent]
    assert schedule == [
        (0.5, A, "t-2"),  # same cookie: rtpengine answers retransmissions from its cache
        (1.5, A, "t-2"),
        (3.5, B, "t-3"),  # fail-over: a new cookie for the next instance
        (4.0, B, "t-3"),
        (5.0, B, "t-3"),
    ]
    assert sent[0][1].datagram == first.datagram
    assert done.outcome == Failure(
        "timeout", "no reply from rtpengine at 127.0.0.1:2223, 127.0.0.1:2224 (3 tries each)"
    )
    assert done.request_id == first.request_id
    assert (done.address, done.cookie) == (B, "t-3")
    assert client.next_deadline() is None
    assert client.on_timer(1000.0) == []


def test_late_reply_from_abandoned_instance_is_ignored() -> None:
    client = NgClient([A, B])
    first = client.request(Offer("c1", "ta", SDP), 0.0)
    for now in (0.5, 1.5):
        client.on_timer(now)
    (second,) = client.on_timer(3.5)
    assert isinstance(second, Transmit)
    assert second.address == B
    assert client.on_datagram(sdp_ok(first), A, 3.6) is None
    done = client.on_datagram(sdp_ok(second), B, 3.7)
    assert done is not None
    assert done.outcome == SdpReply(b"v=0\r\n")


def test_down_instance_is_tried_last_until_down_for_passes() -> None:
    client = NgClient([A, B, C], down_for=30.0)
    client.request(Ping(), 0.0)
    for now in (0.5, 1.5):
        client.on_timer(now)
    (to_b,) = client.on_timer(3.5)  # A timed out: down until 33.5
    assert isinstance(to_b, Transmit)
    assert client.on_datagram(pong(to_b), B, 3.6) is not None
    assert client.request(Ping(), 4.0).address == B  # A is down: healthy B first
    assert client.request(Ping(), 33.5).address == A  # down_for passed: listed order again


def test_all_down_keeps_listed_order() -> None:
    client = NgClient([A, B, C], down_for=30.0)
    client.request(Ping(), 0.0)
    sent, _ = run_until_done(client, 0.0)
    assert [t.address for _, t in sent] == [A, A, B, B, B, C, C, C]
    assert client.request(Ping(), 11.0).address == A


def test_reply_clears_down_mark() -> None:
    client = NgClient([A, B])
    client.request(Ping(), 0.0, instance=A)
    run_until_done(client, 0.0)
    assert client.request(Ping(), 10.0).address == B
    probe = client.request(Ping(), 10.0, instance=A)
    assert client.on_datagram(pong(probe), A, 10.1) is not None
    assert client.request(Ping(), 10.2).address == A


def test_new_offer_binds_and_answer_follows_without_fail_over() -> None:
    client = NgClient([A, B])
    client.request(Offer("c1", "ta", SDP), 0.0)
    for now in (0.5, 1.5):
        client.on_timer(now)
    (to_b,) = client.on_timer(3.5)
    assert isinstance(to_b, Transmit)
    assert client.affinity("c1") == B
    assert client.on_datagram(sdp_ok(to_b), B, 3.6) is not None
    answer = client.request(Answer("c1", "ta", "tb", SDP), 5.0)
    assert answer.address == B
    sent, done = run_until_done(client, 5.0)
    assert {t.address for _, t in sent} == {B}  # never to A: A has no state for c1
    assert done.outcome == Failure(
        "timeout", "no reply from rtpengine at 127.0.0.1:2224 (3 tries each)"
    )
    assert client.affinity("c1") == B  # the call may still be there
    assert client.request(Query("c1"), 9.0).address == B
    assert client.request(Offer("c1", "ta", SDP), 9.0).address == B  # re-offer: same instance


def test_delete_goes_to_bound_instance_and_unbinds() -> None:
    client = NgClient([A, B])
    offer = client.request(Offer("c1", "ta", SDP), 0.0, instance=B)
    client.on_datagram(sdp_ok(offer), B, 0.1)
    assert client.affinity("c1") == B
    delete = client.request(Delete("c1", "ta"), 1.0)
    assert delete.address == B
    done = client.on_datagram(reply(delete.cookie, {"result": "ok"}), B, 1.1)
    assert done is not None
    assert done.outcome == StatsReply(None)
    assert client.affinity("c1") is None


def test_delete_timeout_unbinds_too() -> None:
    client = NgClient([A])
    offer = client.request(Offer("c1", "ta", SDP), 0.0)
    client.on_datagram(sdp_ok(offer), A, 0.1)
    client.request(Delete("c1"), 1.0)
    _, done = run_until_done(client, 1.0)
    assert isinstance(done.outcome, Failure)
    assert client.affinity("c1") is None


def test_refused_new_offer_unbinds_but_refused_reoffer_keeps() -> None:
    client = NgClient([A, B])
    t = client.request(Offer("c1", "ta", SDP), 0.0)
    done = client.on_datagram(reply(t.cookie, {"result": "error", "error-reason": "no"}), A, 0.1)
    assert done is not None
    assert done.outcome == Refused("no")
    assert client.affinity("c1") is None
    t = client.request(Offer("c2", "ta", SDP), 1.0)
    client.on_datagram(sdp_ok(t), A, 1.1)
    t = client.request(Offer("c2", "ta", SDP), 2.0)
    client.on_datagram(reply(t.cookie, {"result": "error", "error-reason": "no"}), A, 2.1)
    assert client.affinity("c2") == A


def test_garbled_reply_completes_with_failure_and_no_fail_over() -> None:
    client = NgClient([A, B])
    t = client.request(Offer("c1", "ta", SDP), 0.0)
    done = client.on_datagram(t.cookie.encode() + b" d6:result2:ok", A, 0.1)
    assert done is not None
    assert isinstance(done.outcome, Failure)
    assert done.outcome.kind == "garbled"
    assert "unterminated dictionary" in done.outcome.message
    assert "127.0.0.1:2223" in done.outcome.message
    assert client.affinity("c1") is None
    assert client.next_deadline() is None


def test_unbound_answer_tries_instances_in_order_without_binding() -> None:
    client = NgClient([A, B])
    client.request(Answer("c9", "ta", "tb", SDP), 0.0)
    sent, _ = run_until_done(client, 0.0)
    assert [t.address for _, t in sent] == [A, A, B, B, B]
    assert client.affinity("c9") is None


def test_cancel_stops_retransmissions_and_unbinds_a_new_call() -> None:
    client = NgClient([A])
    t = client.request(Offer("c1", "ta", SDP), 0.0)
    client.cancel(t.request_id)
    client.cancel(t.request_id)  # twice is harmless
    assert client.next_deadline() is None
    assert client.on_timer(10.0) == []
    assert client.affinity("c1") is None
    assert client.on_datagram(sdp_ok(t), A, 0.2) is None


def test_pinned_instance_does_not_fail_over() -> None:
    client = NgClient([A, B])
    client.request(Ping(), 0.0, instance=B)
    sent, done = run_until_done(client, 0.0)
    assert {t.address for _, t in sent} == {B}
    assert isinstance(done.outcome, Failure)


def test_bounds() -> None:
    client = NgClient([A], max_pending=2, max_calls=2)
    client.request(Ping(), 0.0)
    client.request(Ping(), 0.0)
    with pytest.raises(NgError, match="2 requests already in flight"):
        client.request(Ping(), 0.0)
    client = NgClient([A], max_calls=2)
    for n in range(3):
        t = client.request(Offer(f"c{n}", "ta", SDP), 0.0)
        client.on_datagram(sdp_ok(t), A, 0.0)
    assert [client.affinity(f"c{n}") for n in range(3)] == [None, A, A]  # oldest dropped
    client.forget("c2")
    assert client.affinity("c2") is None


def test_unsendable_request_leaves_nothing_behind() -> None:
    client = NgClient([A])
    with pytest.raises(NgError, match="exceeds one datagram"):
        client.request(Offer("c1", "ta", b"x" * 70000), 0.0)
    assert client.in_flight == 0
    assert client.next_deadline() is None


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"instances": []}, "no rtpengine instances"),
        ({"intervals": ()}, "intervals"),
        ({"intervals": (0.5, 0.0)}, "intervals"),
        ({"cookie_prefix": "a b"}, "space"),
    ],
)
def test_client_config_errors(kwargs: dict[str, object], why: str) -> None:
    args: dict[str, object] = {"instances": [A], **kwargs}
    with pytest.raises(NgError, match=why):
        NgClient(**args)  # type: ignore[arg-type]


# --- purity ---------------------------------------------------------------------

PBX = Path(__file__).resolve().parents[2] / "pbx"
FORBIDDEN = {"asyncio", "socket", "time", "aiosqlite", "structlog", "selectors", "threading"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", ["pbx.rtp.bencode", "pbx.rtp.ng"])
def test_ng_core_is_pure_transitively(module: str) -> None:
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        base = PBX.parent / name.replace(".", "/")
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if not path.exists():
            continue
        for imported in _imports(path):
            assert imported.split(".")[0] not in FORBIDDEN, f"{name} imports {imported}"
            if imported.startswith("pbx"):
                todo.append(imported)
    assert "pbx.errors" in seen
