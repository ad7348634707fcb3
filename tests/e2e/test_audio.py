"""End to end (issue 13): recording, consent prompt, whisper and voicemail through the real
daemon, with sipp as the trunk and the destination and Python RTP endpoints on loopback.

Each side sends its own known G.711 signal, so the recording's channels can be compared with
what each side sent (caller left, answerer right): sipp plays sip-tester's g711a.pcap as the
caller and a pcap generated here (seeded noise, PCMU) as the callee (`play_pcap_audio`), and
the other tests use Python RTP endpoints (seeded noise, paced at 20 ms) where the test must
also see what each side received (the prompts' order, SSRCs).
Tolerance (pbx/audio/recorder.py): the channels may be offset by the legs' network delay and
jitter (well under 60 ms on loopback), so each channel is matched against its sender's
signal at the best offset, and must correlate > 0.9 with it and < 0.3 with the other's.
"""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import dataclass, field
from pathlib import Path

import asyncio_dgram
import numpy as np
import pytest

from pbx.audio import g711, wav
from pbx.records import CallRecord, Disposition
from pbx.rtp.packet import build_rtp, peek_rtp
from pbx.store import Destination, Source, Store, StoredPrompt, TrackingNumber, Trunk

from .conftest import SippFactory, free_udp_range
from .daemon import DaemonProcess, provision
from .test_b2bua import _logged

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["0", "1"], ids=["in-process", "workers"])
def media_engine(request: pytest.FixtureRequest, daemon: DaemonProcess) -> str:
    """Both built-in engines carry audio: the relay in the daemon, and in a worker process."""
    daemon.env["PBX_RTP_WORKERS"] = request.param
    return str(request.param)


both_engines = pytest.mark.usefixtures("media_engine")

DID = "+12125550100"
CALLER = "+13125550199"
OFFICE = "+14155550101"
CALLER_SSRC, CALLEE_SSRC = 0x1111, 0x2222
SEND_SECONDS = 4.0


def _signal(seed: int, seconds: float) -> np.ndarray:
    """Seeded noise as 16-bit samples, as it sounds after G.711 (what the recorder decodes)."""
    raw = np.random.default_rng(seed).normal(0, 6000, int(seconds * 8000))
    samples = np.clip(raw, -30000, 30000).astype("<i2")
    return g711.decode_samples(0, g711.encode_samples(0, samples)).astype(np.float64)


def _tone(seconds: float, freq: float = 300.0) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    return (np.sin(2 * np.pi * freq * t) * 10000).astype("<i2").tobytes()


@dataclass
class Peer:
    """One side's RTP: sends a signal paced at 20 ms, keeps (time, packet) of what it got."""

    port: int
    ssrc: int
    signal: np.ndarray
    got: list[tuple[float, bytes]] = field(default_factory=list)

    stream: asyncio_dgram.aio.DatagramServer | None = None
    receiver: asyncio.Future[None] | None = None

    async def open(self) -> None:
        """Bind and start receiving before the call starts (a prompt may come at once)."""
        stream = self.stream = await asyncio_dgram.bind(("127.0.0.1", self.port))
        loop = asyncio.get_running_loop()

        async def receive() -> None:
            while True:
                data, _ = await stream.recv()
                self.got.append((loop.time(), data))

        self.receiver = asyncio.ensure_future(receive())

    async def run(self, remote: tuple[str, int], seconds: float) -> None:
        stream = self.stream
        assert stream is not None
        loop = asyncio.get_running_loop()
        try:
            start = loop.time()
            pcm = self.signal.astype("<i2")
            for i in range(int(seconds / 0.02)):
                payload = g711.encode_samples(0, pcm[i * 160 : (i + 1) * 160])
                await stream.send(build_rtp(0, i, i * 160, self.ssrc, payload), remote)
                # pacing like a phone (20 ms ptime), not a race fix
                await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))
        finally:
            await asyncio.sleep(0.1)  # the last packets in flight on loopback
            self.close()

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.cancel()
        if self.stream is not None:
            self.stream.close()

    def ssrcs(self) -> list[int]:
        """The SSRC of every packet received, in arrival order."""
        return [h.ssrc for _, data in self.got if (h := peek_rtp(data)) is not None]


