"""TransactionLayer: the four machines driven through messages on a virtual clock."""

from __future__ import annotations

import pytest

from pbx.sip.message import Request, Response
from pbx.sip.transaction import (
    AckReceived,
    CancelReceived,
    Event,
    MessageDropped,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    State,
    StrayResponse,
    Timer,
    TimerConfig,
    TransactionError,
    TransactionKey,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    response_destination,
)
from tests.sip_transaction_support import UAC, UAC_TCP, UAS, UAS_TCP, reply, request


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, Event]]:
    """Fire every timer up to `end`; (time, event) pairs."""
    out: list[tuple[float, Event]] = []
    for _ in range(10_000):
        deadline = layer.next_deadline()
        if deadline is None or deadline > end:
            return out
        out += [(deadline, e) for e in layer.handle_timer(deadline)]
    raise AssertionError("timer loop did not settle")


def send_times(layer: TransactionLayer, end: float, method: str) -> list[float]:
    """Times at which `layer` (re)sends a request `method`, from 0 to `end`."""
    times = [0.0] if any(_is(o, method) for o in layer.datagrams_to_send()) else []
    for _ in range(10_000):
        deadline = layer.next_deadline()
        if deadline is None or deadline > end:
            break
        layer.handle_timer(deadline)
        times += [deadline for o in layer.datagrams_to_send() if _is(o, method)]
    return times


def _is(out: Outgoing, method: str) -> bool:
    return isinstance(out.message, Request) and out.message.method == method


def statuses(layer: TransactionLayer) -> list[int]:
    return [o.message.status for o in layer.datagrams_to_send() if isinstance(o.message, Response)]


# -- INVITE client (RFC 3261 §17.1.1, RFC 6026) ------------------------------------


def test_ict_retransmits_on_timer_a_and_times_out_on_b() -> None:
    layer = TransactionLayer()
    key = layer.send_request(request(), UAS, 0.0)
    assert key == TransactionKey("z9hG4bKa1", "INVITE")
    assert layer.state_of(key) is State.CALLING
    # A: T1, doubling without a cap; B = 64*T1 = 32 s: 7 transmissions in all.
    assert send_times(layer, 31.9, "INVITE") == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    events = run_until(layer, 100.0)
    assert events == [
        (32.0, TransactionTimedOut(key, Timer.B)),
        (32.0, TransactionTerminated(key)),
    ]
    assert len(layer) == 0


def test_ict_on_reliable_transport_never_retransmits() -> None:
    layer = TransactionLayer()
    key = layer.send_request(request(transport="TCP"), UAS_TCP, 0.0)
    assert send_times(layer, 31.9, "INVITE") == [0.0]
    assert next(e for _, e in run_until(layer, 100)) == TransactionTimedOut(key, Timer.B)


def test_ict_provisional_stops_retransmissions_and_b() -> None:
    layer = TransactionLayer()
    inv = request()
    key = layer.send_request(inv, UAS, 0.0)
    ringing = reply(inv, 180)
    assert layer.receive(ringing, UAS, 0.2) == [ResponseReceived(ringing, key)]
    assert layer.state_of(key) is State.PROCEEDING
    assert layer.next_deadline() is None  # no A, no B in Proceeding (§17.1.1.2)
    again = reply(inv, 183)
    assert layer.receive(again, UAS, 1.0) == [ResponseReceived(again, key)]


