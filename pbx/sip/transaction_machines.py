"""The four RFC 3261 §17 transaction state machines as transition tables (pure).

Theory of operation
===================

Each machine (ICT, NICT, IST, NIST) is one table
``dict[(State, Input), (State, tuple[Effect, ...])]``. A transaction is a
(kind, state) pair plus its messages and timers; `step(kind, state, input)`
looks the pair up and returns the next state and the effects the
`TransactionLayer` (pbx.sip.transaction) must carry out, in order. Nothing
here touches a message: the layer turns messages and timer expiries into
`Input`s and turns `Effect`s into events and datagrams.

Inputs come from three places:

* the peer (``RECV_*``): a response to a client transaction, or a
  retransmitted request / ACK to a server transaction;
* the transaction user, the TU (``TU_*``): a response it sends through a
  server transaction;
* a timer (``TIMER_*``), named exactly as in RFC 3261 §17 and RFC 6026.

A pair missing from a table means "nothing happens" for peer and timer
input (late retransmissions, stale timers are absorbed: RFC 3261 §17 says
what to do with every message the peer may send, and anything else is
noise), but it is a TU bug for ``TU_*`` input (for example a 1xx after the
final response), so `step` raises `TransactionError` then. That is the only
exception this module raises.

Timers: an ``Arm(timer, Backoff)`` effect (re)starts a timer; when a
transaction changes state, every running timer that has no row in the new
state is cancelled (so the tables need no "cancel" effects: leaving Calling
stops A and B; NICT Proceeding keeps E and F because it has rows for both).
Retransmission timers (A, E, G and the 2xx retransmission of RFC 3261
§13.3.1.4) are armed only on unreliable transports (§17.1.1.2, §17.1.2.2,
§17.2.1); the wait timers D, I, J, K are zero on reliable transports.

RFC 6026 replaces "2xx terminates the INVITE transaction" with the
Accepted state in both INVITE machines: the ICT passes every 2xx
(retransmissions too) up so the TU can (re-)ACK, until Timer M; the IST
lets the 2xx be retransmitted and passes ACKs up until Timer L.

Decision (RFC is silent: §13.3.1.4 makes it the TU's job): the IST in
Accepted retransmits the 2xx itself (Timer ``RETRANSMIT_2XX``: T1, doubling,
capped at T2, unreliable transports only) until the layer sees the ACK, and
reports Timer L as a timeout if no ACK came (the TU should then BYE).

Decision (RFC 3261 §9.1 "SHOULD" made concrete): when the TU sends a CANCEL,
the layer arms ``CANCEL_GUARD`` (64*T1) on the INVITE client transaction;
if no final response has come by then the ICT terminates with a timeout.
Otherwise an ICT in Proceeding has no timer at all (Timer C is for proxies).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pbx.errors import PbxError


class TransactionError(PbxError):
    """Transaction-user misuse: unknown key, response in a wrong state, bad request."""


class Kind(enum.Enum):
    """Which of the four machines (RFC 3261 §17.1.1, §17.1.2, §17.2.1, §17.2.2)."""

    ICT = "INVITE client"
    NICT = "non-INVITE client"
    IST = "INVITE server"
    NIST = "non-INVITE server"


class State(enum.Enum):
    """Transaction states, named as in RFC 3261 §17 figures 5-8 and RFC 6026."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class Timer(enum.Enum):
    """RFC 3261 §17 / table 4 and RFC 6026 §8.11 timers."""

    A = "A"  # ICT request retransmit (unreliable)
    B = "B"  # ICT transaction timeout
    D = "D"  # ICT wait for response retransmits in Completed
    E = "E"  # NICT request retransmit (unreliable)
    F = "F"  # NICT transaction timeout
    G = "G"  # IST final response retransmit (unreliable)
    H = "H"  # IST wait for ACK
    I = "I"  # IST wait for ACK retransmits in Confirmed  # noqa: E741
    J = "J"  # NIST wait for request retransmits in Completed
    K = "K"  # NICT wait for response retransmits in Completed
    L = "L"  # IST wait in Accepted (RFC 6026)
    M = "M"  # ICT wait in Accepted (RFC 6026)
    # RFC 3261 §13.3.1.4: the UAS core's 2xx retransmission; unnamed in the RFC.
    RETRANSMIT_2XX = "2xx"
    # RFC 3261 §9.1: no final response 64*T1 after our CANCEL ends the INVITE.
    CANCEL_GUARD = "cancel guard"


