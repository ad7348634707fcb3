"""G.711 PCMU/PCMA tables: ITU-T G.711 vectors, CPython's audioop as a second opinion."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pbx.audio import g711

ALL_CODES = bytes(range(256))
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32)


def _sample(code: int, pt: int) -> int:
    return int(g711.decode_samples(pt, bytes([code]))[0])


@pytest.mark.parametrize(
    ("pt", "code", "value"),
    [
        (g711.PT_PCMU, 0xFF, 0),  # +0
        (g711.PT_PCMU, 0x7F, 0),  # -0
        (g711.PT_PCMU, 0x80, 32124),  # largest positive
        (g711.PT_PCMU, 0x00, -32124),
        (g711.PT_PCMU, 0xF0, 120),  # segment 0, step 8 (16-bit scale)
        (g711.PT_PCMU, 0xEF, 132),  # first code of segment 1
        (g711.PT_PCMA, 0xD5, 8),  # A-law has no zero: +-8 (half the first step)
        (g711.PT_PCMA, 0x55, -8),
        (g711.PT_PCMA, 0xAA, 32256),
        (g711.PT_PCMA, 0x2A, -32256),
    ],
)
def test_known_decode_values(pt: int, code: int, value: int) -> None:
    assert _sample(code, pt) == value


@pytest.mark.parametrize(
    ("pt", "sample", "code"),
    [
        (g711.PT_PCMU, 0, 0xFF),
        (g711.PT_PCMU, -1, 0x7F),
        (g711.PT_PCMU, 32767, 0x80),
        (g711.PT_PCMU, -32768, 0x00),
        (g711.PT_PCMA, 0, 0xD5),
        (g711.PT_PCMA, -1, 0x55),
        (g711.PT_PCMA, 32767, 0xAA),
        (g711.PT_PCMA, -32768, 0x2A),
    ],
)
def test_known_encode_values(pt: int, sample: int, code: int) -> None:
    assert g711.encode(pt, sample.to_bytes(2, "little", signed=True)) == bytes([code])


@pytest.mark.parametrize("pt", [g711.PT_PCMU, g711.PT_PCMA])
def test_tables_are_odd_symmetric_and_monotonic(pt: int) -> None:
    values = g711.decode_samples(pt, ALL_CODES).astype(int)
    positive = sorted(v for v in values if v > 0)
    assert len(set(positive)) == (127 if pt == g711.PT_PCMU else 128)
    assert sorted(-v for v in values if v < 0) == positive
    encoded = g711.encode_samples(pt, np.array(positive, dtype=np.int16))
    assert g711.decode_samples(pt, encoded).tolist() == positive  # decoded values are fixed points


def test_decoding_then_encoding_gives_the_code_back_except_mu_law_minus_zero() -> None:
    for pt in (g711.PT_PCMU, g711.PT_PCMA):
        back = g711.encode(pt, g711.decode(pt, ALL_CODES))
        wrong = [c for c in range(256) if back[c] != c]
        assert wrong == ([0x7F] if pt == g711.PT_PCMU else [])


@pytest.mark.parametrize("pt", [g711.PT_PCMU, g711.PT_PCMA])
def test_round_trip_error_is_within_half_a_step_for_every_sample(pt: int) -> None:
    pcm = ALL_SAMPLES.astype(np.int16)
    error = np.abs(g711.decode_samples(pt, g711.encode_samples(pt, pcm)).astype(int) - ALL_SAMPLES)
    bound = np.array([g711.max_error(pt, int(x)) for x in ALL_SAMPLES])
    assert np.all(error <= bound)
    # The bound is tight enough to mean something: small signals stay small.
    assert error[np.abs(ALL_SAMPLES) < 64].max() <= (4 if pt == g711.PT_PCMU else 9)


def test_decode_matches_cpython_audioop() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    assert g711.decode(g711.PT_PCMU, ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert g711.decode(g711.PT_PCMA, ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)
    pcm = ALL_SAMPLES.astype("<i2").tobytes()
    assert g711.encode(g711.PT_PCMA, pcm) == audioop.lin2alaw(pcm, 2)
    # audioop's mu-law floors negative samples to 14 bits first (x >> 2), so a few
    # negative samples land one code away; positive ones agree exactly.
    ours = np.frombuffer(g711.encode(g711.PT_PCMU, pcm), dtype=np.uint8)
    theirs = np.frombuffer(audioop.lin2ulaw(pcm, 2), dtype=np.uint8)
    differ = ALL_SAMPLES[ours != theirs]
    assert differ.max() < 0
    assert np.all(np.abs(ours.astype(int) - theirs.astype(int)) <= 1)


def test_one_frame_sizes() -> None:
    frame = (np.sin(np.arange(160) / 5) * 8000).astype("<i2").tobytes()
    for pt in (g711.PT_PCMU, g711.PT_PCMA):
        coded = g711.encode(pt, frame)
        assert len(coded) == 160
        assert len(g711.decode(pt, coded)) == 320


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="even size"):
        g711.encode(g711.PT_PCMU, b"\x00\x01\x02")
    with pytest.raises(ValueError, match=r"not G\.711"):
        g711.decode(18, b"\x00")
    assert g711.decode(g711.PT_PCMU, b"") == b""
    assert g711.encode(g711.PT_PCMA, b"") == b""
    assert g711.SILENCE[g711.PT_PCMU] == 0xFF
    assert abs(_sample(g711.SILENCE[g711.PT_PCMA], g711.PT_PCMA)) <= 8
