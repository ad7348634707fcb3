"""Properties of the audio building blocks: codecs, mixer, RTP stream, screening, parsers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.audio import g711, wav
from pbx.audio.prompt import convert_prompt
from pbx.audio.recorder import JITTER_WINDOW, Side, StereoRecorder
from pbx.audio.text import FIELDS, check_template, render
from pbx.errors import InputError
from pbx.rtp.dtmf import DtmfDetector, DtmfError, parse_event, parse_info
from pbx.rtp.packet import peek_rtp
from pbx.rtp.payload import split
from pbx.rtp.stream import MAX_BURST, PromptStream, due
from pbx.rules.screening import FINAL, Bridge, HuntOn, Input, Release, Screening
from tests.audio_support import fmt_chunk, riff

laws = st.sampled_from([g711.PT_PCMU, g711.PT_PCMA])
samples16 = st.lists(st.integers(-32768, 32767), max_size=400)


@given(laws, samples16)
def test_g711_round_trip_within_quantisation_bound(pt: int, values: list[int]) -> None:
    pcm = np.array(values, dtype="<i2")
    back = g711.decode_samples(pt, g711.encode_samples(pt, pcm)).astype(int)
    for x, y in zip(values, back.tolist(), strict=True):
        assert abs(x - y) <= g711.max_error(pt, x)


@given(laws, st.binary(max_size=400))
def test_g711_decode_then_encode_is_identity_on_codes(pt: int, payload: bytes) -> None:
    back = g711.encode(pt, g711.decode(pt, payload))
    expected = payload.replace(b"\x7f", b"\xff") if pt == g711.PT_PCMU else payload
    assert back == expected  # mu-law -0 (0x7F) comes back as +0 (0xFF)


# --- recorder -----------------------------------------------------------------------------

packet = st.tuples(
    st.sampled_from([Side.CALLER, Side.ANSWERER]),
    st.integers(-500, 20_000),  # arrival in samples
    st.integers(0, 400),  # length
)


@given(st.lists(packet, max_size=40))
def test_recorder_length_is_the_furthest_sample_and_channels_never_swap(
    packets: list[tuple[Side, int, int]],
) -> None:
    rec = StereoRecorder()
    out = b""
    for i, (side, arrival, length) in enumerate(packets):
        # Caller values are positive, answerer values negative: a swap would show.
        value = (i % 100 + 1) * (1 if side is Side.CALLER else -1)
        out += rec.feed(side, np.full(length, value, dtype="<i2"), arrival=arrival)
    out += rec.flush()
    frames = np.frombuffer(out, dtype="<i2").reshape(-1, 2)
    ends = [arrival + length for _, arrival, length in packets if length]
    assert len(frames) == max([0, *ends])
    assert np.all(frames[:, 0] >= 0)
    assert np.all(frames[:, 1] <= 0)
    fed = {s: sum(n for side, _, n in packets if side is s) for s in Side}
    assert np.count_nonzero(frames[:, 0]) <= fed[Side.CALLER]
    assert np.count_nonzero(frames[:, 1]) <= fed[Side.ANSWERER]
    assert rec.emitted == len(frames)


@given(
    st.integers(0, 2**32 - 1),
    st.lists(st.integers(-JITTER_WINDOW // 2, JITTER_WINDOW // 2), min_size=1, max_size=30),
)
def test_recorder_output_does_not_depend_on_the_timestamp_base(
    ts0: int, jitters: list[int]
) -> None:
    def run(base: int) -> bytes:
        rec = StereoRecorder()
        out = b""
        for i, jitter in enumerate(jitters):
            pcm = np.full(160, i + 1, dtype="<i2")
            ts = (base + 160 * i) % 2**32
            out += rec.feed(Side.CALLER, pcm, arrival=2000 + 160 * i + jitter, rtp_timestamp=ts)
        return out + rec.flush()

    assert run(ts0) == run(0)


class _ReferenceMixer:
    """The recorder's rules with unbounded dicts: what StereoRecorder must produce."""

    def __init__(self) -> None:
        self.emitted = 0
        self.extent = [0, 0]
        self.values: list[dict[int, int]] = [{}, {}]

    def feed(self, channel: int, arrival: int, pcm: list[int]) -> bytes:
        end = arrival + len(pcm)
        if end > self.emitted and pcm:
            self.extent[channel] = max(self.extent[channel], end)
        for i, value in enumerate(pcm):
            if arrival + i >= self.emitted:
                self.values[channel].setdefault(arrival + i, value)  # first write wins
        return self.emit(max(min(self.extent), max(self.extent) - JITTER_WINDOW))

    def emit(self, target: int) -> bytes:
        frames = [
            (self.values[0].get(p, 0), self.values[1].get(p, 0))
            for p in range(self.emitted, target)
        ]
        self.emitted = max(self.emitted, target)
        return np.array(frames, dtype="<i2").reshape(-1, 2).tobytes()


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.integers(-300, 700),
            st.integers(0, 480),
            st.sampled_from([None, None, None, 0, 900, 30_000]),
        ),
        min_size=1,
        max_size=120,
    )
)
def test_recorder_matches_a_reference_model_over_long_runs(
    steps: list[tuple[bool, int, int, int | None]],
) -> None:
    rec, ref = StereoRecorder(), _ReferenceMixer()
    arrival = 0
    for i, (is_caller, step, length, quiet) in enumerate(steps):
        arrival = max(-100, arrival + step)  # drifts forward far past the buffer size
        if quiet is not None:  # time passes with nobody sending
            arrival += quiet
            ready = max(min(ref.extent), max(ref.extent) - JITTER_WINDOW)
            assert rec.advance(arrival) == ref.emit(max(ready, arrival - JITTER_WINDOW))
        pcm = [(i * 7 + k) % 30000 + 1 for k in range(length)]
        side = Side.CALLER if is_caller else Side.ANSWERER
        got = rec.feed(side, np.array(pcm, dtype="<i2"), arrival=arrival)
        assert got == ref.feed(side.value, arrival, pcm)
    assert rec.flush() == ref.emit(max(ref.extent))


