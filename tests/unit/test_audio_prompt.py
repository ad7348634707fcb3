"""Prompt conversion: any PCM WAV to 8 kHz mono with soxr; limits refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from pbx.audio import prompt as prompt_mod
from pbx.audio import wav
from pbx.audio.prompt import MAX_SECONDS, PromptError, convert_prompt
from pbx.errors import InputError
from tests.audio_support import int24, pcm_wav, sine, wav16


def _dominant_hz(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def _int16(x: np.ndarray) -> np.ndarray:
    return np.round(x * 32767).astype("<i2")


def test_44k1_stereo_sine_keeps_its_frequency_and_length() -> None:
    tone = _int16(sine(1000.0, 44100, 2.0))
    result = convert_prompt(wav16(np.stack([tone, tone], axis=1), 44100))
    assert result.frames == 16000
    assert result.seconds == pytest.approx(2.0)
    assert _dominant_hz(result.samples()) == pytest.approx(1000.0, abs=2.0)
    assert _rms(result.samples()) == pytest.approx(0.5 / np.sqrt(2) * 32768, rel=0.02)


def test_16k_mono() -> None:
    result = convert_prompt(wav16(_int16(sine(440.0, 16000, 1.0)), 16000))
    assert result.frames == 8000
    assert _dominant_hz(result.samples()) == pytest.approx(440.0, abs=2.0)


def test_8_bit_11025() -> None:
    wave8 = np.round(sine(700.0, 11025, 1.0) * 127 + 128).astype(np.uint8).tobytes()
    result = convert_prompt(pcm_wav(1, 1, 11025, 8, wave8))
    assert result.frames == 8000
    assert _dominant_hz(result.samples()) == pytest.approx(700.0, abs=2.0)


def test_24_bit_48k() -> None:
    values = np.round(sine(2500.0, 48000, 0.5) * 0x7FFFFF).astype(int).tolist()
    result = convert_prompt(pcm_wav(1, 1, 48000, 24, int24(values)))
    assert result.frames == 4000
    assert _dominant_hz(result.samples()) == pytest.approx(2500.0, abs=4.0)


def test_tone_above_4khz_is_filtered_not_folded_back() -> None:
    # 6 kHz at 44.1 kHz would alias to 2 kHz with a naive decimator.
    result = convert_prompt(wav16(_int16(sine(6000.0, 44100, 1.0)), 44100))
    steady = result.samples()[400:-400]  # skip the edges: an abrupt start has a wide spectrum
    assert _rms(steady) < 30  # 0.5 full scale in, under -55 dB out


def test_stereo_is_averaged() -> None:
    tone = _int16(sine(500.0, 8000, 0.5))
    opposite = convert_prompt(wav16(np.stack([tone, -tone], axis=1), 8000))
    assert np.abs(opposite.samples()).max() <= 1
    one_side = convert_prompt(wav16(np.stack([tone, np.zeros_like(tone)], axis=1), 8000))
    assert np.abs(one_side.samples().astype(int) - tone.astype(int) / 2).max() <= 1


def test_stored_prompt_converts_to_itself_exactly() -> None:
    tone = _int16(sine(300.0, 8000, 0.3))
    first = convert_prompt(wav16(tone, 8000))
    assert first.samples().tolist() == tone.tolist()
    assert convert_prompt(first.to_wav()) == first
    assert wav.read_info(first.to_wav()).rate == 8000


def test_exactly_the_limit_is_accepted_and_over_it_refused() -> None:
    at_limit = convert_prompt(wav16(np.zeros(int(MAX_SECONDS * 8000), dtype="<i2"), 8000))
    assert at_limit.seconds == MAX_SECONDS
    with pytest.raises(PromptError, match=r"61\.0 s long; the limit is 60 s"):
        convert_prompt(wav16(np.zeros(61 * 16000, dtype="<i2"), 16000))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a WAV"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not a WAV"),
        (pcm_wav(1, 1, 8000, 16, b""), "empty"),
        (pcm_wav(1, 1, 44100, 16, b"\x01\x00"), "shorter than one sample"),
        (pcm_wav(85, 1, 8000, 16, b"\x00" * 400), "unsupported"),  # 85 = MP3 in WAV
    ],
)
def test_bad_files_are_one_line_input_errors(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        convert_prompt(data)
    assert "\n" not in str(caught.value)


def test_oversized_file_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompt_mod, "MAX_FILE_BYTES", 1000)
    with pytest.raises(PromptError, match="limit is 1000"):
        convert_prompt(wav16(np.zeros(1000, dtype="<i2"), 8000))
