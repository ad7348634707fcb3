"""The media worker control protocol: wire shapes, bounds, framing, the session table."""

from __future__ import annotations

import base64
import json

import pytest

from pbx.rtp.control import (
    FROM_WORKER,
    MAX_CALL_ID,
    MAX_FRAME,
    MAX_MESSAGES,
    MAX_PROMPT,
    MAX_STATS,
    SESSION_TABLE,
    TO_WORKER,
    Arm,
    Close,
    Closed,
    ControlError,
    Decoder,
    Digit,
    Effect,
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
    payload_size,
    prompt_key,
    session_step,
)
from pbx.rtp.media import Counters, MediaStats

BOTH = TO_WORKER | FROM_WORKER


def stats(call_id: str, base: int = 0) -> MediaStats:
    return MediaStats(
        call_id, Counters(*range(base, base + 5)), Counters(*range(base + 5, base + 10))
    )


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def decode_all(data: bytes, accept: frozenset[str] = BOTH) -> list[Message]:
    return Decoder(accept).feed(data)


def test_every_message_round_trips_in_one_frame() -> None:
    messages: list[Message] = [
        Hello(1),
        Open("a84b4c76e66710@pc33.example.com"),
        SetRemote("c1", "inbound", "192.0.2.10", 49170),
        SetRemote("c1", "outbound", "2001:db8::1", 5004),
        Arm("c1"),
        Close("c1"),
        Ready(1, 4242),
        Opened("c1", 40000, 40002),
        Failed("c1", "media: no free RTP port pair in 40000-40003"),
        Closed(stats("c1", 1)),
        Stats((stats("c1"), stats("c2", 7))),
        Timeout("c1"),
    ]
    wire = encode(messages)
    assert int.from_bytes(wire[:4], "big") == len(wire) - 4  # one frame for the batch
    assert decode_all(wire) == messages


def test_wire_shape_is_the_documented_table() -> None:
    wire = encode([SetRemote("c1", "inbound", "192.0.2.1", 9), Closed(stats("c1"))])
    assert json.loads(wire[4:]) == [
        ["set_remote", "c1", "inbound", "192.0.2.1", 9],
        ["closed", "c1", list(range(10))],
    ]


def test_nothing_encodes_to_nothing() -> None:
    assert encode([]) == b""
    assert encode([Stats(())]) == b""  # an empty stats batch is not sent


def test_big_stats_batch_is_split_and_frames_stay_bounded() -> None:
    entries = tuple(stats(f"call-{i}-" + "x" * 900) for i in range(3 * MAX_STATS + 5))
    wire = encode([Stats(entries)])
    decoder = Decoder(FROM_WORKER)
    got = decoder.feed(wire)
    assert all(isinstance(m, Stats) and len(m.entries) <= MAX_STATS for m in got)
    assert tuple(e for m in got if isinstance(m, Stats) for e in m.entries) == entries
    offset, frames = 0, 0
    while offset < len(wire):
        size = int.from_bytes(wire[offset : offset + 4], "big")
        assert 0 < size <= MAX_FRAME
        offset, frames = offset + 4 + size, frames + 1
    assert frames >= 1


def test_many_messages_are_cut_into_frames_of_at_most_max_messages() -> None:
    messages = [Arm(f"c{i}") for i in range(MAX_MESSAGES + 3)]
    wire = encode(messages)
    first = int.from_bytes(wire[:4], "big")
    assert len(json.loads(wire[4 : 4 + first])) == MAX_MESSAGES
    assert decode_all(wire) == messages


def test_decoder_takes_bytes_one_at_a_time() -> None:
    messages: list[Message] = [Opened("c1", 40000, 40002), Timeout("c1")]
    wire = encode(messages) + encode([Closed(stats("c1"))])
    decoder = Decoder(FROM_WORKER)
    got: list[Message] = []
    for i in range(len(wire)):
        got += decoder.feed(wire[i : i + 1])
        assert decoder.pending < len(wire)
    assert got == [*messages, Closed(stats("c1"))]
    assert decoder.pending == 0


def test_host_is_normalised() -> None:
    [msg] = decode_all(frame(b'[["set_remote","c","inbound","2001:DB8:0::1",9]]'))
    assert isinstance(msg, SetRemote)
    assert msg.host == "2001:db8::1"


