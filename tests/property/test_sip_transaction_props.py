"""Property tests for the transaction machines and layer (h2's every-(state, input) idea)."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.sip.transaction import (
    CancelReceived,
    RequestReceived,
    TransactionKey,
    TransactionLayer,
)
from pbx.sip.transaction_machines import (
    INITIAL,
    STATES,
    TU_INPUTS,
    Input,
    Kind,
    State,
    TransactionError,
    step,
)
from tests.sip_transaction_support import UAC, UAS, reply, request


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


# -- the layer: random sequences of TU, peer and timer input -------------------------

METHODS = ["INVITE", "OPTIONS", "BYE", "CANCEL", "ACK"]
STATUSES = [100, 180, 200, 202, 302, 404, 486, 487, 500, 603]

op = st.one_of(
    st.tuples(st.just("send"), st.sampled_from(METHODS), st.integers(0, 5)),
    st.tuples(st.just("recv_request"), st.sampled_from(METHODS), st.integers(0, 5)),
    st.tuples(st.just("recv_response"), st.sampled_from(STATUSES), st.integers(0, 5)),
    st.tuples(st.just("respond"), st.sampled_from(STATUSES), st.integers(0, 5)),
    st.tuples(st.just("advance"), st.floats(0, 40, allow_nan=False), st.just(0)),
)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(op, max_size=60))
def test_layer_holds_exactly_created_minus_terminated(ops: list[tuple[str, object, int]]) -> None:
    layer = TransactionLayer()
    now = 0.0
    server_keys: list[TransactionKey] = []
    client: list[tuple[str, int]] = []  # (method, n) sent
    for kind, arg, n in ops:
        now = _apply(layer, kind, arg, n, now, server_keys, client)
        assert len(layer) == layer.created - layer.terminated
        deadline = layer.next_deadline()
        assert deadline is None or deadline >= 0
        assert len(layer._heap) <= 8 * len(layer) + 1024
    # Answer everything still open, then let every timer run out: nothing is left
    # but INVITE client transactions still waiting in Proceeding (no RFC timer).
    for key in server_keys:
        if layer.state_of(key) in (State.TRYING, State.PROCEEDING):
            layer.send_response(key, reply(request(key.method, branch=key.branch), 500), now)
    for _ in range(1000):
        deadline = layer.next_deadline()
        if deadline is None:
            break
        layer.handle_timer(deadline)
    assert layer.next_deadline() is None
    waiting = {TransactionKey(f"z9hG4bKc{n}", m) for m, n in client}
    waiting = {k for k in waiting if layer.state_of(k) is not None}
    assert all(k.method == "INVITE" and layer.state_of(k) is State.PROCEEDING for k in waiting)
    assert len(layer) == len(waiting) == layer.created - layer.terminated


def _apply(
    layer: TransactionLayer,
    kind: str,
    arg: object,
    n: int,
    now: float,
    server_keys: list[TransactionKey],
    client: list[tuple[str, int]],
) -> float:
    if kind == "advance":
        assert isinstance(arg, float)
        layer.handle_timer(now + arg)
        return now + arg
    if kind == "send":
        with contextlib.suppress(TransactionError):
            layer.send_request(request(str(arg), branch=f"z9hG4bKc{n}"), UAS, now)
            client.append((str(arg), n))
    elif kind == "recv_request":
        for event in layer.receive(request(str(arg), branch=f"z9hG4bKs{n}"), UAC, now):
            if isinstance(event, RequestReceived | CancelReceived):
                server_keys.append(event.key)
    elif kind == "recv_response":
        for method in ("INVITE", "OPTIONS", "CANCEL"):
            layer.receive(reply(request(method, branch=f"z9hG4bKc{n}"), int(str(arg))), UAS, now)
    elif kind == "respond" and server_keys:
        key = server_keys[n % len(server_keys)]
        with contextlib.suppress(TransactionError):
            layer.send_response(
                key, reply(request(key.method, branch=key.branch), int(str(arg))), now
            )
    return now


HEADER_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=40,
).map(lambda s: s.strip(" \t"))


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["Via", "CSeq", "From", "To", "Call-ID"]),
    value=HEADER_TEXT,
    method=st.sampled_from(["INVITE", "ACK", "CANCEL", "BYE"]),
    as_response=st.booleans(),
)
def test_peer_input_with_garbage_headers_never_raises(
    name: str, value: str, method: str, as_response: bool
) -> None:
    layer = TransactionLayer()
    layer.send_request(request("INVITE"), UAS, 0.0)
    layer.receive(request("INVITE", branch="z9hG4bKother"), UAC, 0.0)
    msg = reply(request(method), 486) if as_response else request(method)
    msg.headers.set(name, value)
    events = layer.receive(msg, UAC, 1.0)
    assert isinstance(events, list)
    layer.handle_timer(100.0)
    assert len(layer) == layer.created - layer.terminated
