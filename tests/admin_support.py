"""Shared setup for the admin app tests: a seeded SQLite store, users, calls, a recording."""

from __future__ import annotations

import re
import struct
import wave
from pathlib import Path

from pbx.admin import users as admin_users
from pbx.records import Attempt, CallRecord, Disposition
from pbx.store.base import Destination, Source, Store, TrackingNumber, Trunk

CLI = admin_users.Actor("cli:test", "admin")
ADMIN_PASSWORD = "correct horse battery"
VIEWER_PASSWORD = "viewer staple 42"
NUM = "+12125550101"
NUM2 = "+12125550102"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def stamp(day: str, hh: int, mm: int = 0, ss: int = 0) -> str:
    return f"{day}T{hh:02d}:{mm:02d}:{ss:02d}.000000Z"


async def seed(store: Store) -> None:
    await store.trunks.add(
        Trunk(name="carrier", host="192.0.2.10", username="acme", password="s3cret-trunk")
    )
    await store.destinations.add(Destination(name="office", target="+14155550101", kind="number"))
    await store.sources.add(Source(name="google", tag="ppc", cost_per_call_cents=1250))
    await store.sources.add(Source(name="radio", monthly_budget_cents=30000))
    for number, source in ((NUM, "google"), (NUM2, "radio")):
        await store.numbers.add(
            TrackingNumber(number=number, source=source, destinations=("office",))
        )
    await admin_users.add_user(store, CLI, "ann", "admin", ADMIN_PASSWORD)
    await admin_users.add_user(store, CLI, "vic", "viewer", VIEWER_PASSWORD)


def call(i: int, day: str, **kw: object) -> CallRecord:
    """Call `i` on `day`: odd ones google (to NUM), even ones radio; 2 in 3 answered."""
    started = stamp(day, 9 + i % 8, i % 60, i % 60)
    answered = i % 3 != 0
    base: dict[str, object] = {
        "id": f"call{i:04d}",
        "inbound_call_id": f"in{i}@192.0.2.10",
        "started_at": started,
        "answered_at": started[:17] + "59.000000Z" if answered else None,
        "caller": f"+1415555{i % 10:02d}{i % 100:02d}",
        "tracking_number": NUM if i % 2 else NUM2,
        "source": "google" if i % 2 else "radio",
        "disposition": Disposition.ANSWERED if answered else Disposition.NO_ANSWER,
        "destination": "office",
        "trunk": "carrier",
        "ring_seconds": 4.0 + i % 7,
        "sip_status": 200 if answered else 480,
        "hangup_by": "caller" if answered else "system",
        "ended_at": stamp(day, 18),
        "talk_seconds": float(i % 90),
        "attempts": (
            Attempt(
                target="+14155550101",
                status=200 if answered else 480,
                started_at=started,
                reason=None if answered else "no answer",
            ),
        ),
        "landing_url": "https://plumber.example/offer?utm_source=google",
        "referrer": "https://www.google.com/",
        "utm_source": "google",
        "utm_campaign": "spring",
        "gclid": f"gclid-{i}",
        "packets_in_out": 100 + i,
        "packets_out_in": 90 + i,
        "bytes_in_out": 172 * (100 + i),
        "bytes_out_in": 172 * (90 + i),
    }
    return CallRecord(**(base | kw))  # type: ignore[arg-type]


def write_wav(path: Path, seconds: float = 2.0, rate: int = 8000) -> None:
    """A stereo 16-bit PCM WAV of a quiet tone (what a recording looks like)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(seconds * rate)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        sample = [int(3000 * ((i // 20) % 2 * 2 - 1)) for i in range(frames)]
        out.writeframes(b"".join(struct.pack("<hh", s, -s) for s in sample))
