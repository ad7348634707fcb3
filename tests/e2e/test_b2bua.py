"""End to end: the real daemon forwarding calls between sipp peers on loopback.

sipp plays the trunk on the caller side (sends INVITE to our tracking
number) and the destination(s) on the callee side. Every test also checks
the call record the daemon wrote. Audio is checked with a Python RTP
endpoint on the caller side and sipp's `-rtp_echo` on the callee side, so a
packet counted back at the caller crossed the relay both ways.
"""

from __future__ import annotations

import asyncio
import re

import asyncio_dgram
import pytest

from pbx.records import CallRecord, Disposition
from pbx.rtp.packet import build_rtp
from pbx.sip.auth import parse_authorization, verify_authorization
from pbx.sip.message import Request, parse
from pbx.store import Block, Destination, Source, Store, TrackingNumber, Trunk

from .conftest import SippFactory, SippRun, free_udp_range
from .daemon import DaemonProcess, provision

pytestmark = pytest.mark.e2e

DID = "+12125550100"
CALLER = "+13125550199"
OFFICE = "+14155550101"
MOBILE = "+14155550102"


async def _setup(
    daemon: DaemonProcess,
    targets: list[str],
    *,
    strategy: str = "sequential",
    ring_timeout: int = 10,
    trunk_port: int = 5060,
    trunk_transport: str = "udp",
    allow: tuple[str, ...] = ("127.0.0.0/8",),
    credentials: tuple[str, str] | None = None,
) -> None:
    """A trunk, destinations named d0, d1... for `targets`, a source and the DID."""

    async def rows(store: Store) -> None:
        user, password = credentials or (None, None)
        await store.trunks.add(
            Trunk(name="carrier", host="127.0.0.1", port=trunk_port, transport=trunk_transport,  # type: ignore[arg-type]
                  allow=allow, username=user, password=password)
        )  # fmt: skip
        for i, target in enumerate(targets):
            kind = "sip" if target.startswith("sip:") else "number"
            await store.destinations.add(Destination(name=f"d{i}", target=target, kind=kind))  # type: ignore[arg-type]
        await store.sources.add(Source(name="Craigslist", tag="Craigslist"))
        await store.numbers.add(
            TrackingNumber(number=DID, source="Craigslist", trunk="carrier",
                           destinations=tuple(f"d{i}" for i in range(len(targets))),
                           strategy=strategy, ring_timeout=ring_timeout)  # type: ignore[arg-type]
        )  # fmt: skip

    await provision(daemon.db, rows)
    await daemon.start()


def _caller_keys(media_port: int | None = None) -> dict[str, str]:
    return {"caller": CALLER, "mport": str(media_port or free_udp_range(2))}


async def _call(
    sipp: SippFactory, daemon: DaemonProcess, scenario: str, *, hold_ms: int = 1000,
    transport: str = "u1", media_port: int | None = None, service: str = DID[1:],
) -> SippRun:  # fmt: skip
    return await sipp.start(
        scenario, remote=("127.0.0.1", daemon.sip_port), transport=transport,
        keys=_caller_keys(media_port), extra=["-s", service, "-d", str(hold_ms)], seconds=20,
    )  # fmt: skip


