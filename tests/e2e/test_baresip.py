"""End to end with a real softphone: Debian's baresip 1.0 registers (MD5 digest) and answers.

baresip runs headless in its own process (config in a temp dir, SIP and RTP
on 127.0.0.3 so its REGISTER does not come from the trunk's 127.0.0.1),
auto-answers, and sends a 440 Hz tone from its `ausine` source; its
`sndfile` filter writes what it decodes to a WAV file. sipp plays the trunk
calling the tracking number, a Python RTP endpoint the caller's audio.

baresip 1.0 takes the first WWW-Authenticate it gets and knows no SHA-256,
so with pbx's default challenges (SHA-256 first) it never registers; with
`--digest md5` it does. Both halves are tested: the second is what fails
without the feature.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pbx.admin.extensions import ExtensionOptions, add_extension
from pbx.records import Disposition
from pbx.store import Destination, Source, Store, TrackingNumber, Trunk

from .conftest import SippFactory, free_port, free_udp_range
from .daemon import DaemonProcess, provision
from .test_b2bua import DID, _call, _exchange_rtp, _logged, _ok, _record

pytestmark = pytest.mark.e2e

PASSWORD = "correct-horse-42"
PHONE_IP = "127.0.0.3"
MODULES = Path("/usr/lib/baresip/modules")
DESK = Destination(name="front-desk", target="ext:alice", kind="extension")


class Baresip:
    """One baresip process: its output read all along, waited on with bounds; stopped by PID."""

    def __init__(self, process: asyncio.subprocess.Process, home: Path) -> None:
        self.process = process
        self.home = home
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while raw := await self.process.stdout.readline():
            self.lines.append(raw.decode(errors="replace").rstrip())
            self._changed.set()
        self._changed.set()

    def _find(self, needles: tuple[str, ...], start: int) -> str | None:
        return next((ln for ln in self.lines[start:] if any(n in ln for n in needles)), None)

    async def expect(self, *needles: str, start: int = 0, limit: float = 10.0) -> str:
        """The first output line from `start` holding any of `needles` (bounded wait)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while (found := self._find(needles, start)) is None:
            if self._reader.done() or loop.time() >= deadline:
                tail = "\n".join(self.lines[-60:])
                raise AssertionError(f"baresip never printed {needles!r}; last lines:\n{tail}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
        return found

    async def stop(self) -> None:
        """SIGTERM (baresip closes its calls and sndfile's WAV files), SIGKILL after 5 s."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
        await asyncio.wait_for(self.process.wait(), 5)
        await asyncio.wait_for(self._reader, 5)
        (self.home / "baresip.out").write_text("\n".join(self.lines) + "\n")  # for diagnosis


def _config(home: Path, sip_port: int, rtp_low: int) -> str:
    return "\n".join([
        "poll_method epoll",
        f"sip_listen {PHONE_IP}:{sip_port}",
        f"net_interface {PHONE_IP}",
        f"rtp_ports {rtp_low}-{rtp_low + 9}",
        "audio_source ausine,440",
        "ausrc_srate 48000",  # ausine runs only at 48 kHz; baresip resamples to PCMU
        "ausrc_channels 2",  # and in stereo; the resampler mixes down
        "audio_player aubridge,nowhere",  # headless: decoded audio goes to sndfile only
        "audio_alert aubridge,nowhere",
        f"module_path {MODULES}",
        "module g711.so",
        "module ausine.so",
        "module aubridge.so",
        "module sndfile.so",
        f"snd_path {home}",
        "module_app account.so",
        "module_app menu.so",
        "",
    ])  # fmt: skip


@pytest.fixture
async def phones() -> AsyncIterator[list[Baresip]]:
    started: list[Baresip] = []
    try:
        yield started
    finally:
        for phone in started:
            await phone.stop()


def _write_home(home: Path, sip_port: int) -> None:
    """baresip's config and accounts files (auto-answer, PCMU) in `home`."""
    if shutil.which("baresip") is None or not MODULES.is_dir():
        if os.environ.get("CI"):
            pytest.fail("baresip is not installed but CI is set (apt-get install baresip)")
        pytest.skip("baresip is not installed: apt-get install -y baresip")
    home.mkdir()
    (home / "config").write_text(_config(home, free_port(PHONE_IP), free_udp_range(10, PHONE_IP)))
    account = (
        f"<sip:alice@127.0.0.1:{sip_port};transport=udp>;auth_pass={PASSWORD};"
        "answermode=auto;regint=120;audio_codecs=PCMU"
    )
    (home / "accounts").write_text(account + "\n")


async def start_baresip(phones: list[Baresip], home: Path, daemon: DaemonProcess) -> Baresip:
    _write_home(home, daemon.sip_port)
    process = await asyncio.create_subprocess_exec(
        "baresip", "-f", str(home), "-s", "-t", "25",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    phone = Baresip(process, home)
    phones.append(phone)
    return phone


async def _setup(daemon: DaemonProcess, digest: str) -> None:
    async def rows(store: Store) -> None:
        await add_extension(store, "alice", ExtensionOptions(password=PASSWORD, digest=digest))
        await store.trunks.add(Trunk(name="carrier", host="127.0.0.1", allow=("127.0.0.1/32",)))
        await store.destinations.add(DESK)
        await store.sources.add(Source(name="Craigslist", tag="Craigslist"))
        await store.numbers.add(
            TrackingNumber(number=DID, source="Craigslist", trunk="carrier",
                           destinations=("front-desk",), ring_timeout=8)
        )  # fmt: skip

    await provision(daemon.db, rows)
    await daemon.start()


def _decoded_frames(home: Path) -> int:
    """Frames in the WAV files sndfile wrote of the audio baresip decoded (received)."""
    total = 0
    for path in home.glob("*-dec.wav"):
        with wave.open(str(path), "rb") as wav:
            total += wav.getnframes()
    return total


async def test_baresip_registers_with_md5_answers_and_audio_flows_both_ways(
    sipp: SippFactory, daemon: DaemonProcess, phones: list[Baresip], tmp_path: Path
) -> None:
    await _setup(daemon, "md5")
    phone = await start_baresip(phones, tmp_path / "baresip", daemon)
    await phone.expect("200 OK", limit=15)
    trace = "\n".join(phone.lines)
    assert "algorithm=MD5" in trace
    assert "SHA-256" not in trace  # only MD5 was offered
    media_port = free_udp_range(2)
    caller = await _call(sipp, daemon, "b2bua_caller.xml", hold_ms=3000, media_port=media_port)
    answer_ip, answer_port = await _logged(caller, "ANSWER_MEDIA")
    heard = await _exchange_rtp(media_port, (answer_ip, int(answer_port)), 50)
    await _ok(caller)
    assert heard >= 40  # baresip's tone reached the caller through the relay
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    assert record.destination == "front-desk"
    assert record.packets_in_out >= 40  # caller -> phone
    assert record.packets_out_in >= 40  # phone -> caller
    await phone.expect("terminated (duration", limit=10)  # the call is torn down
    await phone.stop()  # a clean exit: sndfile has written its WAV headers
    assert _decoded_frames(phone.home) >= 40 * 160  # the caller's audio reached baresip


async def test_baresip_gives_up_when_sha256_is_offered_first(
    daemon: DaemonProcess, phones: list[Baresip], tmp_path: Path
) -> None:
    await _setup(daemon, "both")
    phone = await start_baresip(phones, tmp_path / "baresip", daemon)
    line = await phone.expect("Function not implemented", "200 OK", limit=15)
    assert "Function not implemented" in line  # the symptom, why --digest exists


async def test_a_phone_registered_on_node_a_answers_a_call_arriving_on_node_b(
    sipp: SippFactory, phones: list[Baresip], tmp_path: Path, pg_url: str
) -> None:
    """Bindings live in the shared PostgreSQL store: node b rings what node a registered
    (issue 15: extension bindings are shared across nodes)."""
    node_a = DaemonProcess(tmp_path / "a", pg_url, env={"PBX_NODE_ID": "a"})
    node_b = DaemonProcess(tmp_path / "b", pg_url, env={"PBX_NODE_ID": "b"})
    for node in (node_a, node_b):
        node.workdir.mkdir()
    try:
        await _setup(node_a, "md5")  # provisions the shared store and starts node a
        await node_b.start()
        phone = await start_baresip(phones, tmp_path / "baresip", node_a)
        await phone.expect("200 OK", limit=15)  # registered through node a
        caller = await _call(sipp, node_b, "b2bua_caller.xml", hold_ms=1000)  # into node b
        await _ok(caller)
        record = _record(await node_b.wait_final_record())
        assert (record.disposition, record.destination, record.node) == (
            Disposition.ANSWERED, "front-desk", "b",
        )  # fmt: skip
    finally:
        await node_b.stop()
        await node_a.stop()