async def _setup(
    daemon: DaemonProcess, callee_port: int, rec_dir: Path | None = None, **audio: object
) -> None:
    async def rows(store: Store) -> None:
        await store.trunks.add(Trunk(name="carrier", host="127.0.0.1", port=callee_port,
                                     allow=("127.0.0.0/8",)))  # fmt: skip
        await store.destinations.add(Destination(name="d0", target=OFFICE, kind="number"))
        await store.sources.add(Source(name="Craigslist", tag="Craigslist"))
        for name in ("consent", "whisper", "greeting"):
            pcm = _tone(0.6, 300.0 if name != "whisper" else 700.0)
            await store.prompts.add(StoredPrompt(name=name, pcm=pcm, seconds=0.6))
        await store.numbers.add(
            TrackingNumber(number=DID, source="Craigslist", trunk="carrier", destinations=("d0",),
                           ring_timeout=10, **audio)  # type: ignore[arg-type]
        )  # fmt: skip

    daemon.env["PBX_RECORDING_DIR"] = str(rec_dir or daemon.workdir / "rec")
    await provision(daemon.db, rows)
    await daemon.start()


def _best_match(recorded: np.ndarray, sent: np.ndarray) -> float:
    """Highest normalised correlation of `recorded` with `sent` at any offset."""
    r = recorded.astype(np.float64)
    if len(r) > len(sent):
        r = r[: len(sent)]
    dots = np.correlate(sent, r, mode="valid")
    energy = np.cumsum(np.concatenate([[0.0], sent**2]))
    windows = np.sqrt(energy[len(r) :] - energy[: -len(r)])
    scores = dots / (np.linalg.norm(r) * np.maximum(windows, 1e-9))
    return float(scores.max())


def _channels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = path.read_bytes()
    assert not wav.needs_repair(data[:44], len(data)), "header not fixed at close"
    frames = np.frombuffer(data[44:], dtype="<i2").reshape(-1, 2)
    return frames[:, 0], frames[:, 1]


def _voiced(channel: np.ndarray) -> np.ndarray:
    """The channel from its first to its last non-silent 20 ms, edges trimmed."""
    loud = np.flatnonzero(np.abs(channel) > 200)
    assert len(loud) > 1600, "the channel is silent"
    return channel[loud[0] + 160 : loud[-1] - 160]


def _record(records: list[CallRecord]) -> CallRecord:
    assert len(records) == 1, records
    return records[0]


async def _call(sipp: SippFactory, daemon: DaemonProcess, caller: Peer, hold_ms: int):  # type: ignore[no-untyped-def]
    await caller.open()
    return await sipp.start(
        "b2bua_caller.xml", remote=("127.0.0.1", daemon.sip_port),
        keys={"caller": CALLER, "mport": str(caller.port)},
        extra=["-s", DID[1:], "-d", str(hold_ms)], seconds=20,
    )  # fmt: skip


@both_engines
async def test_recorded_call_with_disclosure(sipp: SippFactory, daemon: DaemonProcess) -> None:
    caller = Peer(free_udp_range(2), CALLER_SSRC, _signal(1, SEND_SECONDS))
    callee = Peer(free_udp_range(2), CALLEE_SSRC, _signal(2, SEND_SECONDS))
    await callee.open()
    callee_run = await sipp.start("audio_callee.xml", keys={"cmport": str(callee.port)}, seconds=20)
    await _setup(daemon, callee_run.port, record=True, disclosure="consent")
    caller_run = await _call(sipp, daemon, caller, hold_ms=3500)
    answer_ip, answer_port = await _logged(caller_run, "ANSWER_MEDIA")
    offer = await _logged(callee_run, "OFFER_MEDIA")
    await asyncio.gather(
        caller.run((answer_ip, int(answer_port)), SEND_SECONDS),
        callee.run((offer[0], int(offer[1])), SEND_SECONDS),
    )
    assert await caller_run.wait() == 0, caller_run.diagnostics()
    assert await callee_run.wait() == 0, callee_run.diagnostics()
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    assert record.media_note is None
    assert record.recording == f"{record.id}.wav"

    # The disclosure (30 packets of 20 ms, its own SSRC) reaches each side before any of
    # the other side's audio.
    for peer, other in ((caller, CALLEE_SSRC), (callee, CALLER_SSRC)):
        ssrcs = peer.ssrcs()
        first_other = ssrcs.index(other)
        prompt = [s for s in ssrcs[:first_other] if s != other]
        assert len(prompt) == 30, ssrcs[:40]
        assert other not in ssrcs[:30]
        assert set(ssrcs[:30]) & {CALLER_SSRC, CALLEE_SSRC} == set()

    path = daemon.workdir / "rec" / record.recording
    assert record.recording_bytes == path.stat().st_size
    assert 2.0 < record.recording_seconds < 4.0  # from the end of the prompt to the BYE
    left, right = _channels(path)
    assert _best_match(_voiced(left), caller.signal) > 0.9
    assert _best_match(_voiced(right), callee.signal) > 0.9
    assert _best_match(_voiced(left), callee.signal) < 0.3
    assert _best_match(_voiced(right), caller.signal) < 0.3