@pytest.mark.parametrize("peer", [UAS, UAS_TCP])
def test_ict_acks_non_2xx_itself_and_waits_timer_d(peer: object) -> None:
    layer = TransactionLayer()
    reliable = peer is UAS_TCP
    inv = request(
        transport="TCP" if reliable else "UDP",
        extra="Route: <sip:proxy.example;lr>\r\n",
    )
    key = layer.send_request(inv, UAS_TCP if reliable else UAS, 0.0)
    layer.datagrams_to_send()
    busy = reply(inv, 486, to_tag="bt")
    assert layer.receive(busy, UAS, 0.3) == [ResponseReceived(busy, key)]
    [out] = layer.datagrams_to_send()
    ack = out.message
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.uri == inv.uri
    assert ack.branch == inv.branch  # §17.1.1.3: same branch as the INVITE
    assert ack.to.tag == "bt"
    assert ack.from_ == inv.from_
    assert (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
    assert ack.headers.get_all("Route") == ["<sip:proxy.example;lr>"]
    assert len(ack.vias) == 1
    # A retransmitted final is ACKed again and not passed up.
    assert layer.receive(busy, UAS, 0.4) == []
    assert [o.message for o in layer.datagrams_to_send()] == [ack]
    events = run_until(layer, 100)
    # Timer D: 32 s on UDP, 0 on TCP (§17.1.1.2).
    assert events == [(0.3 if reliable else 32.3, TransactionTerminated(key))]


def test_ict_accepted_passes_every_2xx_up_until_timer_m() -> None:
    layer = TransactionLayer()
    inv = request()
    key = layer.send_request(inv, UAS, 0.0)
    ok = reply(inv, 200)
    assert layer.receive(ok, UAS, 1.0) == [ResponseReceived(ok, key)]
    assert layer.state_of(key) is State.ACCEPTED
    assert layer.datagrams_to_send() == [Outgoing(inv, UAS)]  # the first send only: no ACK
    # RFC 6026 §7.2: retransmitted 2xx go up so the TU re-ACKs.
    assert layer.receive(ok, UAS, 2.0) == [ResponseReceived(ok, key)]
    assert layer.receive(reply(inv, 180), UAS, 2.1) == []
    assert run_until(layer, 100) == [(33.0, TransactionTerminated(key))]
    assert layer.receive(ok, UAS, 40.0) == [StrayResponse(ok, UAS)]


def test_ict_cancel_guard_ends_an_unanswered_invite() -> None:
    layer = TransactionLayer()
    inv = request()
    key = layer.send_request(inv, UAS, 0.0)
    layer.receive(reply(inv, 180), UAS, 0.1)
    cancel = request("CANCEL")
    cancel_key = layer.send_request(cancel, UAS, 10.0)
    assert cancel_key == TransactionKey("z9hG4bKa1", "CANCEL")
    layer.receive(reply(cancel, 200), UAS, 10.1)
    events = run_until(layer, 100)
    assert (42.0, TransactionTimedOut(key, Timer.CANCEL_GUARD)) in events
    assert (42.0, TransactionTerminated(key)) in events
    assert len(layer) == 0


def test_ict_final_after_cancel_clears_guard() -> None:
    layer = TransactionLayer()
    inv = request()
    key = layer.send_request(inv, UAS, 0.0)
    layer.receive(reply(inv, 180), UAS, 0.1)
    layer.send_request(request("CANCEL"), UAS, 1.0)
    layer.receive(reply(inv, 487), UAS, 1.2)
    events = [e for _, e in run_until(layer, 100)]
    assert TransactionTerminated(key) in events
    assert not any(isinstance(e, TransactionTimedOut) and e.key == key for e in events)


# -- non-INVITE client (RFC 3261 §17.1.2) --------------------------------------------


def test_nict_timer_e_caps_at_t2_then_f() -> None:
    layer = TransactionLayer()
    key = layer.send_request(request("OPTIONS"), UAS, 0.0)
    expected = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert send_times(layer, 31.9, "OPTIONS") == expected
    assert [e for _, e in run_until(layer, 100)] == [
        TransactionTimedOut(key, Timer.F),
        TransactionTerminated(key),
    ]


def test_nict_proceeding_retransmits_every_t2() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    key = layer.send_request(req, UAS, 0.0)
    layer.datagrams_to_send()
    layer.receive(reply(req, 100), UAS, 0.1)
    assert layer.state_of(key) is State.PROCEEDING
    # E was armed at 0 for 0.5 s; the first fire in Proceeding re-arms with T2.
    times = send_times(layer, 31.9, "OPTIONS")
    assert times == [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert next(e for _, e in run_until(layer, 100)) == TransactionTimedOut(key, Timer.F)


@pytest.mark.parametrize(("dest", "transport", "k"), [(UAS, "UDP", 5.0), (UAS_TCP, "TCP", 0.0)])
def test_nict_completed_absorbs_then_timer_k(dest: object, transport: str, k: float) -> None:
    layer = TransactionLayer()
    req = request("BYE", transport=transport)
    key = layer.send_request(req, dest, 0.0)  # type: ignore[arg-type]
    ok = reply(req, 200)
    assert layer.receive(ok, UAS, 1.0) == [ResponseReceived(ok, key)]
    assert layer.receive(ok, UAS, 1.5) == []
    assert run_until(layer, 100) == [(1.0 + k, TransactionTerminated(key))]


# -- INVITE server (RFC 3261 §17.2.1, RFC 6026) --------------------------------------


def test_ist_sends_100_at_once_and_absorbs_retransmissions() -> None:
    layer = TransactionLayer()
    inv = request()
    events = layer.receive(inv, UAC, 0.0)
    key = TransactionKey("z9hG4bKa1", "INVITE", "192.0.2.10:5060", server=True)
    assert events == [RequestReceived(inv, UAC, key)]
    [trying] = layer.datagrams_to_send()
    assert isinstance(trying.message, Response)
    assert trying.message.status == 100
    assert trying.dest == UAC
    assert trying.message.call_id == inv.call_id
    # A retransmitted INVITE gets the last response again, no event.
    assert layer.receive(request(), UAC, 0.5) == []
    assert statuses(layer) == [100]
    layer.send_response(key, reply(inv, 180), 1.0)
    layer.receive(request(), UAC, 1.5)
    assert statuses(layer) == [180, 180]


def test_ist_non_2xx_final_retransmits_on_g_until_ack_then_timer_i() -> None:
    layer = TransactionLayer()
    inv = request()
    [received] = layer.receive(inv, UAC, 0.0)
    assert isinstance(received, RequestReceived)
    layer.datagrams_to_send()
    layer.send_response(received.key, reply(inv, 486), 0.0)
    assert statuses(layer) == [486]
    assert layer.state_of(received.key) is State.COMPLETED
    assert run_until(layer, 3.6) == []
    assert statuses(layer) == [486, 486, 486]  # G at 0.5, 1.5, 3.5
    ack = request("ACK")
    assert layer.receive(ack, UAC, 4.0) == []  # absorbed (§17.2.1)
    assert layer.state_of(received.key) is State.CONFIRMED
    assert layer.receive(ack, UAC, 4.1) == []
    assert run_until(layer, 100) == [(9.0, TransactionTerminated(received.key))]  # I = T4
    assert statuses(layer) == []


def test_ist_timer_g_caps_at_t2_and_h_times_out() -> None:
    layer = TransactionLayer()
    inv = request()
    [received] = layer.receive(inv, UAC, 0.0)
    assert isinstance(received, RequestReceived)
    layer.send_response(received.key, reply(inv, 503), 0.0)
    layer.datagrams_to_send()
    times = []
    for _ in range(100):
        deadline = layer.next_deadline()
        if deadline is None:
            break
        events = layer.handle_timer(deadline)
        times += [deadline] * len(statuses(layer))
        if events:
            assert events == [
                TransactionTimedOut(received.key, Timer.H),
                TransactionTerminated(received.key),
            ]
            assert deadline == 32.0
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


def test_ist_2xx_retransmitted_until_ack_with_new_branch() -> None:
    layer = TransactionLayer()
    inv = request()
    [received] = layer.receive(inv, UAC, 0.0)
    assert isinstance(received, RequestReceived)
    layer.datagrams_to_send()
    ok = reply(inv, 200)
    layer.send_response(received.key, ok, 1.0)
    assert layer.state_of(received.key) is State.ACCEPTED
    run_until(layer, 4.0)
    assert statuses(layer) == [200, 200, 200]  # at 1.0, 1.5, 2.5 (then 4.5)
    assert layer.receive(request(), UAC, 4.1) == []  # INVITE retransmission absorbed
    assert statuses(layer) == []
    ack = request("ACK", branch="z9hG4bKack", to_tag="t1")
    assert layer.receive(ack, UAC, 4.2) == [AckReceived(ack, UAC, received.key)]
    assert layer.receive(ack, UAC, 4.3) == [AckReceived(ack, UAC, received.key)]
    # No more 2xx retransmissions; Timer L (64*T1 from the 2xx) ends it quietly.
    assert run_until(layer, 100) == [(33.0, TransactionTerminated(received.key))]
    assert statuses(layer) == []
    assert layer.receive(ack, UAC, 40.0) == [AckReceived(ack, UAC, None)]


def test_ist_2xx_never_acked_reports_timer_l() -> None:
    layer = TransactionLayer()
    inv = request()
    [received] = layer.receive(inv, UAC, 0.0)
    assert isinstance(received, RequestReceived)
    layer.send_response(received.key, reply(inv, 200), 0.0)
    assert run_until(layer, 100)[-2:] == [
        (32.0, TransactionTimedOut(received.key, Timer.L)),
        (32.0, TransactionTerminated(received.key)),
    ]


def test_ist_tcp_no_2xx_retransmission_and_zero_timer_i() -> None:
    layer = TransactionLayer()
    inv = request(transport="TCP")
    [received] = layer.receive(inv, UAC_TCP, 0.0)
    assert isinstance(received, RequestReceived)
    layer.send_response(received.key, reply(inv, 480), 0.0)
    assert [o.dest for o in layer.datagrams_to_send()] == [UAC_TCP, UAC_TCP]  # same connection
    assert run_until(layer, 10) == []
    layer.receive(request("ACK", transport="TCP"), UAC_TCP, 11.0)
    assert run_until(layer, 100) == [(11.0, TransactionTerminated(received.key))]


def test_ist_cancel_is_matched_and_left_to_the_tu() -> None:
    layer = TransactionLayer()
    [received] = layer.receive(request(), UAC, 0.0)
    assert isinstance(received, RequestReceived)
    cancel = request("CANCEL")
    [event] = layer.receive(cancel, UAC, 1.0)
    assert isinstance(event, CancelReceived)
    assert event.invite_key == received.key
    assert event.key == TransactionKey("z9hG4bKa1", "CANCEL", "192.0.2.10:5060", server=True)
    layer.datagrams_to_send()
    layer.send_response(event.key, reply(cancel, 200), 1.0)
    layer.send_response(received.key, reply(request(), 487), 1.0)
    assert statuses(layer) == [200, 487]


def test_unmatched_cancel_is_a_plain_request() -> None:
    layer = TransactionLayer()
    cancel = request("CANCEL", branch="z9hG4bKnone")
    [event] = layer.receive(cancel, UAC, 0.0)
    assert isinstance(event, RequestReceived)


# -- non-INVITE server (RFC 3261 §17.2.2) ----------------------------------------------


@pytest.mark.parametrize(("src", "transport", "j"), [(UAC, "UDP", 32.0), (UAC_TCP, "TCP", 0.0)])
def test_nist_lifecycle(src: object, transport: str, j: float) -> None:
    layer = TransactionLayer()
    bye = request("BYE", transport=transport, to_tag="t1", cseq=2)
    [received] = layer.receive(bye, src, 0.0)  # type: ignore[arg-type]
    assert isinstance(received, RequestReceived)
    assert layer.datagrams_to_send() == []  # no 100 for non-INVITE
    assert layer.receive(bye, src, 0.1) == []  # Trying absorbs  # type: ignore[arg-type]
    layer.send_response(received.key, reply(bye, 100), 0.2)
    layer.receive(bye, src, 0.3)  # type: ignore[arg-type]
    assert statuses(layer) == [100, 100]
    layer.send_response(received.key, reply(bye, 200), 1.0)
    layer.receive(bye, src, 1.1)  # type: ignore[arg-type]
    assert statuses(layer) == [200, 200]
    with pytest.raises(TransactionError):
        layer.send_response(received.key, reply(bye, 500), 1.2)
    assert run_until(layer, 100) == [(1.0 + j, TransactionTerminated(received.key))]


# -- transport rules: RFC 3261 §18.2, RFC 3581 ----------------------------------------


def test_received_and_rport_stamped_and_used() -> None:
    layer = TransactionLayer()
    nat = UAC.__class__("udp", "203.0.113.7", 40123)
    inv = request(via_host="10.0.0.5", rport=True)
    [received] = layer.receive(inv, nat, 0.0)
    assert isinstance(received, RequestReceived)
    top = received.request.vias[0]
    assert (top.received, top.rport) == ("203.0.113.7", 40123)
    [trying] = layer.datagrams_to_send()
    assert trying.dest == nat
    assert trying.message.vias[0].received == "203.0.113.7"


def test_received_without_rport_keeps_the_via_port() -> None:
    layer = TransactionLayer()
    src = UAC.__class__("udp", "203.0.113.7", 40123)
    layer.receive(request(via_host="pbx.example.com", via_port=5070), src, 0.0)
    [trying] = layer.datagrams_to_send()
    assert trying.dest == UAC.__class__("udp", "203.0.113.7", 5070)


def test_via_left_alone_when_sent_by_is_the_source() -> None:
    layer = TransactionLayer()
    inv = request()
    layer.receive(inv, UAC, 0.0)
    assert inv.vias[0].received is None
    assert response_destination(inv.vias[0], UAC) == UAC


def test_response_destination_defaults() -> None:
    inv = request(via_port=None)
    assert response_destination(inv.vias[0], UAC) == UAC  # port 5060 by default
    maddr = request(extra="")
    via = maddr.vias[0]
    via.params["maddr"] = "239.255.255.1"
    assert response_destination(via, UAC).host == "239.255.255.1"


# -- misuse and stray input ---------------------------------------------------------------


def test_tu_misuse_raises_transaction_error() -> None:
    layer = TransactionLayer()
    with pytest.raises(TransactionError):
        layer.send_request(request("ACK"), UAS, 0.0)
    layer.send_request(request(), UAS, 0.0)
    with pytest.raises(TransactionError):
        layer.send_request(request(), UAS, 0.0)  # same key
    no_branch = request("OPTIONS")
    no_branch.headers.set("Via", "SIP/2.0/UDP 192.0.2.10:5060")
    with pytest.raises(TransactionError):
        layer.send_request(no_branch, UAS, 0.0)
    with pytest.raises(TransactionError):
        layer.send_response(TransactionKey("z9hG4bKa1", "INVITE"), reply(request(), 200), 0.0)
    [received] = layer.receive(request("OPTIONS", branch="z9hG4bKo"), UAC, 0.0)
    assert isinstance(received, RequestReceived)
    with pytest.raises(TransactionError):
        layer.send_response(received.key, reply(request("OPTIONS"), 99), 0.0)


def test_stray_and_malformed_input_never_raises() -> None:
    layer = TransactionLayer()
    ok = reply(request(), 200)
    assert layer.receive(ok, UAS, 0.0) == [StrayResponse(ok, UAS)]
    two_vias = reply(request(extra="Via: SIP/2.0/UDP 192.0.2.99;branch=z9hG4bKx\r\n"), 200)
    [dropped] = layer.receive(two_vias, UAS, 0.0)
    assert isinstance(dropped, MessageDropped)
    broken = request("OPTIONS")
    broken.headers.set("CSeq", "not a cseq")
    [dropped] = layer.receive(broken, UAC, 0.0)
    assert isinstance(dropped, MessageDropped)
    broken.headers.remove("Via")
    [dropped] = layer.receive(broken, UAC, 0.0)
    assert isinstance(dropped, MessageDropped)
    ack = request("ACK", branch="z9hG4bKstray")
    assert layer.receive(ack, UAC, 0.0) == [AckReceived(ack, UAC, None)]
    assert len(layer) == 0


def test_transaction_limit_answers_503_statelessly() -> None:
    layer = TransactionLayer(max_transactions=1)
    layer.receive(request("OPTIONS", branch="z9hG4bK1"), UAC, 0.0)
    [dropped] = layer.receive(request("OPTIONS", branch="z9hG4bK2"), UAC, 0.0)
    assert isinstance(dropped, MessageDropped)
    assert statuses(layer) == [503]
    assert len(layer) == 1
    with pytest.raises(TransactionError):
        layer.send_request(request("OPTIONS", branch="z9hG4bK3"), UAS, 0.0)


def test_rfc2543_request_without_cookie_still_matches() -> None:
    layer = TransactionLayer()
    inv = request(branch="oldstyle")
    [received] = layer.receive(inv, UAC, 0.0)
    assert isinstance(received, RequestReceived)
    assert layer.receive(request(branch="oldstyle"), UAC, 0.1) == []  # retransmission
    layer.send_response(received.key, reply(inv, 404), 0.2)
    layer.receive(request("ACK", branch="oldstyle"), UAC, 0.3)
    assert layer.state_of(received.key) is State.CONFIRMED


def test_late_timer_call_keeps_the_rfc_schedule() -> None:
    layer = TransactionLayer()
    layer.send_request(request("OPTIONS"), UAS, 0.0)
    layer.datagrams_to_send()
    layer.handle_timer(2.0)  # late: E was due at 0.5 and 1.5
    assert len(layer.datagrams_to_send()) == 2
    assert layer.next_deadline() == 3.5


def test_custom_timer_values() -> None:
    layer = TransactionLayer(TimerConfig(t1=0.1, t2=0.4, t4=1.0))
    key = layer.send_request(request("OPTIONS"), UAS, 0.0)
    events = run_until(layer, 100)
    assert events[0] == (pytest.approx(6.4), TransactionTimedOut(key, Timer.F))


def test_heap_stays_bounded_under_churn() -> None:
    layer = TransactionLayer()
    now = 0.0
    for n in range(3000):
        req = request("OPTIONS", branch=f"z9hG4bKc{n}")
        layer.send_request(req, UAS, now)
        layer.receive(reply(req, 200), UAS, now + 0.01)  # E and F go stale, K is armed
        now += 0.01
        layer.handle_timer(now)
    assert len(layer._heap) <= 8 * len(layer) + 1024
    run_until(layer, now + 100)
    assert len(layer) == 0
    assert layer.created == layer.terminated == 3000
    assert layer.next_deadline() is None
