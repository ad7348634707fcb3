"""Tones pbx plays itself: the voicemail beep (pure).

8 kHz mono 16-bit PCM like every prompt (`pbx.audio.prompt`). The beep is
1 kHz for 0.4 s at about -10 dBFS with 10 ms raised-cosine ramps at both
ends, so it does not click on G.711.
"""

from __future__ import annotations

import numpy as np

RATE = 8000


def beep(seconds: float = 0.4, frequency: float = 1000.0, amplitude: float = 0.3) -> bytes:
    """A sine tone with soft edges, as 8 kHz mono 16-bit LE PCM."""
    frames = max(1, round(seconds * RATE))
    t = np.arange(frames) / RATE
    wave = amplitude * np.sin(2 * np.pi * frequency * t)
    ramp = min(frames // 2, RATE // 100)
    if ramp:
        edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        wave[:ramp] *= edge
        wave[-ramp:] *= edge[::-1]
    return bytes(np.round(wave * 32767).astype("<i2").tobytes())