@pytest.mark.parametrize(
    "message",
    [
        Open(""),
        Open("x" * (MAX_CALL_ID + 1)),
        SetRemote("c", "inbound", "example.com", 5004),
        SetRemote("c", "inbound", "192.0.2.1", 0),
        SetRemote("c", "inbound", "192.0.2.1", 65536),
        Opened("c", 40000, 70000),
        Closed(MediaStats("c", Counters(packets=-1), Counters())),
        Ready(1, 0),
    ],
)
def test_encoder_refuses_what_the_reader_would_refuse(message: Message) -> None:
    with pytest.raises(ControlError):
        encode([message])


def test_long_reason_is_cut_not_refused() -> None:
    [msg] = decode_all(encode([Failed("c1", "y" * 1000)]))
    assert isinstance(msg, Failed)
    assert msg.reason == "y" * 200


GARBAGE = [
    b"\x00\x00\x00\x00",  # zero length
    (MAX_FRAME + 1).to_bytes(4, "big"),  # too long: refused from the header alone
    b"\xff\xff\xff\xff",
    frame(b"not json"),
    frame(b"{}"),
    frame(b"[]"),
    frame(b'"open"'),
    frame(b"[[]]"),
    frame(b"[[1]]"),
    frame(b'[["open"]]'),
    frame(b'[["open","c1","extra"]]'),
    frame(b'[["open",""]]'),
    frame(b'[["open",7]]'),
    frame(b'[["bogus","c1"]]'),
    frame(b'[["hello",true]]'),
    frame(b'[["hello",1.0]]'),
    frame(b'[["hello",NaN]]'),
    frame(b'[["hello",Infinity]]'),
    frame(b'[["hello",' + b"9" * 5000 + b"]]"),  # int() digit limit is a ValueError
    frame(b"[" * 100_000),  # recursion
    frame('[["open","\u00e9"]]'.encode()),  # non-ASCII bytes
    frame(b'[["open","\xff"]]'),
    frame(b'[["set_remote","c","sideways","192.0.2.1",9]]'),
    frame(b'[["set_remote","c","inbound","192.0.2.1",-1]]'),
    frame(b'[["closed","c",[1,2,3]]]'),
    frame(b'[["closed","c",[0,0,0,0,0,0,0,0,0,-1]]]'),
    frame(b'[["stats",[["c"]]]]'),
    frame(b'[["stats",{"c":1}]]'),
    frame(b'[["ready",1,4242]'),  # truncated JSON
]


@pytest.mark.parametrize("data", GARBAGE)
def test_garbage_is_one_control_error_and_the_decoder_stays_broken(data: bytes) -> None:
    decoder = Decoder(BOTH)
    with pytest.raises(ControlError) as caught:
        decoder.feed(data)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("media control: ")
    with pytest.raises(ControlError):
        decoder.feed(encode([Hello(1)]))


def test_a_kind_from_the_wrong_direction_is_refused() -> None:
    with pytest.raises(ControlError, match="unexpected message kind 'opened'"):
        Decoder(TO_WORKER).feed(encode([Opened("c", 40000, 40002)]))
    with pytest.raises(ControlError, match="unexpected message kind 'open'"):
        Decoder(FROM_WORKER).feed(encode([Open("c")]))


def test_an_incomplete_frame_waits() -> None:
    wire = encode([Open("c1")])
    decoder = Decoder(TO_WORKER)
    assert decoder.feed(wire[:-1]) == []
    assert decoder.pending == len(wire) - 1
    assert decoder.feed(wire[-1:]) == [Open("c1")]


# -- the session table ---------------------------------------------------------


def run(*events: Input) -> tuple[SessionState, list[Effect]]:
    state, effects = SessionState.OPENING, list[Effect]()
    for event in events:
        state, more = session_step(state, event)
        effects += more
    return state, effects


def test_normal_life_of_a_session() -> None:
    state, effects = run(Input.OPENED, Input.STATS, Input.CLOSE, Input.STATS, Input.CLOSED)
    assert state is SessionState.CLOSED
    assert effects == [
        Effect.RESOLVE_OPEN, Effect.UPDATE, Effect.SEND_CLOSE, Effect.UPDATE,
        Effect.UPDATE, Effect.FINAL, Effect.FORGET,
    ]  # fmt: skip


