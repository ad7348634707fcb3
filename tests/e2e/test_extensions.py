"""End to end: local extensions. A pyVoIP phone registers to the running daemon and answers.

The phone runs in its own process (tests/e2e/phone_pyvoip.py, see why there)
on 127.0.0.2, so its REGISTER does not come from the trunk (127.0.0.1). sipp
plays the trunk and the fallback destination; a Python RTP endpoint plays
the caller's audio, so packets are counted at both far ends.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pbx.admin.extensions import ExtensionOptions, add_extension
from pbx.records import Disposition
from pbx.store import Destination, Source, Store, TrackingNumber, Trunk

from .conftest import SippFactory, free_port, free_udp_range
from .daemon import DaemonProcess, provision
from .test_b2bua import CALLER, DID, MOBILE, _call, _exchange_rtp, _logged, _ok, _record

pytestmark = pytest.mark.e2e

PASSWORD = "correct-horse-42"
PHONE_IP = "127.0.0.2"
ROOT = Path(__file__).resolve().parents[2]


class Phone:
    """The pyVoIP phone process: its event lines, waited on with bounds; killed by PID."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.lines: list[str] = []

    async def expect(self, prefix: str, limit: float = 10.0) -> str:
        for line in self.lines:
            if line.startswith(prefix):
                return line
        assert self.process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline:
            try:
                raw = await asyncio.wait_for(self.process.stdout.readline(), deadline - loop.time())
            except TimeoutError:
                break
            if not raw:
                break
            line = raw.decode(errors="replace").strip()
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"phone never said {prefix!r}: {self.lines}")

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await asyncio.wait_for(self.process.wait(), 5)


@pytest.fixture
async def phones() -> AsyncIterator[list[Phone]]:
    started: list[Phone] = []
    try:
        yield started
    finally:
        for phone in started:
            await phone.stop()


def _need_pyvoip() -> None:
    """pyVoIP missing: skip locally, fail in CI (install the `phone` extra)."""
    if importlib.util.find_spec("pyVoIP") is None:
        message = "pyVoIP is not installed: pip install -e '.[phone]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


async def start_phone(
    phones: list[Phone], daemon: DaemonProcess, password: str = PASSWORD, seconds: float = 18
) -> Phone:
    _need_pyvoip()
    port = free_port(PHONE_IP)
    rtp = free_udp_range(10, PHONE_IP)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.e2e.phone_pyvoip",
        "--server", "127.0.0.1", "--port", str(daemon.sip_port), "--user", "alice",
        "--password", password, "--ip", PHONE_IP, "--sip-port", str(port),
        "--rtp", f"{rtp}-{rtp + 9}", "--seconds", str(seconds),
        cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    phone = Phone(process, port)
    phones.append(phone)
    return phone


async def _setup(daemon: DaemonProcess, destinations: list[Destination], allow: str) -> None:
    async def rows(store: Store) -> None:
        await add_extension(store, "alice", ExtensionOptions(password=PASSWORD))
        await store.trunks.add(Trunk(name="carrier", host="127.0.0.1", allow=(allow,)))
        for dest in destinations:
            await store.destinations.add(dest)
        await store.sources.add(Source(name="Craigslist", tag="Craigslist"))
        await store.numbers.add(
            TrackingNumber(number=DID, source="Craigslist", trunk="carrier",
                           destinations=tuple(d.name for d in destinations), ring_timeout=8)
        )  # fmt: skip

    await provision(daemon.db, rows)
    await daemon.start()


DESK = Destination(name="front-desk", target="ext:alice", kind="extension")


async def _bindings(daemon: DaemonProcess) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []

    async def read(store: Store) -> None:
        found.extend((b.contact, b.received) for b in await store.extensions.bindings("alice"))

    await provision(daemon.db, read)
    return found


async def test_registered_pyvoip_phone_answers_and_audio_flows_both_ways(
    sipp: SippFactory, daemon: DaemonProcess, phones: list[Phone]
) -> None:
    await _setup(daemon, [DESK], allow="127.0.0.1/32")
    phone = await start_phone(phones, daemon)
    await phone.expect("REGISTERED")
    [(contact, received)] = await _bindings(daemon)
    assert received == f"udp:{PHONE_IP}:{phone.port}"
    assert contact.startswith(f"sip:alice@{PHONE_IP}:{phone.port}")
    media_port = free_udp_range(2)
    caller = await _call(sipp, daemon, "b2bua_caller.xml", hold_ms=3000, media_port=media_port)
    await phone.expect("ANSWERED")
    answer_ip, answer_port = await _logged(caller, "ANSWER_MEDIA")
    heard = await _exchange_rtp(media_port, (answer_ip, int(answer_port)), 50)
    await _ok(caller)
    ended = await phone.expect("ENDED")
    assert heard >= 40  # the phone's audio reached the caller through the relay
    assert int(ended.split("rtp_in=")[1]) >= 40  # the caller's audio reached the phone
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    assert record.destination == "front-desk"
    assert record.caller == CALLER
    assert record.packets_in_out >= 40
    assert record.packets_out_in >= 40
    assert [(a.target, a.status) for a in record.attempts] == [("front-desk", 200)]


async def test_unregistered_extension_hunts_on_to_the_next_destination(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    answer = await sipp.start("b2bua_callee.xml", seconds=20)
    backup = Destination(name="backup", target=f"sip:{MOBILE}@127.0.0.1:{answer.port}", kind="sip")
    await _setup(daemon, [DESK, backup], allow="127.0.0.1/32")
    caller = await _call(sipp, daemon, "b2bua_caller.xml")
    await _ok(caller)
    await _ok(answer)
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    assert record.destination == "backup"


async def test_wrong_password_is_refused_and_binds_nothing(
    daemon: DaemonProcess, phones: list[Phone]
) -> None:
    await _setup(daemon, [DESK], allow="127.0.0.1/32")
    phone = await start_phone(phones, daemon, password="wrong-password-1")
    line = await phone.expect("FAILED")
    assert "register" in line or "Invalid" in line
    assert await _bindings(daemon) == []
    assert '"register.refused"' in daemon.log_text()
    assert '"status": 403' in daemon.log_text() or '"status":403' in daemon.log_text()


async def test_register_from_the_trunk_address_binds_nothing(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    await _setup(daemon, [DESK], allow="127.0.0.0/8")  # the phone's address is a trunk's
    run = await sipp.start(
        "ext_register_trunk.xml", remote=("127.0.0.1", daemon.sip_port), seconds=10,
        keys={"user": "alice"},
    )  # fmt: skip
    await _ok(run)
    assert await _bindings(daemon) == []
