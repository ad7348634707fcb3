"""Properties of the media worker control codec: round trips in any chunking, garbage is
always a ControlError (never another exception), and the session table never leaks one."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.rtp.control import (
    FROM_WORKER,
    MAX_CALL_ID,
    SESSION_TABLE,
    TO_WORKER,
    Arm,
    Close,
    Closed,
    ControlError,
    Decoder,
    Digit,
    Failed,
    Forget,
    Hello,
    Hold,
    Input,
    Message,
    Open,
    Opened,
    Play,
    PlayDone,
    Prompt,
    PromptCache,
    PromptStore,
    Ready,
    Recorded,
    SessionState,
    SetRemote,
    StartRecording,
    Stats,
    StopPlaying,
    StopRecording,
    Timeout,
    WatchDigits,
    encode,
    session_step,
    split_ports,
)
from pbx.rtp.media import Counters, MediaStats

BOTH = TO_WORKER | FROM_WORKER

call_ids = st.text(min_size=1, max_size=60) | st.text(
    alphabet="abc@.-", min_size=MAX_CALL_ID - 2, max_size=MAX_CALL_ID
)
ports = st.integers(min_value=1, max_value=65535)
counter = st.integers(min_value=0, max_value=2**63 - 1)
counters = st.builds(Counters, counter, counter, counter, counter, counter)
media_stats = st.builds(MediaStats, call_ids, counters, counters)
hosts = st.ip_addresses().map(lambda ip: ip.compressed)
legs = st.sampled_from(["inbound", "outbound"])

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Hello, st.integers(min_value=0, max_value=2**16)),
    st.builds(Open, call_ids),
    st.builds(SetRemote, call_ids, legs, hosts, ports),
    st.builds(Arm, call_ids),
    st.builds(Close, call_ids),
    st.builds(Ready, st.integers(0, 2**16), st.integers(1, 2**31 - 1)),
    st.builds(Opened, call_ids, ports, ports),
    st.builds(Failed, call_ids, st.text(min_size=1, max_size=200)),
    st.builds(Closed, media_stats),
    st.builds(Stats, st.lists(media_stats, min_size=1, max_size=300).map(tuple)),
    st.builds(Timeout, call_ids),
)
keys = st.text(alphabet="0123456789abcdef:", min_size=1, max_size=64)
payloads = st.integers(1, 8).flatmap(lambda n: st.binary(min_size=160 * n, max_size=160 * n))
play_ids = st.integers(0, 2**53)
audio_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Prompt, keys, st.sampled_from([0, 8]), payloads),
    st.builds(Forget, keys),
    st.builds(Play, call_ids, legs, play_ids, keys),
    st.builds(StopPlaying, call_ids, legs),
    st.builds(Hold, call_ids, st.booleans()),
    st.builds(WatchDigits, call_ids, legs, st.none() | st.integers(0, 127)),
    st.builds(StartRecording, call_ids, st.text(min_size=1, max_size=300).filter(
        lambda p: "\0" not in p)),
    st.builds(StopRecording, call_ids),
    st.builds(PlayDone, call_ids, play_ids),
    st.builds(Digit, call_ids, legs, st.sampled_from(list("0123456789*#ABCD"))),
    st.builds(Recorded, call_ids, st.integers(0, 2**53), counter,
              st.none() | st.text(min_size=1, max_size=200)),
)  # fmt: skip
messages = messages | audio_messages


def flatten(batch: list[Message]) -> list[Message]:
    """Stats batches merged back (the encoder may split one into several)."""
    out: list[Message] = []
    for msg in batch:
        if isinstance(msg, Stats) and out and isinstance(out[-1], Stats):
            out[-1] = Stats(out[-1].entries + msg.entries)
        else:
            out.append(msg)
    return out


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


@settings(max_examples=150, deadline=None)
@given(st.lists(messages, max_size=12), st.lists(st.integers(min_value=0), max_size=20))
def test_round_trip_in_any_chunking(batch: list[Message], cuts: list[int]) -> None:
    wire = encode(batch)
    decoder = Decoder(BOTH)
    got: list[Message] = []
    for piece in chunked(wire, cuts):
        got += decoder.feed(piece)
    assert flatten(got) == flatten(batch)
    assert decoder.pending == 0


def feed_all(decoder: Decoder, pieces: list[bytes]) -> None:
    """Feeds until the end or a ControlError (one line); any other exception fails."""
    error = ""
    try:
        for piece in pieces:
            decoder.feed(piece)
    except ControlError as exc:
        error = str(exc)
    assert "\n" not in error


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8), st.sampled_from([TO_WORKER, FROM_WORKER]))
def test_arbitrary_bytes_give_messages_or_control_error(
    pieces: list[bytes], accept: frozenset[str]
) -> None:
    feed_all(Decoder(accept), pieces)


json_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_ish, min_size=1, max_size=4))
def test_well_framed_nonsense_is_control_error_or_messages(batch: list[object]) -> None:
    body = json.dumps(batch).encode()
    feed_all(Decoder(BOTH), [len(body).to_bytes(4, "big") + body])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(messages, min_size=1, max_size=4),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=255),
)
def test_one_flipped_byte_never_raises_anything_else(
    batch: list[Message], where: int, value: int
) -> None:
    wire = bytearray(encode(batch))
    wire[where % len(wire)] = value
    feed_all(Decoder(BOTH), [bytes(wire)])


@given(st.lists(st.sampled_from(list(Input)), max_size=12))
def test_session_table_steps_or_raises_control_error(events: list[Input]) -> None:
    state = SessionState.OPENING
    for event in events:
        try:
            state, _ = session_step(state, event)
        except ControlError:
            assert (state, event) not in SESSION_TABLE
            return
    assert state in SessionState


@given(st.integers(1024, 60000), st.integers(0, 5000), st.integers(1, 16))
def test_port_slices_are_disjoint_even_pairs_covering_the_range(
    low: int, span: int, count: int
) -> None:
    high = min(low + span, 65535)
    first = low + low % 2
    pairs = (high - first + 1) // 2
    try:
        slices = split_ports(low, high, count)
    except ControlError:
        assert pairs < count
        return
    assert len(slices) == count
    covered = [p for lo, hi in slices for p in range(lo, hi, 2)]
    assert covered == list(range(first, first + 2 * pairs, 2))
    sizes = [(hi - lo + 1) // 2 for lo, hi in slices]
    assert min(sizes) >= 1
    assert max(sizes) - min(sizes) <= 1
    assert all(lo % 2 == 0 and hi % 2 == 1 for lo, hi in slices)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 40)), max_size=60),
       st.integers(1, 100))  # fmt: skip
def test_prompt_cache_stays_in_budget_and_the_worker_holds_what_it_says(
    plays: list[tuple[int, int]], budget: int
) -> None:
    """The daemon's cache and the worker's store, fed the messages it asks for, agree."""
    cache, store = PromptCache(budget), PromptStore(budget)
    sizes: dict[str, int] = {}
    for key_n, size in plays:
        key = f"0:{key_n}"
        size = sizes.setdefault(key, size)  # one key, one payload
        try:
            send, evicted = cache.need(key, size)
        except ControlError:
            assert size > budget
            continue
        for old in evicted:
            store.forget(old)
        if send:
            store.put(Prompt(key, 0, bytes(size)))
        assert store.get(key) is not None  # a Play right behind finds it
        assert set(store.payloads) == set(cache.held)
        assert cache.size == store.size == sum(cache.held.values()) <= budget
