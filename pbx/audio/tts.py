"""Text-to-speech prompts with Debian's espeak-ng (I/O edge: runs a subprocess).

This is the one impure module of `pbx.audio`: it runs `espeak-ng --stdout`
with the text on stdin (never on the command line, so text starting with a
dash is never taken for an option), reads the WAV it writes (22050 Hz mono,
with a streaming placeholder size that `pbx.audio.wav` accepts) and hands it
to `convert_prompt`.

Decisions:
- Missing espeak-ng is `TtsUnavailable`, one line naming the Debian package.
- Bounded: text up to `MAX_TEXT` characters, `TIMEOUT` seconds of wall time
  (the child is killed after that by subprocess.run), output up to the
  prompt limits (60 s); voice names are checked against a strict pattern.
- A failure of espeak-ng itself (bad voice, crash) is `TtsError` with the
  first line of its stderr.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from pbx.audio.prompt import Prompt, convert_prompt
from pbx.errors import InputError

EXECUTABLE = "espeak-ng"
TIMEOUT = 10.0
MAX_TEXT = 1000
DEFAULT_VOICE = "en-us"
DEFAULT_SPEED = (
    160  # words per minute, espeak-ng's default is 175; a bit slower is clearer on G.711
)
_VOICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,39}")


class TtsError(InputError):
    """Text that could not be rendered: empty, too long, bad voice, espeak-ng failed."""


class TtsUnavailable(TtsError):
    """espeak-ng is not installed."""


def render_wav(
    text: str,
    *,
    voice: str = DEFAULT_VOICE,
    speed: int = DEFAULT_SPEED,
    timeout: float = TIMEOUT,
    executable: str = EXECUTABLE,
) -> bytes:
    """`text` spoken by espeak-ng, as the WAV bytes it writes."""
    spoken = " ".join(text.split())
    if not spoken:
        raise TtsError("prompt text is empty")
    if len(spoken) > MAX_TEXT:
        raise TtsError(f"prompt text is {len(spoken)} characters; the limit is {MAX_TEXT}")
    if not _VOICE.fullmatch(voice):
        raise TtsError(f"bad espeak-ng voice name {voice!r}")
    if not 80 <= speed <= 450:
        raise TtsError(f"speech speed {speed} outside 80-450 words per minute")
    path = shutil.which(executable)
    if path is None:
        raise TtsUnavailable(
            f"{executable} is not installed (Debian: apt install espeak-ng); use --file instead"
        )
    return _run(path, spoken, voice, speed, timeout)


def _run(path: str, text: str, voice: str, speed: int, timeout: float) -> bytes:
    command = [path, "--stdout", "-v", voice, "-s", str(speed)]
    try:
        done = subprocess.run(  # noqa: S603 - espeak-ng by its resolved path, text on stdin, never in argv
            command, input=text.encode(), capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise TtsError(f"espeak-ng did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise TtsUnavailable(f"cannot run {path}: {exc.strerror or exc}") from None
    if done.returncode != 0 or not done.stdout:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[0] if lines else f"exit status {done.returncode}"
        raise TtsError(f"espeak-ng failed: {reason}")
    return done.stdout


def text_prompt(text: str, *, voice: str = DEFAULT_VOICE, speed: int = DEFAULT_SPEED) -> Prompt:
    """`text` rendered and converted to a stored 8 kHz prompt."""
    return convert_prompt(render_wav(text, voice=voice, speed=speed))
