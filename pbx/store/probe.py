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
