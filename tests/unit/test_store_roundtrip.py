"""Property: any call record or visit written to the store reads back equal (SQLite file)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.records import Attempt, CallRecord, Disposition
from pbx.store import Visit
from pbx.store.connect import open_store

_ids = itertools.count()
_text = st.text(max_size=40)  # includes NUL, quotes, commas, non-ASCII
_opt = st.one_of(st.none(), _text)
_int64 = st.integers(0, 2**63 - 1)
_stamp = st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

_attempt = st.builds(
    Attempt,
    target=st.text(min_size=1, max_size=30),
    status=st.one_of(st.none(), st.integers(100, 699)),
    started_at=st.one_of(st.none(), _stamp),
    ended_at=st.one_of(st.none(), _stamp),
    reason=_opt,
)

_record = st.builds(
    CallRecord,
    id=st.just("x"),
    inbound_call_id=st.text(min_size=1, max_size=40),
    started_at=_stamp,
    caller=_text,
    tracking_number=_text,
    caller_name=_opt,
    attempts=st.lists(_attempt, max_size=4).map(tuple),
    disposition=st.sampled_from(list(Disposition)),
    sip_status=st.one_of(st.none(), st.integers(100, 699)),
    hangup_by=st.sampled_from([None, "caller", "callee", "system"]),
    ring_seconds=st.floats(0, 1e7, allow_nan=False),
    talk_seconds=st.floats(0, 1e7, allow_nan=False),
    packets_in_out=_int64,
    bytes_out_in=_int64,
    cost_cents=st.one_of(st.none(), _int64),
    referrer=_opt,
    utm_campaign=_opt,
)

_visit = st.builds(
    Visit,
    id=st.just("x"),
    visitor_id=st.text(min_size=1, max_size=40),
    started_at=_stamp,
    last_seen_at=_stamp,
    expires_at=_stamp,
    landing_url=_opt,
    lat=st.one_of(st.none(), st.floats(-90, 90)),
    lon=st.one_of(st.none(), st.floats(-180, 180)),
    fallback=st.booleans(),
)


_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def db_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("roundtrip") / "pbx.sqlite3"


async def _call_roundtrip(path: Path, record: CallRecord) -> CallRecord | None:
    async with await open_store(path) as store:
        await store.calls.insert(record)
        return await store.calls.get(record.id)


async def _visit_roundtrip(path: Path, visit: Visit) -> Visit | None:
    async with await open_store(path) as store:
        await store.visits.add(visit)
        return await store.visits.get(visit.id)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(record=_record)
def test_call_record_round_trip(db_file: Path, record: CallRecord) -> None:
    record = replace(record, id=f"c{next(_ids)}")
    assert asyncio.run(_call_roundtrip(db_file, record)) == record


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(visit=_visit)
def test_visit_round_trip(db_file: Path, visit: Visit) -> None:
    visit = replace(visit, id=f"v{next(_ids)}")
    assert asyncio.run(_visit_roundtrip(db_file, visit)) == visit
