"""RFC 4733 telephone events, once-per-event digits, SIP INFO DTMF bodies."""

from __future__ import annotations

import pytest

from pbx.rtp.dtmf import (
    DtmfDetector,
    DtmfError,
    InfoDigit,
    TelephoneEvent,
    parse_event,
    parse_info,
)


def _event(event: int, *, end: bool = False, volume: int = 10, duration: int = 160) -> bytes:
    return bytes([event, (0x80 if end else 0) | volume]) + duration.to_bytes(2, "big")


def test_parse_fields() -> None:
    assert parse_event(bytes([1, 0x8A, 0x03, 0x20])) == TelephoneEvent(1, True, 10, 800)
    assert parse_event(bytes([11, 0x7F, 0, 0])) == TelephoneEvent(11, False, 63, 0)  # R bit ignored
    assert parse_event(_event(1) + b"extra").event == 1


@pytest.mark.parametrize(
    ("event", "digit"), [(0, "0"), (9, "9"), (10, "*"), (11, "#"), (12, "A"), (15, "D"), (16, None)]
)
def test_digits(event: int, digit: str | None) -> None:
    assert parse_event(_event(event)).digit == digit


def test_short_payload_is_an_error() -> None:
    with pytest.raises(DtmfError, match="3 bytes"):
        parse_event(b"\x01\x02\x03")


def test_one_digit_per_event_timestamp_despite_three_end_packets() -> None:
    det = DtmfDetector()
    packets = [
        (8000, _event(1, duration=160)),
        (8000, _event(1, duration=320)),
        (8000, _event(1, duration=480)),
        (8000, _event(1, end=True, duration=640)),
        (8000, _event(1, end=True, duration=640)),
        (8000, _event(1, end=True, duration=640)),
        (9600, _event(1, end=True, duration=400)),  # a second press of 1 whose start was lost
        (9600, _event(1, end=True, duration=400)),
        (12000, _event(11)),
    ]
    assert [d for ts, p in packets if (d := det.feed(ts, p))] == ["1", "1", "#"]


def test_same_timestamp_on_another_ssrc_is_another_event() -> None:
    det = DtmfDetector()
    assert det.feed(8000, _event(5), ssrc=1) == "5"
    assert det.feed(8000, _event(5), ssrc=2) == "5"
    assert det.feed(8000, _event(5, end=True), ssrc=1) is None


def test_late_end_of_an_earlier_event_is_not_reported_again() -> None:
    det = DtmfDetector()
    assert det.feed(8000, _event(1)) == "1"
    assert det.feed(9000, _event(2)) == "2"
    assert det.feed(8000, _event(1, end=True)) is None  # reordered end copy


def test_detector_memory_is_bounded() -> None:
    det = DtmfDetector()
    for i in range(1000):
        det.feed(i * 800, _event(i % 10))
    assert len(det._seen) == 16


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/dtmf-relay", b"Signal=1\r\nDuration=160\r\n", InfoDigit("1", 160)),
        ("Application/DTMF-Relay; charset=x", b"signal= #\nduration=250", InfoDigit("#", 250)),
        ("application/dtmf-relay", b"Signal=10\r\n", InfoDigit("*")),
        ("application/dtmf-relay", b"Signal=11\r\nDuration=\r\n", InfoDigit("#")),
        ("application/dtmf-relay", b"Signal=b", InfoDigit("B")),
        ("application/dtmf", b"7\r\n", InfoDigit("7")),
        ("application/sdp", b"v=0\r\n", None),
        ("text/plain", b"Signal=1", None),
    ],
)
def test_info_bodies(content_type: str, body: bytes, expected: InfoDigit | None) -> None:
    assert parse_info(content_type, body) == expected


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/dtmf-relay", b"Duration=160", "no Signal"),
        ("application/dtmf-relay", b"Signal=12", "not 0-9"),
        ("application/dtmf-relay", b"Signal=1\nDuration=1e3", "not a number"),
        ("application/dtmf-relay", b"Signal=\xff", "not ASCII"),
        ("application/dtmf", b"", "not 0-9"),
        ("application/dtmf", b"12", "not 0-9"),
        ("application/dtmf", b"1" * 2000, "limit 1024"),
    ],
)
def test_bad_info_bodies(content_type: str, body: bytes, message: str) -> None:
    with pytest.raises(DtmfError, match=message):
        parse_info(content_type, body)
