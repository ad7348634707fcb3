"""What `probe_store` reports about a store without changing it (pure type)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Level = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True, slots=True)
class StoreCheck:
    """`current`: the store opens and its schema is this pbx's; `findings` in plain words."""

    current: bool
    findings: list[tuple[Level, str]] = field(default_factory=list)


def version_check(where: str, version: int, latest: int) -> StoreCheck:
    """A store that opened: is its schema version this pbx's, older, or newer?"""
    if version == latest:
        return StoreCheck(
            True, [("ok", f"database {where} opens; schema version {version} is current")]
        )
    if version < latest:
        what = f"database {where} has schema version {version}, this pbx uses {latest}: "
        return StoreCheck(
            False, [("warn", what + "pbx serve migrates it on start (back it up first)")]
        )
    what = f"database {where} has schema version {version}, newer than this pbx knows ({latest}): "
    return StoreCheck(False, [("FAIL", what + "upgrade pbx")])