async def _logged(run: SippRun, prefix: str, limit: float = 10.0) -> list[str]:
    """Wait (bounded) for sipp's log line starting with `prefix`; returns its fields."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    path = run.workdir / "logs.log"
    while loop.time() < deadline:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line.split()[1:]
        if run.process.returncode is not None:
            break
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {prefix!r} in sipp's log\n{run.diagnostics()}")


async def _ok(run: SippRun) -> None:
    code = await run.wait()
    assert code == 0, run.diagnostics()


def _in_range(daemon: DaemonProcess, port: str) -> bool:
    return daemon.rtp_low <= int(port) <= daemon.rtp_high


async def _exchange_rtp(local_port: int, relay: tuple[str, int], count: int) -> int:
    """Send `count` 20 ms-paced RTP packets to the relay; count the echoes that come back."""
    stream = await asyncio_dgram.bind(("127.0.0.1", local_port))
    received = 0

    async def receive() -> None:
        nonlocal received
        while received < count:
            await stream.recv()
            received += 1

    receiver = asyncio.ensure_future(receive())
    try:
        for seq in range(count):
            payload = bytes([0xFF]) * 160
            await stream.send(build_rtp(0, seq, seq * 160, 0x1234, payload), relay)
            await asyncio.sleep(0.02)  # pacing like a phone (20 ms ptime), not a race fix
        await asyncio.wait_for(asyncio.shield(receiver), 3.0)
    except TimeoutError:
        pass
    finally:
        receiver.cancel()
        stream.close()
    return received


def _record(records: list[CallRecord]) -> CallRecord:
    assert len(records) == 1, records
    return records[0]


async def test_basic_call_relays_rtp_both_ways(sipp: SippFactory, daemon: DaemonProcess) -> None:
    callee = await sipp.start("b2bua_callee.xml", extra=["-rtp_echo"], seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port)
    media_port = free_udp_range(2)
    caller = await _call(sipp, daemon, "b2bua_caller.xml", hold_ms=3000, media_port=media_port)
    answer_ip, answer_port = await _logged(caller, "ANSWER_MEDIA")
    offer = await _logged(callee, "OFFER_MEDIA")
    assert answer_ip == "127.0.0.1"
    assert _in_range(daemon, answer_port)
    assert _in_range(daemon, offer[1])
    assert offer[1] != answer_port
    assert offer[3] == CALLER  # caller ID passed through
    assert offer[5] == OFFICE  # outbound R-URI user: the destination in E.164
    echoed = await _exchange_rtp(media_port, (answer_ip, int(answer_port)), 50)
    assert echoed == 50
    await _ok(caller)
    await _ok(callee)
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    assert record.hangup_by == "caller"
    assert record.destination == "d0"
    assert record.source == "Craigslist"
    assert record.tag == "Craigslist"
    assert record.caller == CALLER
    assert record.tracking_number == DID
    assert record.packets_in_out >= 50
    assert record.packets_out_in >= 50
    assert record.talk_seconds > 1.0
    assert record.outbound_call_id
    assert record.outbound_call_id != record.inbound_call_id
    assert [a.status for a in record.attempts] == [200]


async def test_callee_hangs_up_first(sipp: SippFactory, daemon: DaemonProcess) -> None:
    callee = await sipp.start("b2bua_callee_hangup.xml", extra=["-d", "500"], seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port)
    caller = await _call(sipp, daemon, "b2bua_caller_wait_bye.xml")
    await _ok(caller)
    await _ok(callee)
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    assert record.hangup_by == "callee"


async def test_cancel_while_ringing(sipp: SippFactory, daemon: DaemonProcess) -> None:
    callee = await sipp.start("b2bua_callee_noanswer.xml", seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port)
    caller = await _call(sipp, daemon, "b2bua_caller_cancel.xml")
    await _ok(caller)
    await _ok(callee)
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.CANCELLED
    assert record.hangup_by == "caller"
    assert record.sip_status == 487


async def test_busy_then_second_destination_answers(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    busy = await sipp.start("b2bua_callee_busy.xml", seconds=20)
    answer = await sipp.start("b2bua_callee.xml", seconds=20)
    await _setup(
        daemon, [f"sip:{OFFICE}@127.0.0.1:{busy.port}", f"sip:{MOBILE}@127.0.0.1:{answer.port}"]
    )
    caller = await _call(sipp, daemon, "b2bua_caller.xml")
    await _ok(caller)
    await _ok(busy)
    await _ok(answer)
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    assert record.destination == "d1"
    assert [(a.target, a.status) for a in record.attempts] == [("d0", 486), ("d1", 200)]


async def test_no_answer_fails_after_ring_timeout(sipp: SippFactory, daemon: DaemonProcess) -> None:
    callee = await sipp.start("b2bua_callee_noanswer.xml", seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port, ring_timeout=2)
    caller = await _call(sipp, daemon, "b2bua_caller_fail.xml")
    final = await _logged(caller, "FINAL", limit=15)
    await _ok(caller)
    await _ok(callee)
    assert final == ["480"]
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.NO_ANSWER
    assert record.sip_status == 480
    assert 1.5 <= record.ring_seconds <= 5.0


async def test_simultaneous_ring_one_branch_answers(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    ringing = await sipp.start("b2bua_callee_noanswer.xml", seconds=20)
    answer = await sipp.start("b2bua_callee.xml", seconds=20)
    await _setup(
        daemon,
        [f"sip:{OFFICE}@127.0.0.1:{ringing.port}", f"sip:{MOBILE}@127.0.0.1:{answer.port}"],
        strategy="simultaneous",
    )
    caller = await _call(sipp, daemon, "b2bua_caller.xml")
    await _ok(caller)
    await _ok(answer)
    await _ok(ringing)  # it was CANCELled: 200 to the CANCEL, 487, ACK
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    assert record.destination == "d1"
    assert sorted((a.target, a.status) for a in record.attempts) == [("d0", 487), ("d1", 200)]


async def test_unknown_number_gets_404_and_nothing_reaches_the_trunk(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    trunk = await sipp.start("b2bua_callee.xml", seconds=5)
    await _setup(daemon, [OFFICE], trunk_port=trunk.port)
    caller = await _call(sipp, daemon, "b2bua_caller_fail.xml", service="12125550199")
    assert await _logged(caller, "FINAL") == ["404"]
    await _ok(caller)
    trunk.kill()
    await trunk.process.wait()
    assert trunk.received() == []
    assert await daemon.records() == []


async def test_invite_from_a_non_trunk_address_gets_403(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    trunk = await sipp.start("b2bua_callee.xml", seconds=5)
    await _setup(daemon, [OFFICE], trunk_port=trunk.port, allow=("192.0.2.0/24",))
    caller = await _call(sipp, daemon, "b2bua_caller_fail.xml")
    assert await _logged(caller, "FINAL") == ["403"]
    await _ok(caller)
    trunk.kill()
    await trunk.process.wait()
    assert trunk.received() == []


async def test_reinvite_hold_and_resume(sipp: SippFactory, daemon: DaemonProcess) -> None:
    callee = await sipp.start("b2bua_callee_reinvite.xml", seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port)
    caller = await _call(sipp, daemon, "b2bua_caller_reinvite.xml")
    hold = await _logged(callee, "HOLD_OFFER")
    hold_answer = await _logged(caller, "HOLD_ANSWER")
    resume = await _logged(callee, "RESUME_OFFER")
    await _ok(caller)
    await _ok(callee)
    assert hold == ["sendonly", "127.0.0.1"]  # relayed, with our address
    assert hold_answer == ["127.0.0.1", "recvonly"]
    assert resume == ["sendrecv"]
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    assert record.hangup_by == "caller"


async def test_trunk_digest_challenge_on_outbound_invite(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    trunk = await sipp.start("sip_uas_auth_407.xml", seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=trunk.port, credentials=("acme", "s3cret"))
    caller = await _call(sipp, daemon, "b2bua_caller.xml")
    await _ok(caller)
    await _ok(trunk)
    invites = [parse(raw.encode()) for raw in trunk.received() if raw.startswith("INVITE")]
    assert len(invites) == 2
    second = invites[1]
    assert isinstance(second, Request)
    value = second.headers.get("Proxy-Authorization")
    assert value is not None
    creds = parse_authorization(value)
    assert creds.username == "acme"
    assert verify_authorization(creds, "s3cret", "INVITE")
    assert not verify_authorization(creds, "wrong", "INVITE")
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED


async def test_call_over_tcp(sipp: SippFactory, daemon: DaemonProcess) -> None:
    callee = await sipp.start("b2bua_callee.xml", transport="t1", seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port, trunk_transport="tcp")
    caller = await _call(sipp, daemon, "b2bua_caller.xml", transport="t1")
    await _ok(caller)
    await _ok(callee)
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    assert record.hangup_by == "caller"
    messages = "\n".join(callee.received())
    assert re.search(r"^Via: SIP/2.0/TCP ", messages, re.M)


async def test_kill_9_mid_call_marks_the_record_interrupted(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    import signal

    callee = await sipp.start("b2bua_callee.xml", seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port)
    caller = await _call(sipp, daemon, "b2bua_caller.xml", hold_ms=15000)
    await _logged(caller, "ANSWER_MEDIA")
    answered = await daemon.records()
    assert [r.disposition for r in answered] == [Disposition.ANSWERED]
    await daemon.stop(signal.SIGKILL)
    caller.kill()
    callee.kill()
    await daemon.start()
    record = _record(await daemon.wait_final_record())
    assert record.id == answered[0].id
    assert record.disposition == Disposition.INTERRUPTED
    assert record.ended_at is not None


async def test_blocked_caller_is_rejected_and_recorded(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    trunk = await sipp.start("b2bua_callee.xml", seconds=5)
    await provision(daemon.db, lambda store: _add_block(store, Block(pattern=CALLER[:5])))
    await _setup(daemon, [OFFICE], trunk_port=trunk.port)
    caller = await _call(sipp, daemon, "b2bua_caller_fail.xml")
    assert await _logged(caller, "FINAL") == ["603"]
    await _ok(caller)
    trunk.kill()
    await trunk.process.wait()
    assert trunk.received() == []
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.BLOCKED
    assert record.sip_status == 603
    assert record.caller == CALLER


async def _add_block(store: Store, block: Block) -> None:
    await store.blocks.add(block)


async def test_early_media_is_anchored(sipp: SippFactory, daemon: DaemonProcess) -> None:
    callee = await sipp.start("b2bua_callee_early.xml", seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port)
    caller = await _call(sipp, daemon, "b2bua_caller_early.xml", hold_ms=300)
    early_ip, early_port = await _logged(caller, "EARLY_MEDIA")
    answer_ip, answer_port = await _logged(caller, "ANSWER_MEDIA")
    await _ok(caller)
    await _ok(callee)
    assert early_ip == answer_ip == "127.0.0.1"
    assert _in_range(daemon, early_port)
    assert early_port == answer_port  # one relay port for the caller's leg, early and after
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED


async def test_info_in_dialog_is_relayed(sipp: SippFactory, daemon: DaemonProcess) -> None:
    callee = await sipp.start("b2bua_callee_info.xml", seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port)
    caller = await _call(sipp, daemon, "b2bua_caller_info.xml")
    assert await _logged(callee, "INFO_RECEIVED") == ["5", "dtmf-relay"]
    await _ok(caller)
    await _ok(callee)
    record = _record(await daemon.wait_final_record())
    assert record.hangup_by == "caller"


async def test_sigterm_refuses_new_calls_then_ends_calls_after_the_drain(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    import signal

    daemon.env["PBX_TIMERS_DRAIN_TIMEOUT"] = "2"
    callee = await sipp.start("b2bua_callee.xml", seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port)
    caller = await _call(sipp, daemon, "b2bua_caller_wait_bye.xml")
    await _logged(caller, "ANSWER_MEDIA")
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGTERM)
    await daemon.wait_health(503)
    late = await _call(sipp, daemon, "b2bua_caller_fail.xml")
    assert await _logged(late, "FINAL") == ["503"]
    await _ok(late)
    await _ok(caller)  # the daemon sent BYE when the drain time was over
    await _ok(callee)
    # it was already told to stop: wait for it to exit by itself, cleanly
    assert await asyncio.wait_for(daemon.process.wait(), 15) == 0
    record = _record(await daemon.records())
    assert record.disposition == Disposition.ANSWERED
    assert record.hangup_by == "system"
    assert record.ended_at is not None
    assert 1.5 <= record.talk_seconds <= 6.0


async def test_daemon_registers_to_a_trunk_marked_register(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    registrar = await sipp.start(
        "sip_uas_register.xml", keys={"user": "acme", "pass": "s3cret"}, seconds=15
    )

    async def rows(store: Store) -> None:
        await store.trunks.add(
            Trunk(name="carrier", host="127.0.0.1", port=registrar.port, register=True,
                  username="acme", password="s3cret")
        )  # fmt: skip

    await provision(daemon.db, rows)
    await daemon.start()
    await _ok(registrar)  # sipp checked the digest (<verifyauth>) and granted the binding
    registers = [r for r in registrar.received() if r.startswith("REGISTER")]
    assert len(registers) == 2
    second = parse(registers[1].encode())
    assert isinstance(second, Request)
    assert second.to.uri.user == "acme"
    assert second.headers.get("Authorization") is not None


async def test_cli_changes_apply_to_the_next_call_without_restart(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    import os
    import sys

    callee = await sipp.start("b2bua_callee.xml", seconds=20)
    await daemon.start()  # an empty database: every number is unknown
    env = {**os.environ, "PBX_DB": str(daemon.db)}
    for argv in (
        ["trunks", "add", "carrier", "--host", f"127.0.0.1:{callee.port}"],
        ["destinations", "add", "office", OFFICE],
        ["sources", "add", "TV", "--preset", "tv"],
        ["numbers", "add", DID, "--source", "TV", "--destination", "office"],
    ):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from cli import main; main()", *argv, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        assert proc.returncode == 0, err
    caller = await _call(sipp, daemon, "b2bua_caller.xml")
    await _ok(caller)
    await _ok(callee)
    record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED
    assert record.source == "TV"