# --- RTP stream ---------------------------------------------------------------------------


@given(
    st.integers(0, 2000),
    st.integers(0, 0xFFFF),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    laws,
)
def test_stream_seq_and_ts_are_continuous_over_wraparound(
    samples: int, seq0: int, ts0: int, ssrc: int, pt: int
) -> None:
    pcm = np.arange(samples, dtype="<i2").tobytes()
    stream = PromptStream(pcm, pt, ssrc, seq0, ts0, start=0.0)
    assert stream.packet_count == -(-samples // 160)
    headers = [peek_rtp(stream.packet(i)) for i in range(stream.packet_count)]
    for i, head in enumerate(headers):
        assert head is not None
        assert (head.seq, head.timestamp) == ((seq0 + i) % 2**16, (ts0 + 160 * i) % 2**32)
        assert (head.ssrc, head.payload_type, head.marker) == (ssrc, pt, i == 0)
        assert len(stream.packet(i)) == 172


@given(st.integers(1, 60), st.lists(st.floats(0.0, 0.3), min_size=1, max_size=80))
def test_stream_pacing_never_early_never_a_big_burst_nothing_lost(
    packets: int, steps: list[float]
) -> None:
    stream = PromptStream(b"\x00\x00" * 160 * packets, 0, 1, 0, 0, start=5.0)
    now, sent = 5.0, []
    for step in [*steps, *[0.3] * (packets + 1)]:  # run on until every packet is out
        now += step
        batch = stream.next_packets(now)
        assert len(batch) <= MAX_BURST
        sent += batch
        if batch:  # the last packet sent was due (never early)
            assert due(stream.start, len(sent) - 1) <= now + 1e-9
        deadline = stream.next_deadline()
        assert deadline is None or deadline > now - 1e-9  # nothing overdue is left behind
    assert sent == [stream.packet(i) for i in range(packets)]


# --- screening ----------------------------------------------------------------------------

inputs = st.lists(
    st.tuples(st.sampled_from([*Input, "digit1", "digit5", "timer"]), st.floats(0, 5)),
    max_size=30,
)


@given(st.booleans(), st.none() | st.floats(0, 10), inputs)
def test_screening_any_input_sequence_is_defined_and_decides_once(
    screen: bool, whisper: float | None, events: list[tuple[object, float]]
) -> None:
    machine, actions = Screening.start(0.0, whisper_seconds=whisper, screen=screen)
    now = 0.0
    for event, dt in events:
        now += dt
        if event == "timer":
            actions += machine.handle_timer(now)
        elif isinstance(event, str):
            actions += machine.digit(event[-1], now)
        else:
            assert isinstance(event, Input)
            actions += machine.handle(event, now)
        if machine.finished:
            assert machine.next_deadline() is None
    outcomes = [a for a in actions if isinstance(a, Bridge | HuntOn | Release)]
    assert len(outcomes) == (1 if machine.state in FINAL else 0)


# --- parsers: arbitrary bytes -------------------------------------------------------------

wav_prefix = st.sampled_from(
    [
        b"",
        b"RIFF\x00\x00\x00\x00WAVE",
        riff(fmt_chunk(1, 1, 8000, 16)),
        riff(fmt_chunk(1, 2, 44100, 24)),
    ]
)


@settings(max_examples=300)
@given(wav_prefix, st.binary(max_size=300))
def test_wav_parser_returns_a_value_or_wav_error(prefix: bytes, tail: bytes) -> None:
    data = prefix + tail
    try:
        info = wav.read_info(data)
    except wav.WavError as exc:
        message = str(exc)
        info = None
    if info is None:
        assert "\n" not in message
        return
    audio = wav.decode(data, info)
    assert audio.samples.shape == (info.frames, info.channels)
    assert np.all(np.abs(audio.samples) <= 1.0)


@settings(max_examples=100)
@given(wav_prefix, st.binary(max_size=300))
def test_prompt_conversion_returns_a_prompt_or_an_input_error(prefix: bytes, tail: bytes) -> None:
    try:
        result = convert_prompt(prefix + tail)
    except InputError:
        return
    assert result.frames > 0


@given(st.binary(max_size=12))
def test_telephone_event_parser_returns_a_value_or_dtmf_error(payload: bytes) -> None:
    try:
        event = parse_event(payload)
    except DtmfError:
        assert len(payload) < 4
        return
    assert 0 <= event.event <= 255
    assert 0 <= event.volume <= 63


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(min_size=4, max_size=4))))
def test_detector_reports_each_timestamp_at_most_once(packets: list[tuple[int, bytes]]) -> None:
    det = DtmfDetector()
    reported = [ts for ts, p in packets if det.feed(ts, p) is not None]
    assert len(reported) == len(set(reported)) or len(set(ts for ts, _ in packets)) > 16


