"""Whisper text templates: checked fields, safe rendering, numbers spoken digit by digit."""

from __future__ import annotations

import pytest

from pbx.audio.text import check_template, render, speakable_number
from pbx.errors import InputError


def test_render_fills_fields_and_speaks_numbers() -> None:
    text = render(
        "Call from {source} on {number}, caller {caller}",
        {"source": "Google Ads", "number": "+14155550101", "caller": "+442079460123"},
    )
    assert (
        text == "Call from Google Ads on 4 1 5, 5 5 5, 0 1 0 1, caller 4 4 2, 0 7 9, 4 6 0, 1 2 3"
    )


def test_missing_values_are_empty_and_double_braces_literal() -> None:
    assert render("{{tag}} {tag}!", {}) == "{tag} !"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Call from {src}", "not one of"),
        ("{source.__class__}", "not one of"),
        ("{source[0]}", "not one of"),
        ("{source!r}", "not one of"),
        ("{number:>20}", "not one of"),
        ("{}", "not one of"),
        ("{source\n}", "not one of"),  # the name is quoted, so the message stays one line
        ("Call from {source", "bad whisper text"),
        ("x" * 301, "limit is 300"),
    ],
)
def test_bad_templates_are_one_line_input_errors(template: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        check_template(template)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("number", "spoken"),
    [
        ("+14155550101", "4 1 5, 5 5 5, 0 1 0 1"),
        ("4155550101", "4 1 5, 5 5 5, 0 1 0 1"),
        ("+4930123456", "4 9 3, 0 1 2, 3 4 5, 6"),
        ("anonymous", "anonymous"),
        ("", ""),
    ],
)
def test_speakable_number(number: str, spoken: str) -> None:
    assert speakable_number(number) == spoken