class Input(enum.Enum):
    """What can happen to a transaction."""

    RECV_1XX = "receive 1xx"
    RECV_2XX = "receive 2xx"
    RECV_3XX_6XX = "receive 300-699"
    RECV_REQUEST = "receive request retransmission"
    RECV_ACK = "receive ACK"
    TU_1XX = "TU sends 1xx"
    TU_2XX = "TU sends 2xx"
    TU_3XX_6XX = "TU sends 300-699"
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"
    TIMER_RETRANSMIT_2XX = "2xx retransmission timer"
    TIMER_CANCEL_GUARD = "CANCEL guard timer"


TU_INPUTS = frozenset({Input.TU_1XX, Input.TU_2XX, Input.TU_3XX_6XX})
TIMER_INPUT = {timer: Input[f"TIMER_{timer.name}"] for timer in Timer}


class Backoff(enum.Enum):
    """How an armed timer's interval is chosen (RFC 3261 §17 and table 4)."""

    FIRST = "T1, the first retransmission interval"
    DOUBLE = "twice the last interval (Timer A: no cap)"
    DOUBLE_CAPPED = "min(2 x last interval, T2)"
    T2 = "T2"
    TIMEOUT = "64 x T1"
    WAIT_D = "at least 32 s unreliable, 0 reliable"
    WAIT_T4 = "T4 unreliable, 0 reliable"
    WAIT_J = "64 x T1 unreliable, 0 reliable"


@dataclass(frozen=True, slots=True)
class Arm:
    """Effect: (re)start `timer` with the interval `backoff` gives."""

    timer: Timer
    backoff: Backoff


class Do(enum.Enum):
    """Effects other than timers."""

    PASS_UP = "pass the message up to the TU"  # noqa: S105 - a transition effect name, not a password
    RETRANSMIT_REQUEST = "send the request again"
    SEND_ACK = "send the ACK for a non-2xx final response (§17.1.1.3)"
    RESEND_ACK = "send that ACK again"
    SEND_RESPONSE = "send the TU's response"
    RESEND_RESPONSE = "send the last response again"
    NOTE_ACK = "the 2xx was acknowledged: stop retransmitting it"
    REPORT_TIMEOUT = "tell the TU the transaction timed out"
    REPORT_TIMEOUT_IF_UNACKED = "tell the TU the 2xx was never ACKed"


Effect = Do | Arm
Row = tuple[State, tuple[Effect, ...]]
Table = dict[tuple[State, Input], Row]

S = State
I = Input  # noqa: E741

# RFC 3261 §17.1.1.2 figure 5, with RFC 6026 §7.2 figure 3 (Accepted).
ICT: Table = {
    (S.CALLING, I.TIMER_A): (S.CALLING, (Do.RETRANSMIT_REQUEST, Arm(Timer.A, Backoff.DOUBLE))),
    (S.CALLING, I.TIMER_B): (S.TERMINATED, (Do.REPORT_TIMEOUT,)),
    (S.CALLING, I.RECV_1XX): (S.PROCEEDING, (Do.PASS_UP,)),
    (S.CALLING, I.RECV_2XX): (S.ACCEPTED, (Do.PASS_UP, Arm(Timer.M, Backoff.TIMEOUT))),
    (S.CALLING, I.RECV_3XX_6XX): (
        S.COMPLETED,
        (Do.SEND_ACK, Do.PASS_UP, Arm(Timer.D, Backoff.WAIT_D)),
    ),
    (S.CALLING, I.TIMER_CANCEL_GUARD): (S.TERMINATED, (Do.REPORT_TIMEOUT,)),
    (S.PROCEEDING, I.RECV_1XX): (S.PROCEEDING, (Do.PASS_UP,)),
    (S.PROCEEDING, I.RECV_2XX): (S.ACCEPTED, (Do.PASS_UP, Arm(Timer.M, Backoff.TIMEOUT))),
    (S.PROCEEDING, I.TIMER_CANCEL_GUARD): (S.TERMINATED, (Do.REPORT_TIMEOUT,)),
    (S.PROCEEDING, I.RECV_3XX_6XX): (
        S.COMPLETED,
        (Do.SEND_ACK, Do.PASS_UP, Arm(Timer.D, Backoff.WAIT_D)),
    ),
    # RFC 6026 §7.2: 2xx retransmissions go up so the TU re-sends its ACK.
    (S.ACCEPTED, I.RECV_2XX): (S.ACCEPTED, (Do.PASS_UP,)),
    (S.ACCEPTED, I.TIMER_M): (S.TERMINATED, ()),
    # §17.1.1.2: a retransmitted final response is ACKed again, not passed up.
    (S.COMPLETED, I.RECV_3XX_6XX): (S.COMPLETED, (Do.RESEND_ACK,)),
    (S.COMPLETED, I.TIMER_D): (S.TERMINATED, ()),
}

