"""The webhook verification snippet in docs/admin-guide.md, run as written.

It must accept what the dispatcher's `sign` produces now and refuse a
replay outside its window, a changed body and a malformed header.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pbx.attribution.integrations import sign

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "admin-guide.md"
SECRET = "whsec-test"
BODY = b'{"event":"call.ended","id":"ev-1"}'
NOW = 1_767_225_600


@pytest.fixture(scope="module")
def snippet() -> dict[str, Any]:
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("## 10. Webhooks") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no python block in section 10"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(GUIDE), "exec"), namespace)  # noqa: S102 - runs our own docs' snippet, the point of the test
    return namespace


def test_fresh_signature_is_accepted(snippet: dict[str, Any]) -> None:
    verify: Callable[..., bool] = snippet["verify"]
    assert verify(SECRET, sign(SECRET, BODY, NOW), BODY, now=NOW + 5)
    assert verify(SECRET, sign(SECRET, BODY, NOW), BODY, now=NOW - 5)  # small clock skew


def test_replay_outside_the_window_is_refused(snippet: dict[str, Any]) -> None:
    verify: Callable[..., bool] = snippet["verify"]
    window = snippet["REPLAY_WINDOW"]
    captured = sign(SECRET, BODY, NOW)
    assert verify(SECRET, captured, BODY, now=NOW + window)
    assert not verify(SECRET, captured, BODY, now=NOW + window + 1)
    # moving t forward breaks the MAC: the time stamp is inside what is signed
    forged = captured.replace(f"t={NOW}", f"t={NOW + window + 1}")
    assert not verify(SECRET, forged, BODY, now=NOW + window + 1)


@pytest.mark.parametrize(
    "header",
    ["", "sha256=abc", f"t={NOW}", f"v1={'0' * 64}", f"t=soon,v1={'0' * 64}"],
)
def test_malformed_or_old_style_headers_are_refused(snippet: dict[str, Any], header: str) -> None:
    assert not snippet["verify"](SECRET, header, BODY, now=NOW)


def test_other_body_or_secret_is_refused(snippet: dict[str, Any]) -> None:
    verify: Callable[..., bool] = snippet["verify"]
    header = sign(SECRET, BODY, NOW)
    assert not verify(SECRET, header, BODY + b" ", now=NOW)
    assert not verify("other", header, BODY, now=NOW)
