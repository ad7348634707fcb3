"""The stereo mixer: alignment on one clock, silence for gaps, late/duplicate rules, bounds."""

from __future__ import annotations

import numpy as np
import pytest

from pbx.audio import g711
from pbx.audio.recorder import JITTER_WINDOW, MAX_PACKET, Side, StereoRecorder
from pbx.rtp.packet import build_rtp

CALLER, ANSWERER = Side.CALLER, Side.ANSWERER


def _tone(value: int, n: int = 160) -> np.ndarray:
    return np.full(n, value, dtype="<i2")


def _frames(out: bytes) -> np.ndarray:
    return np.frombuffer(out, dtype="<i2").reshape(-1, 2)


def test_both_sides_at_the_same_time_emit_at_once() -> None:
    rec = StereoRecorder()
    assert rec.feed(CALLER, _tone(100), arrival=0) == b""
    out = _frames(rec.feed(ANSWERER, _tone(-200), arrival=0))
    assert out.shape == (160, 2)
    assert out[:, 0].tolist() == [100] * 160  # caller left
    assert out[:, 1].tolist() == [-200] * 160  # answerer right
    assert rec.flush() == b""


def test_a_silent_side_is_silence_and_emission_waits_one_window() -> None:
    rec = StereoRecorder()
    out = b""
    for i in range(20):
        chunk = rec.feed(CALLER, _tone(i + 1), arrival=160 * i)
        out += chunk
        # Never more than the window behind the caller's extent.
        assert 160 * (i + 1) - rec.emitted <= JITTER_WINDOW
    out += rec.flush()
    frames = _frames(out)
    assert len(frames) == 20 * 160
    assert np.all(frames[:, 1] == 0)
    assert frames[::160, 0].tolist() == list(range(1, 21))


def test_lost_packet_leaves_exact_silence_with_rtp_timestamps() -> None:
    rec = StereoRecorder()
    out = b""
    for i in (0, 1, 3):  # packet 2 lost
        out += rec.feed(CALLER, _tone(7), arrival=160 * i + 5, rtp_timestamp=90_000 + 160 * i)
    out += rec.flush()
    left = _frames(out)[:, 0]
    assert len(left) == 5 + 4 * 160
    assert left[:5].tolist() == [0] * 5  # anchored at the first packet's arrival
    assert np.all(left[5 + 320 : 5 + 480] == 0)
    assert np.all(left[5 + 480 :] == 7)


def test_arrival_jitter_does_not_move_samples_when_rtp_timestamps_are_given() -> None:
    rec = StereoRecorder()
    jitter = [0, 37, -12, 90, 3, 150, -40, 10]
    out = b""
    for i, j in enumerate(jitter):
        out += rec.feed(CALLER, _tone(i + 1), arrival=1000 + 160 * i + j, rtp_timestamp=160 * i)
    out += rec.flush()
    left = _frames(out)[1000:, 0]
    assert left.tolist() == [v for i in range(len(jitter)) for v in [i + 1] * 160]
    assert rec.stats.late == rec.stats.overlap == rec.stats.reanchors == 0


def test_rtp_timestamps_wrap_around() -> None:
    rec = StereoRecorder()
    base = 2**32 - 320
    for i in range(5):
        rec.feed(CALLER, _tone(i + 1), arrival=160 * i, rtp_timestamp=(base + 160 * i) % 2**32)
    left = _frames(rec.flush())[:, 0]
    assert left[::160].tolist() == [1, 2, 3, 4, 5]
    assert rec.stats.reanchors == 0


def test_a_timestamp_jump_reanchors_on_arrival() -> None:
    rec = StereoRecorder()
    rec.feed(CALLER, _tone(1), arrival=0, rtp_timestamp=5000)
    rec.feed(CALLER, _tone(2), arrival=160, rtp_timestamp=5160)
    # New SSRC after a re-INVITE: unrelated timestamps, placed where it arrived.
    rec.feed(CALLER, _tone(3), arrival=480, rtp_timestamp=123_456_789)
    rec.feed(CALLER, _tone(4), arrival=640, rtp_timestamp=123_456_789 + 160)
    left = _frames(rec.flush())[:, 0]
    assert rec.stats.reanchors == 1
    assert left[::160].tolist() == [1, 2, 0, 3, 4]


def test_late_samples_are_dropped_and_counted() -> None:
    rec = StereoRecorder()
    out = b"".join(rec.feed(CALLER, _tone(1), arrival=160 * i) for i in range(12))
    written = rec.emitted
    assert written > 0
    out += rec.feed(ANSWERER, _tone(9), arrival=written - 100)  # straddles what was written
    assert rec.stats.late == 100
    right = _frames(out + rec.flush())[:, 1]
    assert np.all(right[:written] == 0)
    assert right[written : written + 60].tolist() == [9] * 60