# RFC 3261 §17.1.2.2 figure 6.
NICT: Table = {
    (S.TRYING, I.TIMER_E): (
        S.TRYING,
        (Do.RETRANSMIT_REQUEST, Arm(Timer.E, Backoff.DOUBLE_CAPPED)),
    ),
    (S.TRYING, I.TIMER_F): (S.TERMINATED, (Do.REPORT_TIMEOUT,)),
    (S.TRYING, I.RECV_1XX): (S.PROCEEDING, (Do.PASS_UP,)),
    (S.TRYING, I.RECV_2XX): (S.COMPLETED, (Do.PASS_UP, Arm(Timer.K, Backoff.WAIT_T4))),
    (S.TRYING, I.RECV_3XX_6XX): (S.COMPLETED, (Do.PASS_UP, Arm(Timer.K, Backoff.WAIT_T4))),
    (S.PROCEEDING, I.TIMER_E): (S.PROCEEDING, (Do.RETRANSMIT_REQUEST, Arm(Timer.E, Backoff.T2))),
    (S.PROCEEDING, I.TIMER_F): (S.TERMINATED, (Do.REPORT_TIMEOUT,)),
    (S.PROCEEDING, I.RECV_1XX): (S.PROCEEDING, (Do.PASS_UP,)),
    (S.PROCEEDING, I.RECV_2XX): (S.COMPLETED, (Do.PASS_UP, Arm(Timer.K, Backoff.WAIT_T4))),
    (S.PROCEEDING, I.RECV_3XX_6XX): (S.COMPLETED, (Do.PASS_UP, Arm(Timer.K, Backoff.WAIT_T4))),
    (S.COMPLETED, I.TIMER_K): (S.TERMINATED, ()),
}

# RFC 3261 §17.2.1 figure 7, with RFC 6026 §7.1 figure 5 (Accepted).
IST: Table = {
    (S.PROCEEDING, I.RECV_REQUEST): (S.PROCEEDING, (Do.RESEND_RESPONSE,)),
    (S.PROCEEDING, I.TU_1XX): (S.PROCEEDING, (Do.SEND_RESPONSE,)),
    (S.PROCEEDING, I.TU_2XX): (
        S.ACCEPTED,
        (
            Do.SEND_RESPONSE,
            Arm(Timer.L, Backoff.TIMEOUT),
            Arm(Timer.RETRANSMIT_2XX, Backoff.FIRST),
        ),
    ),
    (S.PROCEEDING, I.TU_3XX_6XX): (
        S.COMPLETED,
        (Do.SEND_RESPONSE, Arm(Timer.G, Backoff.FIRST), Arm(Timer.H, Backoff.TIMEOUT)),
    ),
    # RFC 6026 §8.5-8.7: the TU may re-send the 2xx; INVITE retransmissions are
    # absorbed; ACKs (matched by the layer, they carry a new branch) go up.
    (S.ACCEPTED, I.RECV_REQUEST): (S.ACCEPTED, ()),
    (S.ACCEPTED, I.TU_2XX): (S.ACCEPTED, (Do.SEND_RESPONSE,)),
    (S.ACCEPTED, I.RECV_ACK): (S.ACCEPTED, (Do.NOTE_ACK, Do.PASS_UP)),
    (S.ACCEPTED, I.TIMER_RETRANSMIT_2XX): (
        S.ACCEPTED,
        (Do.RESEND_RESPONSE, Arm(Timer.RETRANSMIT_2XX, Backoff.DOUBLE_CAPPED)),
    ),
    (S.ACCEPTED, I.TIMER_L): (S.TERMINATED, (Do.REPORT_TIMEOUT_IF_UNACKED,)),
    (S.COMPLETED, I.RECV_REQUEST): (S.COMPLETED, (Do.RESEND_RESPONSE,)),
    (S.COMPLETED, I.TIMER_G): (
        S.COMPLETED,
        (Do.RESEND_RESPONSE, Arm(Timer.G, Backoff.DOUBLE_CAPPED)),
    ),
    (S.COMPLETED, I.TIMER_H): (S.TERMINATED, (Do.REPORT_TIMEOUT,)),
    (S.COMPLETED, I.RECV_ACK): (S.CONFIRMED, (Arm(Timer.I, Backoff.WAIT_T4),)),
    (S.CONFIRMED, I.TIMER_I): (S.TERMINATED, ()),
}

