"""Text prompts with the real espeak-ng (Debian package; installed on dev and CI machines)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pbx.audio import tts
from pbx.audio.tts import TtsError, TtsUnavailable, render_wav, text_prompt
from pbx.audio.wav import read_info

# The Debian package espeak-ng; tests that do not run it do not need it.
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")


@needs_espeak
def test_text_becomes_an_8k_prompt_with_speech_in_it() -> None:
    result = text_prompt("This call may be recorded for quality and training purposes.")
    assert 1.5 < result.seconds < 10.0
    samples = result.samples().astype(np.float64)
    assert np.sqrt(np.mean(samples**2)) > 300  # not silence
    assert read_info(render_wav("hello")).rate == 22050  # espeak-ng's own rate, resampled


@needs_espeak
def test_text_starting_with_a_dash_is_spoken_not_an_option() -> None:
    assert text_prompt("--help me").seconds > 0.3


@needs_espeak
def test_longer_text_takes_longer() -> None:
    short = text_prompt("Call from Google Ads.")
    long = text_prompt("Call from Google Ads on number four one five, five five five, zero one.")
    assert long.seconds > short.seconds + 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": "  \n "}, "empty"),
        ({"text": "x" * (tts.MAX_TEXT + 1)}, "limit is 1000"),
        ({"text": "hi", "voice": "en; rm -rf"}, "bad espeak-ng voice"),
        pytest.param(
            {"text": "hi", "voice": "xx-nope"},
            "espeak-ng failed: .*voice does not exist",
            marks=needs_espeak,
        ),
        ({"text": "hi", "speed": 5}, "speed 5"),
        pytest.param({"text": "hi", "timeout": 0.0005}, "did not finish", marks=needs_espeak),
    ],
)
def test_bad_requests_get_one_line(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TtsError, match=message) as caught:
        render_wav(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_missing_espeak_is_a_clear_error() -> None:
    with pytest.raises(TtsUnavailable, match=r"not installed .*apt install espeak-ng"):
        render_wav("hello", executable="espeak-ng-not-here")
