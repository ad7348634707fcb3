"""The four RFC 3261 §17 transition tables, row by row."""

from __future__ import annotations

import pytest

from pbx.sip.transaction_machines import (
    INITIAL,
    STATES,
    TABLES,
    TU_INPUTS,
    Arm,
    Backoff,
    Do,
    Input,
    Kind,
    State,
    Timer,
    TimerConfig,
    TransactionError,
    step,
    timers_kept,
)

S = State
I = Input  # noqa: E741


def _arms(effects: tuple[object, ...]) -> set[Timer]:
    return {e.timer for e in effects if isinstance(e, Arm)}


# (kind, state, input, next state, effects that must be present)
ROWS = [
    (Kind.ICT, S.CALLING, I.TIMER_A, S.CALLING, {Do.RETRANSMIT_REQUEST}),
    (Kind.ICT, S.CALLING, I.TIMER_B, S.TERMINATED, {Do.REPORT_TIMEOUT}),
    (Kind.ICT, S.CALLING, I.RECV_1XX, S.PROCEEDING, {Do.PASS_UP}),
    (Kind.ICT, S.CALLING, I.RECV_2XX, S.ACCEPTED, {Do.PASS_UP}),
    (Kind.ICT, S.CALLING, I.RECV_3XX_6XX, S.COMPLETED, {Do.PASS_UP, Do.SEND_ACK}),
    (Kind.ICT, S.PROCEEDING, I.RECV_1XX, S.PROCEEDING, {Do.PASS_UP}),
    (Kind.ICT, S.PROCEEDING, I.RECV_2XX, S.ACCEPTED, {Do.PASS_UP}),
    (Kind.ICT, S.PROCEEDING, I.RECV_3XX_6XX, S.COMPLETED, {Do.PASS_UP, Do.SEND_ACK}),
    (Kind.ICT, S.ACCEPTED, I.RECV_2XX, S.ACCEPTED, {Do.PASS_UP}),
    (Kind.ICT, S.ACCEPTED, I.TIMER_M, S.TERMINATED, set()),
    (Kind.ICT, S.COMPLETED, I.RECV_3XX_6XX, S.COMPLETED, {Do.RESEND_ACK}),
    (Kind.ICT, S.COMPLETED, I.TIMER_D, S.TERMINATED, set()),
    (Kind.NICT, S.TRYING, I.TIMER_E, S.TRYING, {Do.RETRANSMIT_REQUEST}),
    (Kind.NICT, S.TRYING, I.TIMER_F, S.TERMINATED, {Do.REPORT_TIMEOUT}),
    (Kind.NICT, S.TRYING, I.RECV_1XX, S.PROCEEDING, {Do.PASS_UP}),
    (Kind.NICT, S.TRYING, I.RECV_2XX, S.COMPLETED, {Do.PASS_UP}),
    (Kind.NICT, S.TRYING, I.RECV_3XX_6XX, S.COMPLETED, {Do.PASS_UP}),
    (Kind.NICT, S.PROCEEDING, I.TIMER_E, S.PROCEEDING, {Do.RETRANSMIT_REQUEST}),
    (Kind.NICT, S.PROCEEDING, I.TIMER_F, S.TERMINATED, {Do.REPORT_TIMEOUT}),
    (Kind.NICT, S.PROCEEDING, I.RECV_1XX, S.PROCEEDING, {Do.PASS_UP}),
    (Kind.NICT, S.PROCEEDING, I.RECV_3XX_6XX, S.COMPLETED, {Do.PASS_UP}),
    (Kind.NICT, S.COMPLETED, I.TIMER_K, S.TERMINATED, set()),
    (Kind.IST, S.PROCEEDING, I.RECV_REQUEST, S.PROCEEDING, {Do.RESEND_RESPONSE}),
    (Kind.IST, S.PROCEEDING, I.TU_1XX, S.PROCEEDING, {Do.SEND_RESPONSE}),
    (Kind.IST, S.PROCEEDING, I.TU_2XX, S.ACCEPTED, {Do.SEND_RESPONSE}),
    (Kind.IST, S.PROCEEDING, I.TU_3XX_6XX, S.COMPLETED, {Do.SEND_RESPONSE}),
    (Kind.IST, S.ACCEPTED, I.RECV_REQUEST, S.ACCEPTED, set()),
    (Kind.IST, S.ACCEPTED, I.TU_2XX, S.ACCEPTED, {Do.SEND_RESPONSE}),
    (Kind.IST, S.ACCEPTED, I.RECV_ACK, S.ACCEPTED, {Do.PASS_UP, Do.NOTE_ACK}),
    (Kind.IST, S.ACCEPTED, I.TIMER_L, S.TERMINATED, {Do.REPORT_TIMEOUT_IF_UNACKED}),
    (Kind.IST, S.COMPLETED, I.RECV_REQUEST, S.COMPLETED, {Do.RESEND_RESPONSE}),
    (Kind.IST, S.COMPLETED, I.TIMER_G, S.COMPLETED, {Do.RESEND_RESPONSE}),
    (Kind.IST, S.COMPLETED, I.TIMER_H, S.TERMINATED, {Do.REPORT_TIMEOUT}),
    (Kind.IST, S.COMPLETED, I.RECV_ACK, S.CONFIRMED, set()),
    (Kind.IST, S.CONFIRMED, I.TIMER_I, S.TERMINATED, set()),
    (Kind.NIST, S.TRYING, I.TU_1XX, S.PROCEEDING, {Do.SEND_RESPONSE}),
    (Kind.NIST, S.TRYING, I.TU_2XX, S.COMPLETED, {Do.SEND_RESPONSE}),
    (Kind.NIST, S.TRYING, I.TU_3XX_6XX, S.COMPLETED, {Do.SEND_RESPONSE}),
    (Kind.NIST, S.PROCEEDING, I.RECV_REQUEST, S.PROCEEDING, {Do.RESEND_RESPONSE}),
    (Kind.NIST, S.PROCEEDING, I.TU_1XX, S.PROCEEDING, {Do.SEND_RESPONSE}),
    (Kind.NIST, S.PROCEEDING, I.TU_3XX_6XX, S.COMPLETED, {Do.SEND_RESPONSE}),
    (Kind.NIST, S.COMPLETED, I.RECV_REQUEST, S.COMPLETED, {Do.RESEND_RESPONSE}),
    (Kind.NIST, S.COMPLETED, I.TIMER_J, S.TERMINATED, set()),
]


