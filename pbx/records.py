"""Call record model and its exports (pure: no I/O, no clock).

One `CallRecord` per inbound call. It is a frozen value: the call controller
builds a new one with `dataclasses.replace` at each step (ringing, answered,
ended) and the shell writes it to the store.

Decisions (where the spec is silent):
- `id` is a string injected by the shell (e.g. a uuid4 hex), so the record
  exists before the store sees it.
- Times are wall-clock UTC ISO 8601 strings (`YYYY-MM-DDTHH:MM:SS.ffffffZ`),
  supplied by the shell; this module never reads a clock.
- Media counters: `*_in_out` counts what the relay forwarded from the caller
  (inbound leg) to the callee (outbound leg); `*_out_in` the other way.
- `to_dict`/`from_dict` are the one mapping between a record and plain
  values; the store and the JSON export both use it.
- Attempts name both the destination (`target`, its configured name) and
  what was dialled for it (`dialled`: the number as sent to the trunk, or
  the Request-URI of a `sip:` or extension contact).
- Audio: `recording` names a file (not a path) under `[recording] dir`;
  `voicemail` is a final disposition (the caller was answered by pbx).
- CSV: one row per record, columns in field order; `attempts` is written as
  `attempts_text`, `STATUS TARGET DIALLED; ...` (`pending` for no final
  status yet), the one text form every table and CSV uses, so a cell
  starts with a digit, not with a number's `+`. A cell that a spreadsheet would run as a formula
  (starting with `=`, `@`, tab or CR, or `+`/`-` followed by anything but a
  plain number) gets a leading `'` (OWASP "CSV injection"); `+14155550101`
  stays as it is.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

HangupBy = Literal["caller", "callee", "system"]


def iso_utc(epoch: float) -> str:
    """Wall-clock epoch seconds as the records' UTC ISO 8601 form (`...ffffffZ`).

    Same value as `datetime.fromtimestamp(epoch, UTC).strftime(...)`: the
    microseconds are rounded half-even as datetime does, and the formatted
    second is kept (a call stamps several times a second; strftime is the
    cost).
    """
    frac, whole = math.modf(epoch)
    micro = round(frac * 1e6)
    if micro >= 1_000_000:
        micro -= 1_000_000
        whole += 1.0
    elif micro < 0:
        micro += 1_000_000
        whole -= 1.0
    second = int(whole)
    if second != _second[0]:
        stamp = dt.datetime.fromtimestamp(second, tz=dt.UTC)
        _second[:] = [second, stamp.strftime("%Y-%m-%dT%H:%M:%S.")]
    return f"{_second[1]}{micro:06d}Z"


_second: list[Any] = [None, ""]  # the last second iso_utc formatted, and its text


class Disposition(enum.StrEnum):
    """What happened to a call.

    `ringing` is always live; `answered` is live until the record has an
    `ended_at` (a completed answered call keeps the disposition `answered`).
    """

    RINGING = "ringing"
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    BLOCKED = "blocked"
    INTERRUPTED = "interrupted"
    VOICEMAIL = "voicemail"  # nobody answered; the caller left a message (issue 13)

    @property
    def is_final(self) -> bool:
        """True once nothing more will happen to the call."""
        return self not in LIVE_DISPOSITIONS


LIVE_DISPOSITIONS = frozenset({Disposition.RINGING, Disposition.ANSWERED})


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one destination target (a branch of the outbound leg)."""

    target: str
    status: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    reason: str | None = None
    dialled: str | None = None  # the number or URI actually dialled for `target`


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class CallRecord:
    """One row per inbound call: who, which number and source, what happened."""

    id: str
    inbound_call_id: str
    started_at: str
    caller: str
    tracking_number: str
    outbound_call_id: str | None = None
    answered_at: str | None = None
    ended_at: str | None = None
    caller_name: str | None = None
    caller_region: str | None = None
    caller_location: str | None = None
    source: str | None = None
    tag: str | None = None
    destination: str | None = None
    trunk: str | None = None
    attempts: tuple[Attempt, ...] = ()
    disposition: Disposition = Disposition.RINGING
    sip_status: int | None = None
    sip_reason: str | None = None
    hangup_by: HangupBy | None = None
    ring_seconds: float = 0.0
    talk_seconds: float = 0.0
    packets_in_out: int = 0
    packets_out_in: int = 0
    bytes_in_out: int = 0
    bytes_out_in: int = 0
    cost_cents: int | None = None
    visit_id: str | None = None
    landing_url: str | None = None
    referrer: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    gclid: str | None = None
    ga_client_id: str | None = None
    visitor_ip: str | None = None
    node: str | None = None  # the pbx node that took the call ([node] id)
    # Audio (issue 13): the recording's file name under [recording] dir, its length and
    # size; `media_note` says why a call was not recorded / got no prompt, or that the
    # recording failed ("recording failed: No space left on device").
    recording: str | None = None
    recording_seconds: float = 0.0
    recording_bytes: int = 0
    media_note: str | None = None
    # Where the call came from before a front proxy (Kamailio's X-Pbx-Received,
    # trusted only from a trunk address): the carrier-side HOST:PORT.
    received_from: str | None = None

    # Written out so that mypyc compiles it (the generated one stays interpreted:
    # 9 us per record, and the call model builds one per change); its parameters
    # are the fields', in order, with their defaults (tests/unit/test_native.py);
    # object.__setattr__ because the class is frozen, as in the generated one.
    def __init__(
        self,
        *,
        id: str,
        inbound_call_id: str,
        started_at: str,
        caller: str,
        tracking_number: str,
        outbound_call_id: str | None = None,
        answered_at: str | None = None,
        ended_at: str | None = None,
        caller_name: str | None = None,
        caller_region: str | None = None,
        caller_location: str | None = None,
        source: str | None = None,
        tag: str | None = None,
        destination: str | None = None,
        trunk: str | None = None,
        attempts: tuple[Attempt, ...] = (),
        disposition: Disposition = Disposition.RINGING,
        sip_status: int | None = None,
        sip_reason: str | None = None,
        hangup_by: HangupBy | None = None,
        ring_seconds: float = 0.0,
        talk_seconds: float = 0.0,
        packets_in_out: int = 0,
        packets_out_in: int = 0,
        bytes_in_out: int = 0,
        bytes_out_in: int = 0,
        cost_cents: int | None = None,
        visit_id: str | None = None,
        landing_url: str | None = None,
        referrer: str | None = None,
        utm_source: str | None = None,
        utm_medium: str | None = None,
        utm_campaign: str | None = None,
        utm_term: str | None = None,
        utm_content: str | None = None,
        gclid: str | None = None,
        ga_client_id: str | None = None,
        visitor_ip: str | None = None,
        node: str | None = None,
        recording: str | None = None,
        recording_seconds: float = 0.0,
        recording_bytes: int = 0,
        media_note: str | None = None,
        received_from: str | None = None,
    ) -> None:  # fmt: skip
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "inbound_call_id", inbound_call_id)
        object.__setattr__(self, "started_at", started_at)
        object.__setattr__(self, "caller", caller)
        object.__setattr__(self, "tracking_number", tracking_number)
        object.__setattr__(self, "outbound_call_id", outbound_call_id)
        object.__setattr__(self, "answered_at", answered_at)
        object.__setattr__(self, "ended_at", ended_at)
        object.__setattr__(self, "caller_name", caller_name)
        object.__setattr__(self, "caller_region", caller_region)
        object.__setattr__(self, "caller_location", caller_location)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "destination", destination)
        object.__setattr__(self, "trunk", trunk)
        object.__setattr__(self, "attempts", attempts)
        object.__setattr__(self, "disposition", disposition)
        object.__setattr__(self, "sip_status", sip_status)
        object.__setattr__(self, "sip_reason", sip_reason)
        object.__setattr__(self, "hangup_by", hangup_by)
        object.__setattr__(self, "ring_seconds", ring_seconds)
        object.__setattr__(self, "talk_seconds", talk_seconds)
        object.__setattr__(self, "packets_in_out", packets_in_out)
        object.__setattr__(self, "packets_out_in", packets_out_in)
        object.__setattr__(self, "bytes_in_out", bytes_in_out)
        object.__setattr__(self, "bytes_out_in", bytes_out_in)
        object.__setattr__(self, "cost_cents", cost_cents)
        object.__setattr__(self, "visit_id", visit_id)
        object.__setattr__(self, "landing_url", landing_url)
        object.__setattr__(self, "referrer", referrer)
        object.__setattr__(self, "utm_source", utm_source)
        object.__setattr__(self, "utm_medium", utm_medium)
        object.__setattr__(self, "utm_campaign", utm_campaign)
        object.__setattr__(self, "utm_term", utm_term)
        object.__setattr__(self, "utm_content", utm_content)
        object.__setattr__(self, "gclid", gclid)
        object.__setattr__(self, "ga_client_id", ga_client_id)
        object.__setattr__(self, "visitor_ip", visitor_ip)
        object.__setattr__(self, "node", node)
        object.__setattr__(self, "recording", recording)
        object.__setattr__(self, "recording_seconds", recording_seconds)
        object.__setattr__(self, "recording_bytes", recording_bytes)
        object.__setattr__(self, "media_note", media_note)
        object.__setattr__(self, "received_from", received_from)

    @property
    def is_final(self) -> bool:
        """True once the call is over: it has an end time (or a final disposition)."""
        return self.ended_at is not None or self.disposition.is_final


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(CallRecord))