@given(
    st.sampled_from(["application/dtmf-relay", "application/dtmf", "application/sdp", "x"]),
    st.binary(max_size=200) | st.text(max_size=60).map(str.encode),
)
def test_info_parser_returns_a_value_or_dtmf_error(content_type: str, body: bytes) -> None:
    message = ""
    try:
        parse_info(content_type, body)
    except DtmfError as exc:
        message = str(exc)
    assert "\n" not in message


@given(st.binary(max_size=80))
def test_rtp_split_returns_a_packet_or_none(data: bytes) -> None:
    parsed = split(data)
    if parsed is not None:
        assert len(parsed.payload) <= len(data) - 12
        assert data.find(parsed.payload) >= 12 or parsed.payload == b""


@given(
    st.text(alphabet="{}!:.[]\n sourcenumbtag0", max_size=40) | st.text(max_size=40),
    st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=20)),
)
def test_whisper_templates_render_or_are_refused_in_one_line(
    template: str, values: dict[str, str]
) -> None:
    message = ""
    try:
        check_template(template)
    except InputError as exc:
        message = str(exc)
    if message:
        assert "\n" not in message
        return
    assert isinstance(render(template, values), str)


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=200), st.sampled_from([1, 2]))
def test_wav_writer_output_parses_back_exactly(values: list[int], channels: int) -> None:
    values = values[: len(values) // channels * channels] or [0] * channels
    pcm = np.array(values, dtype="<i2")
    data = wav.encode_pcm16(pcm.tobytes(), rate=8000, channels=channels)
    audio = wav.parse(data)
    assert audio.channels == channels
    assert (audio.samples.reshape(-1) * 32768).astype(int).tolist() == values


@given(st.integers(0, 10**9))
def test_repair_keeps_whole_frames_and_never_grows_a_real_file(size: int) -> None:
    fix = wav.repair(size)
    assert (fix.size - wav.HEADER_SIZE) % 4 == 0
    assert fix.size == wav.HEADER_SIZE or fix.size <= size
    assert size - fix.size < 4 or size < wav.HEADER_SIZE
    assert int.from_bytes(fix.header[40:44], "little") == fix.size - wav.HEADER_SIZE
    assert not wav.needs_repair(fix.header, fix.size)