@pytest.mark.parametrize(("kind", "state", "input_", "after", "must"), ROWS)
def test_row(kind: Kind, state: State, input_: Input, after: State, must: set[Do]) -> None:
    new_state, effects = step(kind, state, input_)
    assert new_state is after
    assert must <= set(effects)


def test_every_row_is_listed_above() -> None:
    listed = {(k, s, i) for k, s, i, _, _ in ROWS}
    in_tables = {(k, s, i) for k, t in TABLES.items() for (s, i) in t}
    missing = in_tables - listed
    # The remaining rows are NICT Proceeding + 2xx (same as 3xx-6xx) and the
    # IST's 2xx retransmission timer and NIST Proceeding + 2xx, checked below.
    assert missing == {
        (Kind.NICT, S.PROCEEDING, I.RECV_2XX),
        (Kind.IST, S.ACCEPTED, I.TIMER_RETRANSMIT_2XX),
        (Kind.NIST, S.PROCEEDING, I.TU_2XX),
        (Kind.ICT, S.CALLING, I.TIMER_CANCEL_GUARD),
        (Kind.ICT, S.PROCEEDING, I.TIMER_CANCEL_GUARD),
    }
    for state in (S.CALLING, S.PROCEEDING):
        assert step(Kind.ICT, state, I.TIMER_CANCEL_GUARD) == (S.TERMINATED, (Do.REPORT_TIMEOUT,))


def test_timers_armed_on_entry() -> None:
    assert _arms(step(Kind.ICT, S.CALLING, I.RECV_3XX_6XX)[1]) == {Timer.D}
    assert _arms(step(Kind.ICT, S.CALLING, I.RECV_2XX)[1]) == {Timer.M}
    assert _arms(step(Kind.NICT, S.TRYING, I.RECV_2XX)[1]) == {Timer.K}
    assert _arms(step(Kind.IST, S.PROCEEDING, I.TU_3XX_6XX)[1]) == {Timer.G, Timer.H}
    assert _arms(step(Kind.IST, S.PROCEEDING, I.TU_2XX)[1]) == {Timer.L, Timer.RETRANSMIT_2XX}
    assert _arms(step(Kind.IST, S.COMPLETED, I.RECV_ACK)[1]) == {Timer.I}
    assert _arms(step(Kind.NIST, S.TRYING, I.TU_3XX_6XX)[1]) == {Timer.J}
    assert _arms(INITIAL[Kind.ICT][1]) == {Timer.A, Timer.B}
    assert _arms(INITIAL[Kind.NICT][1]) == {Timer.E, Timer.F}


