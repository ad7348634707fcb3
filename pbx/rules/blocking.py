"""Caller block list: pattern syntax and the match rule for one call (pure).

A block is a `pbx.store.base.Block`: a `pattern` and the tracking `number`
it applies to (None = every number). Patterns are:
- `anonymous` (the literal `ANONYMOUS` constant): callers who hide or do not
  send their number (the shell decides what "anonymous" means for a call,
  e.g. From user `anonymous`, RFC 3323 `Privacy: id`, no usable number);
- a full number in E.164 (`+14155550101`): that caller only;
- a prefix: `+` and 1-15 digits (`+1212`, `+234`): every caller whose E.164
  number starts with it. An exact number is its own prefix, so one rule
  covers both (the store's `blocks.matching` uses the same rule).

Decisions (the spec is silent):
- `normalise_pattern` turns whatever an admin types into a pattern: text
  that `pbx.numbers.normalise` accepts as a full, valid number becomes
  E.164 (`(212) 555-0123` -> `+12125550123`); otherwise text written `+`
  and digits (spaces, dots, dashes and brackets dropped) is kept as a
  prefix; anything else is an `InputError`. A prefix must be written with
  `+` and the country code: national prefixes (`212`) are ambiguous.
- Which block wins when several match: the longest pattern (the most
  specific), number-specific before global on a tie; `anonymous` only
  matches anonymous callers. The daemon only needs to know *whether* a call
  is blocked; the winning block is returned for the log and the record.
- A caller with no E.164 number matches no number pattern. A number
  pattern matches whenever the caller's number is known, even if it is
  withheld (`Privacy: id` with a P-Asserted-Identity from the trunk): the
  carrier told us who it is, and blocking is not disclosure.
- `is_anonymous` (for the shell): a call is anonymous when there is no
  usable caller number, the From user is one of `anonymous`, `restricted`,
  `private`, `unavailable`, `unknown` (any case), or a Privacy header asks
  for `id`, `user` or `header` privacy (RFC 3323 §4.2, RFC 3325 §9.3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pbx.errors import InputError
from pbx.numbers import normalise
from pbx.store.base import Block

ANONYMOUS = "anonymous"
MAX_PREFIX_DIGITS = 15  # E.164 §6.1: at most 15 digits after the +
MAX_PATTERN_INPUT = 64  # longer admin input is refused before any parsing
_PREFIX = re.compile(rf"^\+\d{{1,{MAX_PREFIX_DIGITS}}}$")
_SEPARATORS = re.compile(r"[\s.\-()]")
# From users carriers put for a withheld number (RFC 3323 §4.1.1.3 "anonymous";
# the others are seen from US carriers and PBXes).
_WITHHELD_USERS = frozenset({"anonymous", "restricted", "private", "unavailable", "unknown"})


def normalise_pattern(text: str, region: str = "US") -> str:
    """An admin's NUMBER-OR-PREFIX (or `anonymous`) as a stored pattern, else `InputError`."""
    raw = text.strip()
    if raw.lower() == ANONYMOUS:
        return ANONYMOUS
    if not raw or len(raw) > MAX_PATTERN_INPUT:
        raise InputError(f"invalid number or prefix {text!r}")
    try:
        return normalise(raw, region)
    except InputError:
        pass
    compact = _SEPARATORS.sub("", raw)
    if _PREFIX.match(compact):
        return compact
    raise InputError(
        f"invalid number or prefix {text!r}: use a full number, '+' and digits "
        f"(e.g. +1212), or '{ANONYMOUS}'"
    )


def is_valid_pattern(pattern: str) -> bool:
    """Is `pattern` in the stored form (`anonymous` or `+` and 1-15 digits)?"""
    return pattern == ANONYMOUS or bool(_PREFIX.match(pattern))


def matches(block: Block, caller: str | None, anonymous: bool, number: str | None = None) -> bool:
    """Does `block` apply to a call from `caller` (to tracking `number`, when given)?"""
    if number is not None and block.number is not None and block.number != number:
        return False
    if block.pattern == ANONYMOUS:
        return anonymous
    if caller is None or not caller.startswith("+"):
        return False
    return caller.startswith(block.pattern)


def is_anonymous(from_user: str | None, privacy: str | None, caller: str | None) -> bool:
    """Did the caller withhold its identity? (see the module docstring)

    `from_user`: the From URI's user part; `privacy`: the Privacy header value
    (RFC 3323 §4.2, RFC 3325 §9.3 `id`); `caller`: the caller's E.164 number as
    the shell normalised it, None when there was no usable number.
    """
    if caller is None:
        return True
    if from_user is not None and from_user.strip().lower() in _WITHHELD_USERS:
        return True
    tokens = {t.strip().lower() for t in (privacy or "").split(";")}
    return bool(tokens & {"id", "user", "header"})


def blocked(
    caller: str | None, anonymous: bool, blocks: Iterable[Block], number: str | None = None
) -> Block | None:
    """The block that rejects this call, or None when the call may proceed.

    `caller`: the caller's E.164 number (None when unknown); `anonymous`:
    the caller withheld its identity; `blocks`: the candidates, e.g.
    `await store.blocks.list()` (every block) or the global ones plus the
    dialed number's; `number`: the dialed tracking number in E.164, so
    blocks of other numbers are skipped (None: every block given applies).
    """
    best: Block | None = None
    for block in blocks:
        if matches(block, caller, anonymous, number) and (
            best is None or _rank(block) > _rank(best)
        ):
            best = block
    return best


def _rank(block: Block) -> tuple[int, int]:
    """Longer pattern first (more specific), then number-specific before global."""
    return (len(block.pattern), 0 if block.number is None else 1)
