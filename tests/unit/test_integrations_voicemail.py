"""The `call.voicemail` webhook (issue 13): sent with `call.ended` for a voicemail, with its
own event id, and naming the recording like every call payload."""

from __future__ import annotations

import json
from dataclasses import replace

from pbx.attribution.integrations import CALL_ENDED, CALL_VOICEMAIL, Integrations, outbox_for
from pbx.records import CallRecord, Disposition

CFG = Integrations(webhook_urls=("https://hooks.example/a", "https://hooks.example/b"))
NOW = "2026-12-01T10:00:00.000000Z"
REC = CallRecord(
    id="r1", inbound_call_id="in@h", started_at=NOW, caller="+13125550199",
    tracking_number="+14155550150", ended_at=NOW, disposition=Disposition.VOICEMAIL,
    recording="r1.wav", recording_seconds=12.5, recording_bytes=400044,
)  # fmt: skip


def _events(record: CallRecord) -> list[tuple[str, str, str | None]]:
    items = outbox_for(record, None, CFG, "ev1", NOW)
    out = []
    for item in items:
        body = json.loads(item.payload)
        out.append((body["event"], body["id"], body["call"].get("recording")))
    return out


def test_voicemail_sends_ended_and_voicemail_to_every_url() -> None:
    events = _events(REC)
    assert sorted(events) == sorted(
        [(CALL_ENDED, "ev1", "r1.wav")] * 2 + [(CALL_VOICEMAIL, "ev1-voicemail", "r1.wav")] * 2
    )


def test_other_calls_send_no_voicemail_event() -> None:
    answered = replace(REC, disposition=Disposition.ANSWERED)
    assert {e[0] for e in _events(answered)} == {CALL_ENDED}