def changed_fields(
    previous: CallRecord, record: CallRecord, keep: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The fields of `record` (same call) whose values differ from `previous`, in field order,
    leaving out `id` and the fields in `keep` (columns the store never rewrites).

    What a store's update writes instead of every column; never empty (the
    disposition stands in for "no change", so the row's existence is still checked)."""
    changed = tuple(
        name
        for name in FIELD_NAMES
        if name != "id" and name not in keep and getattr(previous, name) != getattr(record, name)
    )
    return changed or ("disposition",)


def column_values(record: CallRecord, cols: Iterable[str]) -> dict[str, Any]:
    """The stored form of some fields (as `to_dict` gives them, attempts as JSON text)."""
    out: dict[str, Any] = {c: getattr(record, c) for c in cols}
    if "disposition" in out:
        out["disposition"] = record.disposition.value
    if "attempts" in out:
        out["attempts"] = json.dumps(
            [attempt_to_dict(a) for a in record.attempts], separators=(",", ":")
        )
    return out


def attempt_to_dict(attempt: Attempt) -> dict[str, Any]:
    return {f.name: getattr(attempt, f.name) for f in fields(Attempt)}


def attempt_from_dict(data: Mapping[str, Any]) -> Attempt:
    known = {f.name for f in fields(Attempt)}
    return Attempt(**{k: v for k, v in data.items() if k in known})


def to_dict(record: CallRecord) -> dict[str, Any]:
    """Plain JSON-able values: disposition as its string, attempts as dicts."""
    out: dict[str, Any] = {name: getattr(record, name) for name in FIELD_NAMES}
    out["disposition"] = record.disposition.value
    out["attempts"] = [attempt_to_dict(a) for a in record.attempts]
    return out


def from_dict(data: Mapping[str, Any]) -> CallRecord:
    """Inverse of `to_dict`; unknown keys are ignored, missing ones default."""
    values = {k: v for k, v in data.items() if k in FIELD_NAMES}
    values["attempts"] = tuple(attempt_from_dict(a) for a in data.get("attempts") or ())
    values["disposition"] = Disposition(data.get("disposition", Disposition.RINGING.value))
    return CallRecord(**values)


def to_json_rows(records: Iterable[CallRecord]) -> list[dict[str, Any]]:
    """One dict per record, ready for `json.dumps`."""
    return [to_dict(r) for r in records]


_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def attempts_text(attempts: Iterable[Attempt]) -> str:
    """`STATUS TARGET DIALLED; ...`: the text form of attempts in tables and CSV."""
    parts = []
    for a in attempts:
        status = "pending" if a.status is None else str(a.status)
        dialled = f" {a.dialled}" if a.dialled and a.dialled != a.target else ""
        parts.append(f"{status} {a.target}{dialled}")
    return "; ".join(parts)


def to_csv(records: Iterable[CallRecord]) -> str:
    """CSV text with a header row; see the module docstring for escaping."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(FIELD_NAMES)
    for record in records:
        row: list[str] = []
        for name in FIELD_NAMES:
            value: object = getattr(record, name)
            if name == "attempts":
                row.append(_csv_cell(attempts_text(record.attempts)))
            elif name == "disposition":
                row.append(record.disposition.value)
            else:
                row.append(_csv_cell(value))
        writer.writerow(row)
    return buf.getvalue()


@dataclass(frozen=True)
class CallFact:
    """One call, as reports (ROI, the dashboard) need it."""

    source: str | None
    started_at: str  # ISO 8601, e.g. 2026-03-05T14:03:00.000000Z
    caller: str | None  # E.164, None when anonymous
    answered: bool
    cost_cents: int | None = None  # as written on the record at intake