# RFC 3261 §17.2.2 figure 8. A 2xx to a non-INVITE is just a final response.
NIST: Table = {
    (S.TRYING, I.TU_1XX): (S.PROCEEDING, (Do.SEND_RESPONSE,)),
    (S.TRYING, I.TU_2XX): (S.COMPLETED, (Do.SEND_RESPONSE, Arm(Timer.J, Backoff.WAIT_J))),
    (S.TRYING, I.TU_3XX_6XX): (S.COMPLETED, (Do.SEND_RESPONSE, Arm(Timer.J, Backoff.WAIT_J))),
    (S.PROCEEDING, I.RECV_REQUEST): (S.PROCEEDING, (Do.RESEND_RESPONSE,)),
    (S.PROCEEDING, I.TU_1XX): (S.PROCEEDING, (Do.SEND_RESPONSE,)),
    (S.PROCEEDING, I.TU_2XX): (
        S.COMPLETED,
        (Do.SEND_RESPONSE, Arm(Timer.J, Backoff.WAIT_J)),
    ),
    (S.PROCEEDING, I.TU_3XX_6XX): (
        S.COMPLETED,
        (Do.SEND_RESPONSE, Arm(Timer.J, Backoff.WAIT_J)),
    ),
    (S.COMPLETED, I.RECV_REQUEST): (S.COMPLETED, (Do.RESEND_RESPONSE,)),
    (S.COMPLETED, I.TIMER_J): (S.TERMINATED, ()),
}

TABLES: dict[Kind, Table] = {Kind.ICT: ICT, Kind.NICT: NICT, Kind.IST: IST, Kind.NIST: NIST}

# Where each machine starts and what it does on creation (§17.1.1.2, §17.1.2.2:
# the client sends the request and arms its timers; §17.2.1, §17.2.2: the
# server passes the request up; the layer then sends 100 Trying for INVITE).
INITIAL: dict[Kind, Row] = {
    Kind.ICT: (S.CALLING, (Arm(Timer.A, Backoff.FIRST), Arm(Timer.B, Backoff.TIMEOUT))),
    Kind.NICT: (S.TRYING, (Arm(Timer.E, Backoff.FIRST), Arm(Timer.F, Backoff.TIMEOUT))),
    Kind.IST: (S.PROCEEDING, (Do.PASS_UP,)),
    Kind.NIST: (S.TRYING, (Do.PASS_UP,)),
}

# The states each machine can be in, for validation and property tests.
STATES: dict[Kind, frozenset[State]] = {
    kind: frozenset({INITIAL[kind][0]} | {k[0] for k in table} | {v[0] for v in table.values()})
    for kind, table in TABLES.items()
}

RETRANSMIT_TIMERS = frozenset({Timer.A, Timer.E, Timer.G, Timer.RETRANSMIT_2XX})


def step(kind: Kind, state: State, input_: Input) -> Row:
    """The next state and effects for `input_` in `state` of machine `kind`.

    Unlisted peer/timer input is absorbed (same state, no effects); unlisted
    TU input raises `TransactionError` (RFC 3261 §17.2.1: no response may
    follow the final one, except 2xx retransmission in Accepted).
    """
    if state not in STATES[kind] or state is S.TERMINATED:
        if input_ in TU_INPUTS:
            raise TransactionError(f"{kind.value} transaction is {state.value}")
        return state, ()
    row = TABLES[kind].get((state, input_))
    if row is not None:
        return row
    if input_ in TU_INPUTS:
        raise TransactionError(f"{kind.value} transaction in {state.value}: cannot {input_.value}")
    return state, ()


def timers_kept(kind: Kind, state: State) -> frozenset[Timer]:
    """Timers that survive entering `state`: those with a row there."""
    return _KEPT[kind, state]


_KEPT: dict[tuple[Kind, State], frozenset[Timer]] = {
    (kind, state): frozenset(t for t, inp in TIMER_INPUT.items() if (state, inp) in table)
    for kind, table in TABLES.items()
    for state in State
}


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 table 4 values, configurable (seconds)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    # §17.1.1.2: Timer D "at least 32 seconds" on unreliable transports.
    d: float = 32.0

    def interval(self, backoff: Backoff, last: float | None, reliable: bool) -> float:
        """Seconds until the timer fires for `backoff` (`last`: previous interval)."""
        if backoff is Backoff.FIRST or (last is None and backoff in _DOUBLING):
            return self.t1
        if backoff is Backoff.DOUBLE:
            return 2 * (last or self.t1)
        if backoff is Backoff.DOUBLE_CAPPED:
            return min(2 * (last or self.t1), self.t2)
        if backoff is Backoff.T2:
            return self.t2
        if backoff is Backoff.TIMEOUT:
            return 64 * self.t1
        if reliable:
            return 0.0
        return {Backoff.WAIT_D: self.d, Backoff.WAIT_T4: self.t4}.get(backoff, 64 * self.t1)


_DOUBLING = frozenset({Backoff.DOUBLE, Backoff.DOUBLE_CAPPED})
