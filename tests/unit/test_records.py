"""Call record model: dispositions, dict round trip, JSON and CSV exports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.records import (
    FIELD_NAMES,
    Attempt,
    CallRecord,
    Disposition,
    attempts_text,
    from_dict,
    iso_utc,
    to_csv,
    to_dict,
    to_json_rows,
)

T0 = "2024-05-01T10:00:00.000000Z"


def record(**kw: object) -> CallRecord:
    base: dict[str, object] = {
        "id": "c1",
        "inbound_call_id": "abc@192.0.2.10",
        "started_at": T0,
        "caller": "+14155550102",
        "tracking_number": "+12125550123",
    }
    return CallRecord(**(base | kw))  # type: ignore[arg-type]


def test_live_and_final_dispositions() -> None:
    assert {d for d in Disposition if not d.is_final} == {
        Disposition.RINGING,
        Disposition.ANSWERED,
    }
    assert Disposition("no-answer") is Disposition.NO_ANSWER
    assert Disposition.INTERRUPTED.is_final
    assert not record().is_final
    assert record(disposition=Disposition.BUSY).is_final


def test_json_rows() -> None:
    r = record(
        attempts=(Attempt("+14155550101", 486, T0, T0, "Busy Here"),),
        disposition=Disposition.BUSY,
    )
    rows = to_json_rows([r])
    text = json.dumps(rows)
    back = json.loads(text)[0]
    assert back["disposition"] == "busy"
    assert back["attempts"][0] == {
        "target": "+14155550101",
        "status": 486,
        "started_at": T0,
        "ended_at": T0,
        "reason": "Busy Here",
        "dialled": None,
    }
    assert list(back) == list(FIELD_NAMES)
    assert from_dict(back) == r


def test_csv_header_rows_and_attempts() -> None:
    r1 = record(
        attempts=(Attempt("+14155550101", 486), Attempt("sip:a@192.0.2.1", 200)),
        disposition=Disposition.ANSWERED,
        talk_seconds=12.5,
        caller_name='Ann, "the" caller',
    )
    r2 = record(id="c2", caller="anonymous")
    text = to_csv([r1, r2])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(FIELD_NAMES)
    assert len(rows) == 3
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["caller"] == "+14155550102"  # a plain number keeps its '+'
    assert first["caller_name"] == 'Ann, "the" caller'
    assert first["attempts"] == "486 +14155550101; 200 sip:a@192.0.2.1"
    named = record(attempts=(Attempt("front-desk", 200, dialled="+14155550150"),))
    assert attempts_text(named.attempts) == "200 front-desk +14155550150"
    assert "200 front-desk +14155550150" in to_csv([named])
    assert first["disposition"] == "answered"
    assert first["talk_seconds"] == "12.5"
    assert first["answered_at"] == ""
    second = dict(zip(rows[0], rows[2], strict=True))
    assert second["caller"] == "anonymous"
    assert second["disposition"] == "ringing"
    pending = to_csv([record(attempts=(Attempt("+14155550101"),))])
    assert "pending +14155550101" in pending


def test_csv_neutralises_formulas() -> None:
    text = to_csv(
        [
            record(
                caller_name='=HYPERLINK("http://x")',
                referrer="@SUM(A1)",
                utm_term="-2+3",
                utm_content="+1",
            )
        ]
    )
    row = dict(zip(*list(csv.reader(io.StringIO(text))), strict=True))
    assert row["caller_name"] == '\'=HYPERLINK("http://x")'
    assert row["referrer"] == "'@SUM(A1)"
    assert row["utm_term"] == "'-2+3"
    assert row["utm_content"] == "+1"


def test_empty_exports() -> None:
    assert to_json_rows([]) == []
    assert to_csv([]).splitlines() == [",".join(FIELD_NAMES)]


_text = st.one_of(st.none(), st.text(max_size=20))
_attempts = st.lists(
    st.builds(
        Attempt,
        st.text(min_size=1, max_size=20),
        st.one_of(st.none(), st.integers(100, 699)),
        _text,
        _text,
        _text,
    ),
    max_size=3,
).map(tuple)


@given(
    disposition=st.sampled_from(list(Disposition)),
    attempts=_attempts,
    caller_name=_text,
    ring=st.floats(0, 1e6, allow_nan=False),
    packets=st.integers(0, 2**62),
    cost=st.one_of(st.none(), st.integers(0, 10**9)),
)
def test_dict_round_trip(
    disposition: Disposition,
    attempts: tuple[Attempt, ...],
    caller_name: str | None,
    ring: float,
    packets: int,
    cost: int | None,
) -> None:
    r = record(
        disposition=disposition,
        attempts=attempts,
        caller_name=caller_name,
        ring_seconds=ring,
        packets_out_in=packets,
        cost_cents=cost,
    )
    assert from_dict(json.loads(json.dumps(to_dict(r)))) == r
    rows = list(csv.reader(io.StringIO(to_csv([r]))))
    assert len(rows) == 2
    assert len(rows[1]) == len(FIELD_NAMES)


@pytest.mark.parametrize(
    "epoch",
    [0.0, 1.0, 0.9999995, 0.9999994999, 1.0000005, 1.0000015, 1_700_000_000.9999996,
     1_700_000_000.0000005, 1_700_000_000.123456, 4_000_000_000.5, -0.5, -1.0000005],
)  # fmt: skip
def test_iso_utc_is_datetimes_form_with_its_rounding(epoch: float) -> None:
    want = dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert iso_utc(epoch) == want
    assert iso_utc(epoch + 86_400) != want  # the kept second is not reused for another


@given(st.floats(min_value=0, max_value=4e9))
def test_iso_utc_matches_datetime_anywhere(epoch: float) -> None:
    want = dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert iso_utc(epoch) == want
