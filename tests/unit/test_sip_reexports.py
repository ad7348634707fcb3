"""pbx.sip.message re-exports what moved to pbx.sip.framing / pbx.sip.responses."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pbx.sip.framing
import pbx.sip.message
import pbx.sip.responses

MOVED = {
    "StreamFramer": pbx.sip.framing,
    "make_response": pbx.sip.responses,
    "response_for_error": pbx.sip.responses,
}


@pytest.mark.parametrize("name", sorted(MOVED))
def test_moved_names_are_the_same_objects(name: str) -> None:
    assert getattr(pbx.sip.message, name) is getattr(MOVED[name], name)
    assert name in pbx.sip.message.__all__


def test_unknown_attribute_still_raises() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = pbx.sip.message.no_such_name  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "first",
    [
        "import pbx.sip.framing",
        "import pbx.sip.responses",
        "from pbx.sip.message import StreamFramer, make_response, response_for_error",
    ],
)
def test_any_import_order_works(first: str) -> None:
    # A fresh interpreter: the new modules import message, message re-exports them.
    code = f"{first}\nfrom pbx.sip.message import StreamFramer\nprint(StreamFramer.__module__)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pbx.sip.framing"
