"""Prompt RTP streams: header fields, padding, pacing deadlines, stall handling, codec choice."""

from __future__ import annotations

import numpy as np
import pytest

from pbx.audio import g711
from pbx.rtp.packet import peek_rtp
from pbx.rtp.stream import MAX_BURST, PTIME, PromptStream, choose_codec, due


def _pcm(samples: int, value: int = 1000) -> bytes:
    return np.full(samples, value, dtype="<i2").tobytes()


def _stream(samples: int = 800, pt: int = g711.PT_PCMU, **kw: int) -> PromptStream:
    args = {"ssrc": 0x1234ABCD, "seq0": 100, "ts0": 5000} | kw
    return PromptStream(_pcm(samples), pt, args["ssrc"], args["seq0"], args["ts0"], start=10.0)


def test_headers_marker_seq_ts_and_payload() -> None:
    stream = _stream(800)
    assert stream.packet_count == 5
    headers = [peek_rtp(stream.packet(i)) for i in range(5)]
    assert [h.marker for h in headers if h] == [True, False, False, False, False]
    assert [h.seq for h in headers if h] == [100, 101, 102, 103, 104]
    assert [h.timestamp for h in headers if h] == [5000 + 160 * i for i in range(5)]
    assert {(h.ssrc, h.payload_type, h.version) for h in headers if h} == {(0x1234ABCD, 0, 2)}
    payload = stream.packet(0)[12:]
    assert len(stream.packet(0)) == 172
    assert g711.decode(0, payload) == g711.decode(0, g711.encode(0, _pcm(160)))


def test_pcma_and_padding_of_the_last_packet() -> None:
    stream = _stream(170, pt=g711.PT_PCMA)
    assert stream.packet_count == 2
    last = stream.packet(1)[12:]
    assert len(last) == 160
    assert last[10:] == bytes([g711.SILENCE[g711.PT_PCMA]]) * 150
    assert peek_rtp(stream.packet(1)).payload_type == 8  # type: ignore[union-attr]


def test_sequence_and_timestamp_wrap() -> None:
    stream = _stream(480, seq0=65535, ts0=2**32 - 160)
    headers = [peek_rtp(stream.packet(i)) for i in range(3)]
    assert [h.seq for h in headers if h] == [65535, 0, 1]
    assert [h.timestamp for h in headers if h] == [2**32 - 160, 0, 160]


def test_paced_in_real_time() -> None:
    stream = _stream(800)
    assert stream.next_deadline() == 10.0
    assert stream.next_packets(9.999) == []
    sent = []
    now = 10.0
    while (deadline := stream.next_deadline()) is not None:
        assert deadline == pytest.approx(due(10.0, len(sent)))
        now = deadline
        batch = stream.next_packets(now)
        assert len(batch) == 1
        sent += batch
    assert len(sent) == 5
    assert now == pytest.approx(10.0 + 4 * PTIME)
    assert stream.done
    assert stream.next_packets(now + 5) == []


def test_a_stall_sends_a_short_burst_then_slips_without_dropping_audio() -> None:
    stream = _stream(160 * 20)
    assert len(stream.next_packets(10.0)) == 1
    burst = stream.next_packets(10.5)  # the loop was blocked for half a second
    assert len(burst) == MAX_BURST
    assert stream.slips == 1
    deadline = stream.next_deadline()
    assert deadline == pytest.approx(10.5 + PTIME)
    assert stream.next_packets(deadline - 0.001) == []
    rest = []
    while (deadline := stream.next_deadline()) is not None:
        rest += stream.next_packets(deadline)
    seqs = [peek_rtp(p).seq for p in [stream.packet(0), *burst, *rest]]  # type: ignore[union-attr]
    assert seqs == list(range(100, 120))  # every packet, in order, none skipped


def test_a_small_delay_catches_up_without_slipping() -> None:
    stream = _stream(160 * 10)
    assert len(stream.next_packets(10.045)) == 3  # packets due at 0, 20, 40 ms
    assert stream.slips == 0
    assert stream.next_deadline() == pytest.approx(10.06)


def test_a_following_prompt_continues_seq_and_advances_ts_by_real_time() -> None:
    first = _stream(320)
    second = PromptStream.after(first, _pcm(160), start=first.start + 1.0)
    head = peek_rtp(second.packet(0))
    assert head is not None
    assert (head.ssrc, head.seq, head.marker) == (first.ssrc, 102, True)
    # first ended at 10.04 (2 packets); 0.96 s later = 7680 samples after its last 320.
    assert head.timestamp == 5000 + 320 + 7680


def test_empty_prompt_is_done_at_once_and_bad_codec_refused() -> None:
    assert _stream(0).done
    assert _stream(0).next_deadline() is None
    with pytest.raises(ValueError, match="not PCMU"):
        _stream(160, pt=18)
    with pytest.raises(IndexError):
        _stream(160).packet(1)


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [([0, 8, 101], 0), ([8, 0], 0), ([8, 101], 8), ([18, 101], None), ([], None), ([9], None)],
)
def test_choose_codec(offered: list[int], chosen: int | None) -> None:
    assert choose_codec(offered) == chosen
