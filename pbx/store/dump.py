"""The backend-neutral dump format of a store (pure: no I/O).

`neutral_json(tables)` turns `{table: rows}` (rows as column -> value
mappings, any order) into the one JSON text every backend's `dump()`
returns, so two stores holding the same rows dump the same text whatever
their engine:

- `{"table": [rows...]}`, tables sorted by name, each row an object with
  its keys sorted, rows sorted by their own JSON text;
- `json.dumps(..., sort_keys=True, separators=(",", ":"))`, one line;
- booleans as 0/1 (SQLite's storage form, so a SQLite dump needs no
  schema knowledge), bytes as lowercase hex, everything else as JSON has it
  (int, float, str, null).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

Row = Mapping[str, Any]


def neutral_value(value: Any) -> Any:
    """A column value in the dump's form (booleans 0/1, bytes hex)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


def _text(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def neutral_rows(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Rows with neutral values, sorted by their JSON text."""
    shown = [{k: neutral_value(v) for k, v in row.items()} for row in rows]
    return sorted(shown, key=_text)


def neutral_json(tables: Mapping[str, Iterable[Row]]) -> str:
    """The whole dump text (see the module docstring)."""
    return _text({name: neutral_rows(rows) for name, rows in tables.items()})
