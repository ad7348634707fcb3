"""The backend-neutral dump format (pbx.store.dump): pure, property-tested."""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st

from pbx.store.dump import neutral_json

_value = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=10),
    st.floats(allow_nan=False), st.binary(max_size=8),
)  # fmt: skip
_row = st.dictionaries(st.sampled_from(["a", "b", "c", "id"]), _value, min_size=1)
_tables = st.dictionaries(st.sampled_from(["calls", "numbers", "trunks"]), st.lists(_row))


@given(tables=_tables, seed=st.randoms())
def test_order_of_tables_rows_and_keys_does_not_matter(
    tables: dict[str, list[dict[str, object]]], seed: random.Random
) -> None:
    shuffled: dict[str, list[dict[str, object]]] = {}
    for name in seed.sample(list(tables), len(tables)):
        rows = [dict(seed.sample(list(r.items()), len(r))) for r in tables[name]]
        seed.shuffle(rows)
        shuffled[name] = rows
    assert neutral_json(shuffled) == neutral_json(tables)


def test_format() -> None:
    text = neutral_json({"t": [{"b": True, "a": b"\x01\xff"}, {"b": False, "a": None}], "a": []})
    assert text == '{"a":[],"t":[{"a":"01ff","b":1},{"a":null,"b":0}]}'
    assert json.loads(text)["t"][0]["b"] == 1