def test_duplicates_and_overlaps_keep_the_first_samples() -> None:
    rec = StereoRecorder()
    rec.feed(ANSWERER, _tone(5), arrival=0)
    rec.feed(ANSWERER, _tone(5), arrival=0)  # duplicate packet
    rec.feed(ANSWERER, _tone(6), arrival=80)  # overlaps the second half
    right = _frames(rec.flush())[:, 1]
    assert rec.stats.overlap == 160 + 80
    assert right.tolist() == [5] * 160 + [6] * 80


def test_advance_writes_silence_when_nobody_sends() -> None:
    rec = StereoRecorder()
    assert rec.advance(JITTER_WINDOW) == b""
    out = rec.advance(8000 + JITTER_WINDOW)
    assert len(_frames(out)) == 8000
    assert not any(out)
    out = rec.feed(CALLER, _tone(3), arrival=8000 + JITTER_WINDOW)
    left = _frames(out + rec.flush())[:, 0]
    assert left[:JITTER_WINDOW].tolist() == [0] * JITTER_WINDOW
    assert left[JITTER_WINDOW:].tolist() == [3] * 160


def test_buffer_stays_bounded_over_a_long_one_sided_call() -> None:
    rec = StereoRecorder()
    for i in range(3000):  # a minute of caller audio, answerer silent
        rec.feed(CALLER, _tone(1), arrival=160 * i)
        assert len(rec._buf) <= 8 * JITTER_WINDOW + MAX_PACKET  # never grew
        assert max(c.extent for c in rec._clocks) - rec.emitted <= JITTER_WINDOW + 160
    assert rec.emitted + len(_frames(rec.flush())) == 3000 * 160


def test_bytes_input_negative_arrival_and_oversized_packets() -> None:
    rec = StereoRecorder()
    out = rec.feed(CALLER, _tone(4, 10).tobytes(), arrival=-4)
    assert rec.stats.late == 4
    out += rec.feed(ANSWERER, _tone(2, MAX_PACKET + 50), arrival=0)
    assert rec.stats.oversized == 50
    frames = _frames(out + rec.flush())
    assert len(frames) == MAX_PACKET
    assert frames[:6, 0].tolist() == [4] * 6


@pytest.mark.parametrize("side", [CALLER, ANSWERER])
def test_flush_on_an_empty_recorder_is_empty(side: Side) -> None:
    rec = StereoRecorder()
    assert rec.flush() == b""
    rec.feed(side, np.zeros(0, dtype="<i2"), arrival=100)
    assert rec.flush() == b""


def test_a_long_silence_does_not_grow_the_buffer() -> None:
    rec = StereoRecorder()
    size = len(rec._buf)
    out = rec.feed(CALLER, _tone(5), arrival=0)
    out += rec.advance(8000 * 600)  # ten minutes on hold, nobody sent anything
    assert len(rec._buf) == size
    out += rec.feed(ANSWERER, _tone(6), arrival=8000 * 600)
    out += rec.feed(CALLER, _tone(7), arrival=8000 * 600)
    frames = _frames(out + rec.flush())
    assert len(frames) == 8000 * 600 + 160
    assert frames[:160, 0].tolist() == [5] * 160
    assert np.count_nonzero(frames[160 : 8000 * 600]) == 0
    assert frames[-160:].tolist() == [[7, 6]] * 160


def test_a_side_that_goes_quiet_stays_silent_after_the_buffer_wraps() -> None:
    rec = StereoRecorder()
    out = b""
    for i in range(500):  # 10 s: the buffer's live part is moved down several times
        out += rec.feed(CALLER, _tone(3), arrival=160 * i)
        if i < 150:
            out += rec.feed(ANSWERER, _tone(-4), arrival=160 * i)
    frames = _frames(out + rec.flush())
    assert len(frames) == 500 * 160
    assert np.all(frames[:, 0] == 3)
    assert np.all(frames[: 150 * 160, 1] == -4)
    assert np.all(frames[150 * 160 :, 1] == 0)


def test_feed_rtp_decodes_g711_and_skips_everything_else() -> None:
    rec = StereoRecorder()
    tone = _tone(1000).tobytes()
    out = rec.feed_rtp(CALLER, build_rtp(0, 1, 5000, 9, g711.encode(0, tone)), arrival=0)
    out += rec.feed_rtp(ANSWERER, build_rtp(8, 1, 77, 10, g711.encode(8, tone)), arrival=0)
    out += rec.feed_rtp(CALLER, build_rtp(101, 2, 5160, 9, b"\x01\x0a\x00\xa0"), arrival=160)
    out += rec.feed_rtp(CALLER, build_rtp(13, 3, 5160, 9, b"\x40"), arrival=160)  # comfort noise
    out += rec.feed_rtp(CALLER, b"\x00junk", arrival=160)
    frames = _frames(out + rec.flush())
    assert rec.stats.skipped == 3
    assert len(frames) == 160
    assert abs(int(frames[0, 0]) - 1000) <= g711.max_error(0, 1000)
    assert abs(int(frames[0, 1]) - 1000) <= g711.max_error(8, 1000)
