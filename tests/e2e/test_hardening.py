"""End to end: overload protection and metrics of the real daemon (issue 7).

- A flood of 5,000 INVITE/OPTIONS datagrams from one loopback address
  (127.0.0.2, not a trunk) is throttled then ignored, with one log line per
  ban; a normal call from the trunk address (127.0.0.1) right after is
  answered; the daemon's RSS (/proc/PID/status VmRSS) stays within
  `RSS_BOUND` of its value before the flood.
- Past `calls.max_concurrent` a second call gets 503 with Retry-After and a
  `rejected` record naming the limit; `/metrics` then shows the families.
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import aiohttp
import pytest

from pbx.records import Disposition

from .conftest import SippFactory
from .daemon import DaemonProcess
from .test_b2bua import DID, OFFICE, _call, _logged, _ok, _setup

pytestmark = pytest.mark.e2e

FLOODER = "127.0.0.2"
FLOOD_COUNT = 5000
FLOOD_BATCH = 250  # datagrams per burst, then a 0.1 s pause: ~2 s for the whole flood
RSS_BOUND = 50 * 1024 * 1024  # bytes the daemon may grow by during and after the flood


def rss_bytes(pid: int) -> int:
    """Resident set size of process `pid` (VmRSS in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _request(method: str, n: int, port: int) -> bytes:
    uri = f"sip:{DID[1:]}@127.0.0.1:{port}"
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {FLOODER}:5099;branch=z9hG4bKflood{n};rport",
        "Max-Forwards: 70",
        f"From: <sip:scanner@{FLOODER}>;tag=f{n}",
        f"To: <{uri}>",
        f"Call-ID: flood-{n}@{FLOODER}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:scanner@{FLOODER}:5099>",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class _Answers(asyncio.DatagramProtocol):
    """Counts what the daemon answers the flooder, by status line."""

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.retry_after = 0

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        match = re.match(rb"SIP/2\.0 (\d{3}) ", data)
        if match:
            status = int(match.group(1))
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 503 and b"\r\nRetry-After: " in data:
                self.retry_after += 1


async def _flood(daemon: DaemonProcess) -> tuple[_Answers, int]:
    """Send the flood from FLOODER; returns the answers and the largest RSS seen meanwhile."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((FLOODER, 0))
    transport, answers = await loop.create_datagram_endpoint(_Answers, sock=sock)
    peak = 0
    target = ("127.0.0.1", daemon.sip_port)
    try:
        for start in range(0, FLOOD_COUNT, FLOOD_BATCH):
            for n in range(start, start + FLOOD_BATCH):
                method = "INVITE" if n % 2 == 0 else "OPTIONS"
                transport.sendto(_request(method, n, daemon.sip_port), target)
            await asyncio.sleep(0.1)  # pacing: ~2,500 datagrams/s, not a race fix
            peak = max(peak, rss_bytes(daemon.pid))
    finally:
        transport.close()
    return answers, peak


async def _metrics(daemon: DaemonProcess) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{daemon.http_port}/metrics") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


def _value(text: str, sample: str) -> float:
    """The value of one sample line, e.g. `pbx_calls_total{disposition="answered"}`."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {sample} in /metrics:\n{text}")


async def test_flood_from_one_address_is_ignored_and_trunk_calls_still_work(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    callee = await sipp.start("b2bua_callee.xml", seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port, allow=("127.0.0.1/32",))
    before = rss_bytes(daemon.pid)
    answers, peak = await _flood(daemon)
    caller = await _call(sipp, daemon, "b2bua_caller.xml", hold_ms=500)
    await _ok(caller)
    await _ok(callee)
    after = rss_bytes(daemon.pid)
    print(f"RSS before {before / 2**20:.1f} MiB, peak during flood {peak / 2**20:.1f} MiB, "
          f"after {after / 2**20:.1f} MiB; answers to the flooder {answers.statuses}")  # fmt: skip
    assert max(peak, after) - before < RSS_BOUND
    records = await daemon.wait_final_record()
    assert [r.disposition for r in records] == [Disposition.ANSWERED]
    answered = sum(answers.statuses.values())
    assert answered < FLOOD_COUNT / 5  # most of the flood was ignored unparsed
    assert answers.statuses.get(503, 0) > 0
    assert answers.retry_after == answers.statuses[503]
    bans = [line for line in daemon.log_text().splitlines() if "sip.flood_banned" in line]
    assert len(bans) == 1, bans
    assert FLOODER in bans[0]
    text = await _metrics(daemon)
    assert _value(text, "pbx_flood_bans_total") == 1.0
    assert _value(text, "pbx_flood_dropped_total") > FLOOD_COUNT / 2
    assert _value(text, 'pbx_calls_total{disposition="answered"}') == 1.0


async def test_503_with_retry_after_past_the_concurrent_call_limit(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    daemon.env.update({"PBX_CALLS_MAX_CONCURRENT": "1", "PBX_CALLS_RETRY_AFTER": "7"})
    callee = await sipp.start("b2bua_callee.xml", seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port)
    first = await _call(sipp, daemon, "b2bua_caller.xml", hold_ms=3000)
    await _logged(first, "ANSWER_MEDIA")  # the first call is up and holds the only slot
    second = await _call(sipp, daemon, "b2bua_caller_fail.xml")
    assert await _logged(second, "FINAL") == ["503"]
    await _ok(second)
    final = [raw for raw in second.received() if raw.startswith("SIP/2.0 503")]
    assert final, second.diagnostics()
    assert re.search(r"^Retry-After: 7\r?$", final[0], re.M), final[0]
    await _ok(first)
    await _ok(callee)
    records = await daemon.wait_final_record(2)
    by_disposition = {r.disposition: r for r in records}
    assert set(by_disposition) == {Disposition.ANSWERED, Disposition.REJECTED}
    rejected = by_disposition[Disposition.REJECTED]
    assert rejected.sip_status == 503
    assert rejected.sip_reason == "over calls.max_concurrent"
    assert rejected.tracking_number == DID
    assert not rejected.attempts  # nothing was dialed for it
    text = await _metrics(daemon)
    assert _value(text, 'pbx_calls_total{disposition="answered"}') == 1.0
    assert _value(text, 'pbx_calls_total{disposition="rejected"}') == 1.0
    assert _value(text, 'pbx_rejected_total{reason="max_concurrent"}') == 1.0
    assert _value(text, "pbx_invites_total") == 2.0
    assert _value(text, "pbx_active_calls") == 0.0
    assert _value(text, "pbx_call_setup_seconds_count") == 1.0
    assert _value(text, 'pbx_media_packets_total{leg="inbound"}') >= 0.0
    assert _value(text, "pbx_outbox_backlog") == 0.0
    for family in ("pbx_media_dropped_total", "pbx_flood_throttled_total", "pbx_trunk_registered"):
        assert f"# TYPE {family.removesuffix('_total')}" in text
