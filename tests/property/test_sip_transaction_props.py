"""Property tests for the transaction machines (h2's every-(state, input) idea)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pbx.sip.transaction_machines import (
    STATES,
    TU_INPUTS,
    Input,
    Kind,
    State,
    TransactionError,
    step,
)


@given(kind=st.sampled_from(Kind), state=st.sampled_from(State), input_=st.sampled_from(Input))
def test_every_state_input_pair_is_valid_or_transaction_error(
    kind: Kind, state: State, input_: Input
) -> None:
    try:
        new_state, effects = step(kind, state, input_)
    except TransactionError:
        assert input_ in TU_INPUTS
        return
    if state in STATES[kind]:
        assert new_state in STATES[kind]
    else:
        assert (new_state, effects) == (state, ())


@given(kind=st.sampled_from(Kind), inputs=st.lists(st.sampled_from(Input), max_size=40))
def test_random_input_sequences_stay_in_the_machine(kind: Kind, inputs: list[Input]) -> None:
    from pbx.sip.transaction_machines import INITIAL

    state = INITIAL[kind][0]
    for input_ in inputs:
        try:
            state, _ = step(kind, state, input_)
        except TransactionError:
            assert input_ in TU_INPUTS
        assert state in STATES[kind]
        if state is State.TERMINATED:
            # Terminated is a sink: nothing leaves it.
            assert all(step(kind, state, i) == (state, ()) for i in Input if i not in TU_INPUTS)