def test_timers_cancelled_when_leaving_a_state() -> None:
    # §17.1.1.2: Proceeding stops A and B; §17.1.2.2: E and F run on in Proceeding.
    assert timers_kept(Kind.ICT, S.PROCEEDING) == {Timer.CANCEL_GUARD}
    assert timers_kept(Kind.NICT, S.PROCEEDING) == {Timer.E, Timer.F}
    # §17.2.1: Confirmed stops G and H.
    assert timers_kept(Kind.IST, S.CONFIRMED) == {Timer.I}
    assert timers_kept(Kind.IST, S.ACCEPTED) == {Timer.L, Timer.RETRANSMIT_2XX}
    for kind in Kind:
        assert timers_kept(kind, S.TERMINATED) == frozenset()


@pytest.mark.parametrize("kind", [Kind.IST, Kind.NIST])
def test_tu_response_after_final_is_an_error(kind: Kind) -> None:
    with pytest.raises(TransactionError):
        step(kind, S.COMPLETED, I.TU_1XX)
    with pytest.raises(TransactionError):
        step(kind, S.TERMINATED, I.TU_3XX_6XX)


@pytest.mark.parametrize("kind", [Kind.ICT, Kind.NICT])
def test_client_machines_reject_tu_responses(kind: Kind) -> None:
    for input_ in TU_INPUTS:
        for state in STATES[kind]:
            with pytest.raises(TransactionError):
                step(kind, state, input_)


def test_unlisted_peer_input_is_absorbed() -> None:
    assert step(Kind.ICT, S.COMPLETED, I.RECV_2XX) == (S.COMPLETED, ())
    assert step(Kind.IST, S.CONFIRMED, I.RECV_ACK) == (S.CONFIRMED, ())
    assert step(Kind.NIST, S.TRYING, I.RECV_REQUEST) == (S.TRYING, ())
    assert step(Kind.NICT, S.COMPLETED, I.TIMER_E) == (S.COMPLETED, ())


def test_states_per_machine() -> None:
    assert STATES[Kind.ICT] == {S.CALLING, S.PROCEEDING, S.ACCEPTED, S.COMPLETED, S.TERMINATED}
    assert STATES[Kind.NICT] == {S.TRYING, S.PROCEEDING, S.COMPLETED, S.TERMINATED}
    assert STATES[Kind.IST] == {
        S.PROCEEDING,
        S.ACCEPTED,
        S.COMPLETED,
        S.CONFIRMED,
        S.TERMINATED,
    }
    assert STATES[Kind.NIST] == {S.TRYING, S.PROCEEDING, S.COMPLETED, S.TERMINATED}


def test_timer_intervals_rfc_table_4() -> None:
    cfg = TimerConfig()
    assert cfg.interval(Backoff.FIRST, None, False) == 0.5
    # Timer A doubles without a cap (§17.1.1.2), E and G cap at T2.
    assert cfg.interval(Backoff.DOUBLE, 4.0, False) == 8.0
    assert cfg.interval(Backoff.DOUBLE_CAPPED, 2.0, False) == 4.0
    assert cfg.interval(Backoff.DOUBLE_CAPPED, 4.0, False) == 4.0
    assert cfg.interval(Backoff.T2, 0.5, False) == 4.0
    assert cfg.interval(Backoff.TIMEOUT, None, False) == 32.0
    assert cfg.interval(Backoff.WAIT_D, None, False) == 32.0
    assert cfg.interval(Backoff.WAIT_T4, None, False) == 5.0
    assert cfg.interval(Backoff.WAIT_J, None, False) == 32.0
    for wait in (Backoff.WAIT_D, Backoff.WAIT_T4, Backoff.WAIT_J):
        assert cfg.interval(wait, None, True) == 0.0
    custom = TimerConfig(t1=0.1, t2=1.0, t4=2.0)
    assert custom.interval(Backoff.TIMEOUT, None, True) == pytest.approx(6.4)
