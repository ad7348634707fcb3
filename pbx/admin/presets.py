"""Source presets from `data/sources.toml`: parse and validate (pure except `load_presets`).

A preset is a ready-made source (Google Ads, TV, ...): `pbx sources add NAME
--preset KEY` copies its type, regexes, tag and position into a new source
row whose `preset` column keeps the key.

Decisions:
- The file lives at `data/sources.toml` next to the package (an editable
  install, as the README's quickstart uses); `load_presets(path)` takes
  another path for tests or packaged installs.
- Validation is strict: keys kebab-case and unique, names unique, `type`
  onsite|offsite, onsite presets need a referrer or landing regex and
  offsite ones have neither, every regex compiles, position 0..10000.
  A broken file is a `ConfigError` naming the preset and field.
- Matching is `pbx.rules.sources`' job (a visit matches when the referrer
  OR the landing regex matches); regexes are checked with its
  `compile_checked`, so presets obey the same length limit as admin input.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pbx.errors import ConfigError, InputError
from pbx.rules.sources import compile_checked

PRESETS_PATH = Path(__file__).resolve().parents[2] / "data" / "sources.toml"
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_POSITION = 10_000
_FIELDS = {"key", "name", "type", "description", "referrer", "landing", "tag", "position"}
SourceType = Literal["onsite", "offsite"]


@dataclass(frozen=True, slots=True)
class Preset:
    """One ready-made source; `onsite` presets carry their matching regexes."""

    key: str
    name: str
    type: SourceType
    description: str
    tag: str
    position: int
    referrer: str | None = None
    landing: str | None = None

    @property
    def onsite(self) -> bool:
        return self.type == "onsite"


def _text(entry: dict[str, Any], field: str, where: str, *, required: bool = True) -> str | None:
    value = entry.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ConfigError(f"presets: {where}.{field} must be a non-empty string")
    return value


def _regex(entry: dict[str, Any], field: str, where: str) -> str | None:
    pattern = _text(entry, field, where, required=False)
    if pattern is not None:
        try:
            compile_checked(pattern)
        except InputError as exc:
            raise ConfigError(f"presets: {where}.{field}: {exc}") from None
    return pattern


def _preset(entry: dict[str, Any], index: int) -> Preset:
    where = f"preset[{index}]"
    key = str(_text(entry, "key", where))
    where = f"preset {key!r}"
    if not KEBAB.match(key):
        raise ConfigError(f"presets: {where} key must be kebab-case (a-z, 0-9, -)")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ConfigError(f"presets: {where} has unknown field {sorted(unknown)[0]}")
    kind = entry.get("type")
    if kind not in ("onsite", "offsite"):
        raise ConfigError(f"presets: {where}.type must be onsite or offsite (got {kind!r})")
    position = entry.get("position")
    if isinstance(position, bool) or not isinstance(position, int):
        raise ConfigError(f"presets: {where}.position must be an integer")
    if not 0 <= position <= MAX_POSITION:
        raise ConfigError(f"presets: {where}.position must be 0-{MAX_POSITION} (got {position})")
    referrer, landing = _regex(entry, "referrer", where), _regex(entry, "landing", where)
    if kind == "onsite" and referrer is None and landing is None:
        raise ConfigError(f"presets: {where} is onsite but has no referrer or landing regex")
    if kind == "offsite" and (referrer is not None or landing is not None):
        raise ConfigError(f"presets: {where} is offsite but has a referrer or landing regex")
    return Preset(
        key=key,
        name=str(_text(entry, "name", where)),
        type=kind,
        description=str(_text(entry, "description", where)),
        tag=str(_text(entry, "tag", where)),
        position=position,
        referrer=referrer,
        landing=landing,
    )


def parse_presets(text: str) -> dict[str, Preset]:
    """Presets by key, in file order; raises `ConfigError` on any defect."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"presets: not valid TOML: {exc}") from None
    entries = document.get("preset")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("presets: no [[preset]] entries")
    presets: dict[str, Preset] = {}
    names: set[str] = set()
    for index, entry in enumerate(entries):
        preset = _preset(entry, index)
        if preset.key in presets:
            raise ConfigError(f"presets: duplicate key {preset.key!r}")
        if preset.name.lower() in names:
            raise ConfigError(f"presets: duplicate name {preset.name!r}")
        presets[preset.key] = preset
        names.add(preset.name.lower())
    return presets


def load_presets(path: Path | None = None) -> dict[str, Preset]:
    """Read and validate the presets file (default `data/sources.toml`)."""
    target = path or PRESETS_PATH
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"presets: cannot read {target}: {exc.strerror}") from None
    return parse_presets(text)