async def test_unrecorded_call_has_no_file(sipp: SippFactory, daemon: DaemonProcess) -> None:
    caller = Peer(free_udp_range(2), CALLER_SSRC, _signal(1, 1.0))
    callee = Peer(free_udp_range(2), CALLEE_SSRC, _signal(2, 1.0))
    await callee.open()
    callee_run = await sipp.start("audio_callee.xml", keys={"cmport": str(callee.port)}, seconds=20)
    await _setup(daemon, callee_run.port)
    caller_run = await _call(sipp, daemon, caller, hold_ms=1500)
    answer_ip, answer_port = await _logged(caller_run, "ANSWER_MEDIA")
    offer = await _logged(callee_run, "OFFER_MEDIA")
    await asyncio.gather(
        caller.run((answer_ip, int(answer_port)), 1.0),
        callee.run((offer[0], int(offer[1])), 1.0),
    )
    assert await caller_run.wait() == 0, caller_run.diagnostics()
    record = _record(await daemon.wait_final_record())
    assert record.recording is None
    assert not list((daemon.workdir / "rec").glob("*.wav"))
    assert set(caller.ssrcs()) == {CALLEE_SSRC}  # no prompt anywhere


@both_engines
async def test_whisper_reaches_only_the_answerer(sipp: SippFactory, daemon: DaemonProcess) -> None:
    caller = Peer(free_udp_range(2), CALLER_SSRC, _signal(1, 2.5))
    callee = Peer(free_udp_range(2), CALLEE_SSRC, _signal(2, 2.5))
    await callee.open()
    callee_run = await sipp.start("audio_callee.xml", keys={"cmport": str(callee.port)}, seconds=20)
    await _setup(daemon, callee_run.port, whisper="whisper", record=True)
    offer_task = asyncio.ensure_future(_logged(callee_run, "OFFER_MEDIA"))
    caller_run = await _call(sipp, daemon, caller, hold_ms=2000)
    offer = await offer_task
    # The callee talks from its answer on; the caller only once it is connected.
    callee_side = asyncio.ensure_future(callee.run((offer[0], int(offer[1])), 2.5))
    answer_ip, answer_port = await _logged(caller_run, "ANSWER_MEDIA")
    await caller.run((answer_ip, int(answer_port)), 2.0)
    await callee_side
    assert await caller_run.wait() == 0, caller_run.diagnostics()
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    ssrcs = callee.ssrcs()
    whisper = ssrcs[: ssrcs.index(CALLER_SSRC)]
    assert len(whisper) == 30
    assert set(whisper) & {CALLER_SSRC, CALLEE_SSRC} == set()
    assert set(caller.ssrcs()) == {CALLEE_SSRC}  # the caller never hears the whisper
    # Nor is it recorded: the recording starts at the bridge, after it (700 Hz tone).
    left, right = _channels(daemon.workdir / "rec" / (record.recording or ""))
    assert _best_match(_voiced(right), callee.signal) > 0.9
    for channel in (left, right):
        spectrum = np.abs(np.fft.rfft(channel.astype(np.float64)))
        freqs = np.fft.rfftfreq(len(channel), 1 / 8000)
        near = spectrum[(freqs > 690) & (freqs < 710)].max()
        assert near < 10 * np.median(spectrum), "the whisper tone is in the recording"


async def test_voicemail_records_the_caller(sipp: SippFactory, daemon: DaemonProcess) -> None:
    busy = await sipp.start("b2bua_callee_busy.xml", seconds=20)
    await _setup(daemon, busy.port, voicemail="greeting", voicemail_seconds=30)
    caller = Peer(free_udp_range(2), CALLER_SSRC, _signal(3, 3.0))
    caller_run = await _call(sipp, daemon, caller, hold_ms=3000)
    answer_ip, answer_port = await _logged(caller_run, "ANSWER_MEDIA")
    await caller.run((answer_ip, int(answer_port)), 3.0)
    assert await caller_run.wait() == 0, caller_run.diagnostics()
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.VOICEMAIL
    assert record.hangup_by == "caller"
    ssrcs = caller.ssrcs()
    assert len(ssrcs) == 30 + 20  # greeting 0.6 s + beep 0.4 s, one stream
    assert len(set(ssrcs)) == 1
    assert record.recording == f"{record.id}.wav"
    left, right = _channels(daemon.workdir / "rec" / record.recording)
    assert _best_match(_voiced(left), caller.signal) > 0.9
    assert not right.any()  # nobody on the other side


