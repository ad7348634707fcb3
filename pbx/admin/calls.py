"""Admin use cases for call records behind `pbx calls ...` (I/O through the store only).

Decision: `pbx calls show ID` takes the whole record id or any prefix of it
that matches one record (as git takes an abbreviated commit id), so the
first characters of an id read off `calls list` are enough. An ambiguous
prefix is bad input naming how many records match.
"""

from __future__ import annotations

from pbx.errors import InputError, NotFoundError
from pbx.records import CallRecord
from pbx.store import Store

SHOWN = 10  # ambiguous prefix: count up to this many matches, then "more than"


async def find_call(store: Store, key: str) -> CallRecord:
    """The record whose id is `key` or starts with it (one line errors otherwise)."""
    key = key.strip()
    exact = await store.calls.get(key) if key else None
    if exact is not None:
        return exact
    ids = await store.calls.ids_with_prefix(key, SHOWN + 1) if key else []
    if not ids:
        raise NotFoundError(f"no call {key}")
    if len(ids) > 1:
        count = f"more than {SHOWN}" if len(ids) > SHOWN else str(len(ids))
        raise InputError(f"{count} calls have ids starting with {key!r}: give more characters")
    found = await store.calls.get(ids[0])
    if found is None:  # removed in between: as if it never matched
        raise NotFoundError(f"no call {key}")
    return found
