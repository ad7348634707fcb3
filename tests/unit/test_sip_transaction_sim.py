"""Two transaction layers over a lossy in-memory network on a virtual clock.

A UAC layer and a UAS layer exchange messages through a fake network that
drops each datagram with probability `loss` (random.Random(seed)) and
delivers the rest 50 ms later. Minimal TUs answer at once (UAS: 200) and ACK
every 2xx (UAC). For each seed the test checks the RFC 3261 outcome exactly:
the request is retransmitted on the §17 schedule until an answer arrives;
the client transaction times out (B or F) at exactly 64*T1 if and only if
no response got through before then; the UAS's 2xx is retransmitted until an
ACK gets through, else Timer L reports it at exactly 64*T1 after the 2xx.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

import pytest

from pbx.sip.dialog import Dialog
from pbx.sip.ids import CountingIds
from pbx.sip.message import Request, Response
from pbx.sip.peer import Peer
from pbx.sip.transaction import (
    AckReceived,
    Event,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    Timer,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
)
from tests.sip_transaction_support import UAC, UAS, reply, request, wire

LATENCY = 0.05
END = 200.0
E_SCHEDULE = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
A_SCHEDULE = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]


@dataclass
class Side:
    peer: Peer
    layer: TransactionLayer = field(default_factory=TransactionLayer)
    events: list[tuple[float, Event]] = field(default_factory=list)
    sent: list[tuple[float, Request | Response]] = field(default_factory=list)
    got: list[tuple[float, Request | Response]] = field(default_factory=list)


class Sim:
    def __init__(self, seed: int, loss: float) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.uac = Side(UAC)
        self.uas = Side(UAS)
        self.queue: list[tuple[float, int, Side, Request | Response, Peer]] = []
        self.seq = 0
        self.ids = CountingIds(f"s{seed}")
        self.invite: Request | None = None

    def side_for(self, peer: Peer) -> Side:
        return self.uac if peer == UAC else self.uas

    def flush(self, side: Side, now: float) -> None:
        for out in side.layer.datagrams_to_send():
            self._transmit(side, out, now)

    def _transmit(self, side: Side, out: Outgoing, now: float) -> None:
        side.sent.append((now, out.message))
        if self.rng.random() < self.loss:
            return
        self.seq += 1
        dest = self.side_for(out.dest)
        heapq.heappush(self.queue, (now + LATENCY, self.seq, dest, wire(out.message), side.peer))

    def run(self) -> None:
        for _ in range(100_000):
            times = [t for t in self._deadlines() if t is not None]
            if not times or min(times) > END:
                return
            now = min(times)
            if self.queue and self.queue[0][0] == now:
                _, _, side, msg, src = heapq.heappop(self.queue)
                side.got.append((now, msg))
                self._tu(side, side.layer.receive(msg, src, now), now)
            else:
                for side in (self.uac, self.uas):
                    if side.layer.next_deadline() == now:
                        self._tu(side, side.layer.handle_timer(now), now)
            self.flush(self.uac, now)
            self.flush(self.uas, now)
        raise AssertionError("simulation did not settle")

    def _deadlines(self) -> list[float | None]:
        first = self.queue[0][0] if self.queue else None
        return [first, self.uac.layer.next_deadline(), self.uas.layer.next_deadline()]

    def _tu(self, side: Side, events: list[Event], now: float) -> None:
        side.events += [(now, e) for e in events]
        for event in events:
            if isinstance(event, RequestReceived):
                ok = reply(event.request, 200, extra="Contact: <sip:callee@198.51.100.1>")
                side.layer.send_response(event.key, ok, now)
            elif isinstance(event, ResponseReceived | StrayResponse):
                self._ack_if_2xx_to_invite(side, event.response)

    def _ack_if_2xx_to_invite(self, side: Side, response: Response) -> None:
        if self.invite is None or not 200 <= response.status < 300:
            return
        dialog = Dialog.from_uac_response(self.invite, response)
        side.layer.send_ack_or_stateless(dialog.ack_for_2xx(1, self.ids), UAS)


def _sends(side: Side, method: str) -> list[float]:
    return [t for t, m in side.sent if isinstance(m, Request) and m.method == method]


def _first_response_at(side: Side, minimum: int = 100) -> float | None:
    times = [t for t, m in side.got if isinstance(m, Response) and m.status >= minimum]
    return times[0] if times else None


def _timeouts(side: Side) -> list[tuple[float, Timer]]:
    return [(t, e.timer) for t, e in side.events if isinstance(e, TransactionTimedOut)]


def check_non_invite(seed: int, loss: float) -> str:
    sim = Sim(seed, loss)
    sim.uac.layer.send_request(request("OPTIONS"), UAS, 0.0)
    sim.flush(sim.uac, 0.0)
    sim.run()
    answered = _first_response_at(sim.uac)
    if answered is not None and answered < 32.0:
        assert _timeouts(sim.uac) == []
        assert _sends(sim.uac, "OPTIONS") == [t for t in E_SCHEDULE if t < answered]
        # Timer K: T4 after the first response, then the transaction is gone.
        ends = [t for t, e in sim.uac.events if isinstance(e, TransactionTerminated)]
        assert ends == [pytest.approx(answered + 5.0)]
        outcome = "completed"
    else:
        assert _timeouts(sim.uac) == [(32.0, Timer.F)]
        assert _sends(sim.uac, "OPTIONS") == E_SCHEDULE
        outcome = "timed out"
    arrivals = [t for t, m in sim.uas.got if isinstance(m, Request)]
    if arrivals:  # Timer J: 64*T1 after the UAS answered the first copy
        ends = [t for t, e in sim.uas.events if isinstance(e, TransactionTerminated)]
        assert ends == [pytest.approx(arrivals[0] + 32.0)]
        # Every copy that reached the UAS got the (same) 200 back.
        assert len([m for _, m in sim.uas.sent if isinstance(m, Response)]) == len(arrivals)
    assert len(sim.uac.layer) == len(sim.uas.layer) == 0
    return outcome


def check_invite(seed: int, loss: float) -> tuple[str, str]:
    sim = Sim(seed, loss)
    sim.invite = request()
    sim.uac.layer.send_request(sim.invite, UAS, 0.0)
    sim.flush(sim.uac, 0.0)
    sim.run()
    answered = _first_response_at(sim.uac)
    if answered is not None and answered < 32.0:
        assert (32.0, Timer.B) not in _timeouts(sim.uac)
        assert _sends(sim.uac, "INVITE") == [t for t in A_SCHEDULE if t < answered]
        client = "answered"
    else:
        assert _timeouts(sim.uac) == [(32.0, Timer.B)]
        assert _sends(sim.uac, "INVITE") == A_SCHEDULE
        client = "timed out"
    # Every 2xx that reached the UAC was ACKed (by the TU: RFC 6026 Accepted / stray).
    oks = [t for t, m in sim.uac.got if isinstance(m, Response) and m.status == 200]
    assert _sends(sim.uac, "ACK") == oks
    return client, _check_uas_2xx(sim)


def _check_uas_2xx(sim: Sim) -> str:
    ok_sends = [t for t, m in sim.uas.sent if isinstance(m, Response) and m.status == 200]
    invites = [t for t, m in sim.uas.got if isinstance(m, Request) and m.method == "INVITE"]
    if not invites:
        assert ok_sends == []
        return "never reached"
    first = invites[0]
    acks = [t for t, e in sim.uas.events if isinstance(e, AckReceived) and e.invite_key]
    schedule = [first + d for d in (0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5)]
    if acks and acks[0] < first + 32.0:
        assert _timeouts(sim.uas) == []
        assert ok_sends == pytest.approx([t for t in schedule if t <= acks[0]])
        return "acked"
    assert _timeouts(sim.uas) == [(pytest.approx(first + 32.0), Timer.L)]
    assert ok_sends == pytest.approx(schedule)
    return "no ack"


@pytest.mark.parametrize("loss", [0.3, 0.7])
def test_non_invite_under_loss_follows_the_rfc_timers(loss: float) -> None:
    outcomes = {check_non_invite(seed, loss) for seed in range(150)}
    if loss == 0.7:
        assert outcomes == {"completed", "timed out"}  # both branches exercised


@pytest.mark.parametrize("loss", [0.3, 0.7])
def test_invite_under_loss_follows_the_rfc_timers(loss: float) -> None:
    results = [check_invite(seed, loss) for seed in range(150)]
    clients = {c for c, _ in results}
    servers = {s for _, s in results}
    assert "answered" in clients
    if loss == 0.7:
        assert clients == {"answered", "timed out"}
        assert {"acked", "no ack"} <= servers


def test_total_loss_times_out_exactly() -> None:
    assert check_non_invite(0, 1.0) == "timed out"
    assert check_invite(0, 1.0) == ("timed out", "never reached")


def test_no_loss_completes_quickly() -> None:
    sim = Sim(0, 0.0)
    sim.invite = request()
    key = sim.uac.layer.send_request(sim.invite, UAS, 0.0)
    sim.flush(sim.uac, 0.0)
    sim.run()
    kinds = [type(e).__name__ for _, e in sim.uac.events]
    assert kinds == ["ResponseReceived", "ResponseReceived", "TransactionTerminated"]
    assert sim.uac.events[-1] == (pytest.approx(0.1 + 32.0), TransactionTerminated(key))
    assert [type(e).__name__ for _, e in sim.uas.events][:2] == ["RequestReceived", "AckReceived"]