def test_worker_death_reports_failure_only_for_open_sessions() -> None:
    assert Effect.REPORT_FAILURE in run(Input.OPENED, Input.WORKER_DIED)[1]
    assert Effect.REPORT_FAILURE not in run(Input.OPENED, Input.CLOSE, Input.WORKER_DIED)[1]
    assert run(Input.WORKER_DIED)[1] == [Effect.REJECT_OPEN, Effect.FORGET]


def test_open_timeout_sends_close_and_tolerates_a_late_opened() -> None:
    state, effects = run(Input.OPEN_TIMED_OUT, Input.OPENED, Input.TIMEOUT, Input.CLOSED)
    assert state is SessionState.CLOSED
    assert effects[:2] == [Effect.REJECT_OPEN, Effect.SEND_CLOSE]
    assert Effect.RESOLVE_OPEN not in effects
    assert Effect.REPORT_TIMEOUT not in effects


def test_engine_close_never_reports_failure() -> None:
    for start in ((), (Input.OPENED,), (Input.OPENED, Input.CLOSE)):
        _, effects = run(*start, Input.ENGINE_CLOSED)
        assert Effect.REPORT_FAILURE not in effects


@pytest.mark.parametrize(
    "events",
    [
        (Input.STATS,),  # stats before opened
        (Input.CLOSED,),  # closed before anyone closed it
        (Input.OPENED, Input.OPENED),
        (Input.OPENED, Input.CLOSED),
        (Input.OPENED, Input.CLOSE, Input.CLOSED, Input.STATS),
    ],
)
def test_a_worker_message_out_of_place_is_a_control_error(events: tuple[Input, ...]) -> None:
    with pytest.raises(ControlError):
        run(*events)


def test_every_row_of_the_table_is_reachable_from_opening() -> None:
    seen = {SessionState.OPENING}
    frontier = [SessionState.OPENING]
    while frontier:
        state = frontier.pop()
        for (source, _), (target, _) in SESSION_TABLE.items():
            if source is state and target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(SessionState)
    assert {source for source, _ in SESSION_TABLE} == set(SessionState)
    daemon_inputs = {Input.CLOSE, Input.WORKER_DIED, Input.ENGINE_CLOSED}
    for state in (SessionState.OPEN, SessionState.CLOSING, SessionState.CLOSED):
        for event in daemon_inputs:
            assert (state, event) in SESSION_TABLE  # the daemon's own inputs never raise


# -- audio (issue 13) ------------------------------------------------------------


def test_every_audio_message_round_trips_with_the_documented_wire() -> None:
    payload = bytes(range(160)) * 2
    messages: list[Message] = [
        Prompt("0:9f2c", 0, payload),
        Forget("0:9f2c"),
        Play("c1", "inbound", 1, "0:9f2c"),
        StopPlaying("c1", "inbound"),
        Hold("c1", True),
        Hold("c1", False),
        WatchDigits("c1", "outbound", 101),
        WatchDigits("c1", "outbound", None),
        StartRecording("c1", "/var/lib/pbx/recordings/7.wav"),
        StopRecording("c1"),
        PlayDone("c1", 1),
        Digit("c1", "outbound", "#"),
        Recorded("c1", 12340, 395244, None),
        Recorded("c1", 0, 0, "No space left on device"),
    ]
    wire = encode(messages)
    assert decode_all(wire) == messages
    body = json.loads(wire[4:])
    assert body[0] == ["prompt", "0:9f2c", 0, base64.b64encode(payload).decode()]
    assert body[4:8] == [
        ["hold", "c1", 1], ["hold", "c1", 0],
        ["watch_digits", "c1", "outbound", 101], ["watch_digits", "c1", "outbound", None],
    ]  # fmt: skip
    assert body[-2] == ["recorded", "c1", 12340, 395244, None]
    assert repr(Prompt("k", 0, payload)) == "Prompt(key='k', payload_type=0)"  # no audio in logs


def test_the_longest_prompt_fits_one_frame_and_a_longer_one_is_refused() -> None:
    longest = Prompt("0:k", 8, bytes(MAX_PROMPT))
    wire = encode([longest, Play("c1", "inbound", 2, "0:k")])
    assert len(wire) - 4 <= MAX_FRAME
    assert decode_all(wire, TO_WORKER)[0] == longest
    with pytest.raises(ControlError, match="at most"):
        encode([Prompt("0:k", 8, bytes(MAX_PROMPT + 160))])