def _dtmf(seq: int, digit_event: int, ssrc: int, end: bool) -> bytes:
    """One RFC 4733 telephone-event packet (payload type 101, as the callee's SDP maps it)."""
    payload = bytes([digit_event, 0x8A if end else 0x0A]) + (800).to_bytes(2, "big")
    return build_rtp(101, seq, 16000, ssrc, payload)


async def _press(port: int, relay: tuple[str, int], ssrc: int) -> None:
    """Press 1: a few event packets then the end packet three times (RFC 4733 §2.5.1.4)."""
    stream = await asyncio_dgram.bind(("127.0.0.1", port))
    try:
        for i in range(6):
            await stream.send(_dtmf(i, 1, ssrc, end=i >= 3), relay)
            await asyncio.sleep(0.02)  # pacing like a phone, not a race fix
    finally:
        stream.close()


@both_engines
async def test_screening_no_digit_hunts_on_digit_one_bridges(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    silent = Peer(free_udp_range(2), 0x3333, _signal(4, 1.0))
    presser_port = free_udp_range(2)
    await silent.open()
    first = await sipp.start("audio_callee.xml", keys={"cmport": str(silent.port)}, seconds=20)
    second = await sipp.start("audio_callee.xml", keys={"cmport": str(presser_port)}, seconds=20)

    async def rows(store: Store) -> None:
        await store.trunks.add(Trunk(name="carrier", host="127.0.0.1", allow=("127.0.0.0/8",)))
        for i, run in enumerate((first, second)):
            target = f"sip:+1415555010{i + 1}@127.0.0.1:{run.port}"
            await store.destinations.add(Destination(name=f"d{i}", target=target, kind="sip"))
        await store.sources.add(Source(name="Craigslist"))
        await store.prompts.add(StoredPrompt(name="whisper", pcm=_tone(0.6, 700.0), seconds=0.6))
        await store.numbers.add(
            TrackingNumber(number=DID, source="Craigslist", destinations=("d0", "d1"),
                           ring_timeout=10, whisper="whisper", screen=True, screen_seconds=1)
        )  # fmt: skip

    daemon.env["PBX_RECORDING_DIR"] = str(daemon.workdir / "rec")
    await provision(daemon.db, rows)
    await daemon.start()
    caller = Peer(free_udp_range(2), CALLER_SSRC, _signal(1, 1.0))
    caller_run = await _call(sipp, daemon, caller, hold_ms=1000)
    offer = await _logged(second, "OFFER_MEDIA", limit=15.0)
    await _press(presser_port, (offer[0], int(offer[1])), 0x4444)
    await _logged(caller_run, "ANSWER_MEDIA")
    assert await caller_run.wait() == 0, caller_run.diagnostics()
    assert await first.wait() == 0, first.diagnostics()  # it was sent BYE
    assert await second.wait() == 0, second.diagnostics()
    silent.close()
    caller.close()
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    assert record.destination == "d1"
    assert [(a.status, a.reason) for a in record.attempts] == [
        (None, "no accept digit in time"), (200, "OK"),
    ]  # fmt: skip
    whisper = silent.ssrcs()
    assert len(whisper) == 30  # the first answerer heard the whisper, then nothing
    assert set(caller.ssrcs()) <= {0x4444}  # the caller never hears a whisper


PCAP = Path("/usr/share/sip-tester/g711a.pcap")


def _pcap_audio(path: Path) -> np.ndarray:
    """The decoded PCMA audio of every RTP packet in a pcap (Ethernet/IPv4/UDP), in order."""
    data = path.read_bytes()
    assert int.from_bytes(data[:4], "little") == 0xA1B2C3D4  # classic pcap, little-endian
    offset, payloads = 24, []
    while offset + 16 <= len(data):
        length = int.from_bytes(data[offset + 8 : offset + 12], "little")
        frame = data[offset + 16 : offset + 16 + length]
        offset += 16 + length
        ip = frame[14:]
        rtp = ip[(ip[0] & 0x0F) * 4 + 8 :]
        payloads.append(rtp[12:])
    return g711.decode_samples(8, b"".join(payloads)).astype(np.float64)


@pytest.mark.skipif(not PCAP.exists(), reason="sip-tester's g711a.pcap is not installed")
async def test_sipp_pcap_caller_is_recorded_on_the_left(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    callee = Peer(free_udp_range(2), CALLEE_SSRC, _signal(2, 7.0))
    await callee.open()
    callee_run = await sipp.start("audio_callee.xml", keys={"cmport": str(callee.port)}, seconds=30)
    await _setup(daemon, callee_run.port, record=True)
    caller_run = await sipp.start(
        "audio_caller_pcap.xml", remote=("127.0.0.1", daemon.sip_port), keys={"caller": CALLER},
        extra=["-s", DID[1:], "-d", "7500"], seconds=30,
    )  # fmt: skip
    offer = await _logged(callee_run, "OFFER_MEDIA")
    await callee.run((offer[0], int(offer[1])), 7.0)
    assert await caller_run.wait() == 0, caller_run.diagnostics()
    assert await callee_run.wait() == 0, callee_run.diagnostics()
    record = _record(await daemon.wait_final_record())
    assert record.recording == f"{record.id}.wav"
    left, right = _channels(daemon.workdir / "rec" / record.recording)
    sent = _pcap_audio(PCAP)
    assert _best_match(_voiced(left)[:40000], sent) > 0.9  # what sipp played, caller side
    assert _best_match(_voiced(right), callee.signal) > 0.9
    assert _best_match(_voiced(right)[:8000], sent) < 0.3


def _worker_pids(daemon: DaemonProcess) -> list[int]:
    for line in daemon.log_text().splitlines():
        if '"media.workers"' in line:
            return [int(p) for p in json.loads(line)["pids"]]
    return []


def _running(pid: int) -> bool:
    """True while `pid` is a live process (an orphan's zombie awaiting init counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


async def _gone(pids: list[int], limit: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while any(_running(pid) for pid in pids):
        assert loop.time() < deadline, f"media workers {pids} outlived their daemon"
        await asyncio.sleep(0.05)


@both_engines
async def test_crash_mid_recording_leaves_a_playable_file(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    """A daemon killed mid-call: the file is repaired and named at the next start. With
    workers, the worker sees its daemon gone, flushes the file and exits (leaving the header
    to the sweep, like an in-process crash)."""
    caller = Peer(free_udp_range(2), CALLER_SSRC, _signal(1, 3.0))
    callee = Peer(free_udp_range(2), CALLEE_SSRC, _signal(2, 3.0))
    await callee.open()
    callee_run = await sipp.start("audio_callee.xml", keys={"cmport": str(callee.port)}, seconds=30)
    await _setup(daemon, callee_run.port, record=True)
    caller_run = await _call(sipp, daemon, caller, hold_ms=20000)
    answer_ip, answer_port = await _logged(caller_run, "ANSWER_MEDIA")
    offer = await _logged(callee_run, "OFFER_MEDIA")
    await asyncio.gather(
        caller.run((answer_ip, int(answer_port)), 3.0),
        callee.run((offer[0], int(offer[1])), 3.0),
    )
    workers = _worker_pids(daemon)
    await daemon.stop(signal.SIGKILL)  # mid-call: the header still says 0 bytes
    await _gone(workers)  # no orphan: a worker ends with its daemon
    files = list((daemon.workdir / "rec").glob("*.wav"))
    assert len(files) == 1
    head = files[0].read_bytes()
    assert wav.needs_repair(head[:44], len(head))
    caller_run.kill()
    callee_run.kill()
    await daemon.start()  # the start-up sweep repairs it and names it in the record
    data = files[0].read_bytes()
    assert not wav.needs_repair(data[:44], len(data))
    assert wav.read_info(data).frames > 8000  # at least a second made it to the disk
    record = _record(await daemon.records())
    assert record.disposition == Disposition.INTERRUPTED
    assert record.recording == files[0].name
    assert record.media_note == "recording cut off by a restart"


async def test_unusable_recording_dir_the_call_goes_on(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    blocker = daemon.workdir / "not-a-dir"
    blocker.write_text("a file where the directory should be\n")
    caller = Peer(free_udp_range(2), CALLER_SSRC, _signal(1, 1.0))
    callee = Peer(free_udp_range(2), CALLEE_SSRC, _signal(2, 1.0))
    await callee.open()
    callee_run = await sipp.start("audio_callee.xml", keys={"cmport": str(callee.port)}, seconds=20)
    await _setup(daemon, callee_run.port, rec_dir=blocker / "rec", record=True)
    caller_run = await _call(sipp, daemon, caller, hold_ms=1500)
    answer_ip, answer_port = await _logged(caller_run, "ANSWER_MEDIA")
    offer = await _logged(callee_run, "OFFER_MEDIA")
    await asyncio.gather(
        caller.run((answer_ip, int(answer_port)), 1.0),
        callee.run((offer[0], int(offer[1])), 1.0),
    )
    assert await caller_run.wait() == 0, caller_run.diagnostics()
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    assert record.packets_in_out >= 40  # the audio flowed all the same
    assert record.recording is None
    assert (record.media_note or "").startswith("recording failed: cannot write ")
    failures = [line for line in daemon.log_text().splitlines() if "recording.failed" in line]
    assert len(failures) == 1  # one line per call, not one per packet


def _write_pcap(path: Path, samples: np.ndarray, ssrc: int) -> None:
    """A classic pcap (Ethernet/IPv4/UDP) of `samples` as 20 ms PCMU RTP packets, 20 ms apart.

    sipp's play_pcap_audio replays the RTP with its own addresses and ports; the
    ones written here are placeholders (192.0.2.1:4000 -> 192.0.2.2:4002)."""
    pcm = samples.astype("<i2")
    out = [(0xA1B2C3D4).to_bytes(4, "little") + bytes([2, 0, 4, 0]) + bytes(8)
           + (65535).to_bytes(4, "little") + (1).to_bytes(4, "little")]  # fmt: skip
    for i in range(len(pcm) // 160):
        rtp = build_rtp(0, i, i * 160, ssrc, g711.encode_samples(0, pcm[i * 160 : (i + 1) * 160]))
        udp = (4000).to_bytes(2, "big") + (4002).to_bytes(2, "big")
        udp += (8 + len(rtp)).to_bytes(2, "big") + bytes(2) + rtp
        ip = bytes([0x45, 0]) + (20 + len(udp)).to_bytes(2, "big") + bytes(4)
        ip += bytes([64, 17]) + bytes(2) + bytes([192, 0, 2, 1, 192, 0, 2, 2]) + udp
        frame = bytes(12) + b"\x08\x00" + ip
        usec = i * 20000
        record = (usec // 1_000_000).to_bytes(4, "little") + (usec % 1_000_000).to_bytes(
            4, "little"
        )
        record += len(frame).to_bytes(4, "little") * 2
        out.append(record + frame)
    path.write_bytes(b"".join(out))


def _callee_pcap_scenario(folder: Path, pcap: Path) -> Path:
    """audio_callee.xml answering from sipp's own media port and playing `pcap` after ACK."""
    text = (Path(__file__).parent / "scenarios" / "b2bua_callee.xml").read_text()
    text = text.replace(
        '<recv request="ACK" rtd="true" crlf="true"/>',
        '<recv request="ACK" rtd="true" crlf="true"/>\n  <nop><action>'
        f'<exec play_pcap_audio="{pcap}"/></action></nop>',
    )
    path = folder / "audio_callee_pcap.xml"
    path.write_text(text)
    return path


@pytest.mark.skipif(not PCAP.exists(), reason="sip-tester's g711a.pcap is not installed")
@both_engines
async def test_both_sides_played_by_sipp_from_pcaps(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    callee_signal = _signal(5, 6.0)
    pcap = daemon.workdir / "callee.pcap"
    _write_pcap(pcap, callee_signal, CALLEE_SSRC)
    scenario = _callee_pcap_scenario(daemon.workdir, pcap)
    callee_run = await sipp.start(scenario, seconds=30)
    await _setup(daemon, callee_run.port, record=True)
    caller_run = await sipp.start(
        "audio_caller_pcap.xml", remote=("127.0.0.1", daemon.sip_port), keys={"caller": CALLER},
        extra=["-s", DID[1:], "-d", "7500"], seconds=30,
    )  # fmt: skip
    assert await caller_run.wait() == 0, caller_run.diagnostics()
    assert await callee_run.wait() == 0, callee_run.diagnostics()
    record = _record(await daemon.wait_final_record())
    left, right = _channels(daemon.workdir / "rec" / (record.recording or ""))
    assert _best_match(_voiced(left)[:40000], _pcap_audio(PCAP)) > 0.9  # the caller's pcap
    assert _best_match(_voiced(right), callee_signal) > 0.9  # the callee's pcap
    assert _best_match(_voiced(right)[:8000], _pcap_audio(PCAP)) < 0.3
