"""`changed_fields`: what an update writes is exactly what differs (pure, property-tested)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from pbx.records import Attempt, CallRecord, Disposition, changed_fields, column_values

BASE = CallRecord(
    id="c1",
    tracking_number="+12125550123",
    caller="+14155550102",
    started_at="2026-12-01T10:00:00+00:00",
    inbound_call_id="in-1",
)

changes = st.fixed_dictionaries(
    {},
    optional={
        "disposition": st.sampled_from(list(Disposition)),
        "answered_at": st.none() | st.just("2026-12-01T10:00:05+00:00"),
        "talk_seconds": st.floats(0, 1e4, allow_nan=False),
        "sip_status": st.none() | st.integers(100, 699),
        "destination": st.none() | st.text(max_size=5),
        "attempts": st.lists(
            st.builds(
                Attempt, target=st.text(max_size=5), status=st.none() | st.integers(100, 699)
            ),
            max_size=3,
        ).map(tuple),
    },
)


@given(changes, changes)
def test_the_changed_fields_carry_one_record_to_the_other(
    a: dict[str, object], b: dict[str, object]
) -> None:
    previous = replace(BASE, **a)  # type: ignore[arg-type]
    record = replace(BASE, **b)  # type: ignore[arg-type]
    cols = changed_fields(previous, record)
    assert cols
    assert "id" not in cols
    patched = replace(previous, **{c: getattr(record, c) for c in cols})
    assert patched == record
    for name in set(a) | set(b):
        if getattr(previous, name) != getattr(record, name):
            assert name in cols


def test_column_values_store_disposition_and_attempts_as_text() -> None:
    record = replace(BASE, attempts=(Attempt(target="sales", status=486),))
    values = column_values(record, ("disposition", "attempts", "caller"))
    assert values == {
        "disposition": "ringing",
        "attempts": '[{"target":"sales","status":486,"started_at":null,"ended_at":null,'
        '"reason":null,"dialled":null}]',
        "caller": "+14155550102",
    }