AUDIO_GARBAGE = [
    frame(b'[["prompt","k",0,"not base64!"]]'),
    frame(b'[["prompt","k",0,"' + base64.b64encode(bytes(100)) + b'"]]'),  # not whole packets
    frame(b'[["prompt","k",0,""]]'),
    frame(b'[["prompt","k",18,"' + base64.b64encode(bytes(160)) + b'"]]'),  # not G.711
    frame(b'[["prompt","k\\n",0,"' + base64.b64encode(bytes(160)) + b'"]]'),
    frame(b'[["prompt","' + b"k" * 65 + b'",0,"' + base64.b64encode(bytes(160)) + b'"]]'),
    frame(b'[["play","c","inbound",-1,"k"]]'),
    frame(b'[["play","c","inbound",1.5,"k"]]'),
    frame(b'[["hold","c",true]]'),
    frame(b'[["hold","c",2]]'),
    frame(b'[["watch_digits","c","inbound",128]]'),
    frame(b'[["start_recording","c",""]]'),
    frame(b'[["start_recording","c","a\\u0000b"]]'),
    frame(b'[["digit","c","inbound","x"]]'),
    frame(b'[["digit","c","inbound","11"]]'),
    frame(b'[["recorded","c",-1,0,null]]'),
    frame(b'[["recorded","c",0,0,""]]'),
    frame(b'[["recorded","c",0,0]]'),
]


@pytest.mark.parametrize("data", AUDIO_GARBAGE)
def test_bad_audio_messages_are_one_control_error(data: bytes) -> None:
    with pytest.raises(ControlError) as caught:
        Decoder(BOTH).feed(data)
    assert "\n" not in str(caught.value)


def test_audio_reports_change_no_state_and_are_out_of_place_before_opened() -> None:
    assert session_step(SessionState.OPEN, Input.AUDIO) == (SessionState.OPEN, (Effect.AUDIO,))
    assert session_step(SessionState.CLOSING, Input.AUDIO)[0] is SessionState.CLOSING
    with pytest.raises(ControlError):
        session_step(SessionState.OPENING, Input.AUDIO)


def test_a_dead_worker_salvages_the_recording_of_open_and_closing_sessions_only() -> None:
    assert run(Input.OPENED, Input.WORKER_DIED)[1][1] is Effect.SALVAGE_RECORDING
    assert Effect.SALVAGE_RECORDING in run(Input.OPENED, Input.CLOSE, Input.WORKER_DIED)[1]
    assert Effect.SALVAGE_RECORDING not in run(Input.WORKER_DIED)[1]
    assert Effect.SALVAGE_RECORDING not in run(Input.OPENED, Input.ENGINE_CLOSED)[1]
    _, effects = run(Input.OPENED, Input.WORKER_DIED)
    # the file is being repaired before the call side hears of the failure (and releases)
    assert effects.index(Effect.SALVAGE_RECORDING) < effects.index(Effect.REPORT_FAILURE)


def test_prompt_keys_name_the_codec_and_the_pcm() -> None:
    pcm = bytes(range(256)) * 4
    assert prompt_key(0, pcm) != prompt_key(8, pcm)
    assert prompt_key(0, pcm) == prompt_key(0, bytes(pcm))
    assert prompt_key(0, pcm).startswith("0:")
    assert len(prompt_key(0, pcm)) <= 64
    assert payload_size(bytes(2 * 161)) == 320
    assert payload_size(bytes(2 * 160)) == 160


def test_prompt_cache_evicts_least_recently_played_first() -> None:
    cache = PromptCache(budget=500)
    assert cache.need("a", 200) == (True, [])
    assert cache.need("b", 200) == (True, [])
    assert cache.need("a", 200) == (False, [])  # a is now the most recent
    assert cache.need("c", 200) == (True, ["b"])
    assert list(cache.held) == ["a", "c"]
    with pytest.raises(ControlError, match="exceeds"):
        cache.need("huge", 501)
    store = PromptStore(budget=300)
    store.put(Prompt("a", 0, bytes(160)))
    with pytest.raises(ControlError, match="over the worker cache"):
        store.put(Prompt("b", 0, bytes(160)))
    store.forget("a")
    store.put(Prompt("b", 0, bytes(160)))
    assert store.get("a") is None
    assert store.get("b") == (0, bytes(160))
