"""Scale-out with the real parts: one PostgreSQL, Kamailio's dispatcher, two pbx nodes.

sipp plays the carrier on both sides: a UAC sends calls to Kamailio (the only
address the carrier knows), Kamailio spreads them over nodes `a` and `b`
(round-robin, OPTIONS probing), each node forwards its call back through
Kamailio to a sipp UAS (the business's phone, behind the same carrier).
Then node `a` is killed with SIGKILL while its calls are up:
- new calls keep being answered (Kamailio's INVITE to `a` times out and is
  retried on `b`);
- `b`'s lease sweep marks `a`'s unfinished calls `interrupted` within the
  lease time (printed: the figure for the closing note);
- every call sipp placed has exactly one record, naming the node that took it;
- the outbox delivered no event twice (both nodes poll one outbox).

Needs Debian's `kamailio` and `postgresql` (skipped locally without them,
a failure under CI). Marked `slow`: it runs ~30 s.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from pbx.records import Disposition
from pbx.store import Destination, Source, Store, TrackingNumber, Trunk
from tests import pg

from .conftest import SippFactory, free_port, free_udp_range
from .daemon import DaemonProcess, provision
from .kamailio_proc import KamailioProcess, kamailio_binary

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = Path(__file__).resolve().parents[2] / "config" / "kamailio" / "kamailio.cfg"
DID = "+12125550150"
CALLER = "+13125550199"
OFFICE = "+14155550101"
LEASE = 3.0  # seconds: renewed every second, a dead node swept within ~4 s
FIRST, SECOND = 6, 4  # calls before and after the kill


class Kamailio(KamailioProcess):
    """The cluster's front proxy (config/kamailio/kamailio.cfg) over the nodes' SIP ports."""

    def __init__(self, workdir: Path, port: int, nodes: list[int], trunk_port: int) -> None:
        super().__init__(workdir, port)
        self.port = port
        self.dispatcher = workdir / "dispatcher.list"
        self.dispatcher.write_text("".join(f"1 sip:127.0.0.1:{n}\n" for n in nodes))
        self.trunk_port = trunk_port

    async def start(self) -> None:  # type: ignore[override]
        defines = {
            "LISTEN": f"udp:127.0.0.1:{self.port}",
            "TRUNK": f'"sip:127.0.0.1:{self.trunk_port}"',
            "DISPATCHER_LIST": f'"{self.dispatcher}"',
            "CHILDREN": "2",
        }
        await super().start(CONFIG, defines, extra=["-n", "2"])


class Hooks:
    """A local webhook receiver: every (event, call id) the outbox delivered."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        call = body.get("call") or {}
        self.seen.append((str(body.get("event")), str(call.get("id"))))
        return web.Response(text="ok")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    receiver = Hooks()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


async def _provision(url: str, front_port: int) -> None:
    async def rows(store: Store) -> None:
        await store.trunks.add(
            Trunk(name="front", host="127.0.0.1", port=front_port, allow=("127.0.0.1/32",))
        )
        await store.destinations.add(Destination(name="office", target=OFFICE, kind="number"))
        await store.sources.add(Source(name="Radio", tag="radio"))
        await store.numbers.add(
            TrackingNumber(number=DID, source="Radio", destinations=("office",), trunk="front")
        )

    await provision(url, rows)


def _node(tmp_path: Path, name: str, url: str, hooks: Hooks) -> DaemonProcess:
    workdir = tmp_path / f"node-{name}"
    workdir.mkdir()
    env = {
        "PBX_NODE_ID": name,
        "PBX_NODE_LEASE_SECONDS": str(LEASE),
        "PBX_WEBHOOKS_URLS": f"http://127.0.0.1:{hooks.port}/hook",
        "PBX_OUTBOX_POLL_INTERVAL": "0.2",
    }
    return DaemonProcess(workdir, url, env=env)


async def _wait(predicate_desc: str, check: object, limit: float) -> float:
    """Poll `check()` (an async callable returning bool) until true; returns seconds taken."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < limit:
        if await check():  # type: ignore[operator]
            return loop.time() - start
        await asyncio.sleep(0.1)
    raise TimeoutError(f"never: {predicate_desc}")


def _invite_call_ids(run_dirs: list[Path]) -> list[str]:
    ids: list[str] = []
    for workdir in run_dirs:
        text = (workdir / "messages.log").read_text(errors="replace")
        for block in re.split(r"-{10,}[^\n]*\n", text):
            title, _, message = block.partition("\n")
            match = re.search(r"^Call-ID: *(\S+)", message, re.M)
            if "sent" in title and message.lstrip().startswith("INVITE ") and match:
                ids.append(match.group(1))
    return sorted(set(ids))


async def test_two_nodes_behind_kamailio_survive_a_kill(
    tmp_path: Path, pg_url: str, sipp: SippFactory, hooks: Hooks
) -> None:
    kamailio_binary()
    front_port = free_port()
    phone = await sipp.start("b2bua_callee.xml", calls=FIRST + SECOND, seconds=60)
    await _provision(pg_url, front_port)
    a, b = _node(tmp_path, "a", pg_url, hooks), _node(tmp_path, "b", pg_url, hooks)
    front: Kamailio | None = None
    try:
        await a.start()
        await b.start()
        front = Kamailio(tmp_path, front_port, [a.sip_port, b.sip_port], phone.port)
        await front.start()
        keys = {"caller": CALLER, "mport": str(free_udp_range(2))}
        first = await sipp.start(
            "b2bua_caller.xml", remote=("127.0.0.1", front_port), calls=FIRST,
            keys=keys, extra=["-s", DID[1:], "-d", "15000", "-r", "3"], seconds=40,
        )  # fmt: skip

        async def all_answered() -> bool:
            rows = await a.records()
            return len(rows) == FIRST and all(r.disposition == Disposition.ANSWERED for r in rows)

        await _wait("the first calls answered", all_answered, 20)
        by_node = Counter(r.node for r in await a.records())
        why = [ln for ln in a.log_text().splitlines() if "refused" in ln or "warning" in ln]
        why += [ln for ln in front.log().splitlines() if "failed" in ln or "WARN" in ln]
        assert set(by_node) == {"a", "b"}, (by_node, why[:5])  # spread over both nodes
        await a.stop(signal.SIGKILL)

        async def swept() -> bool:
            rows = [r for r in await b.records() if r.node == "a"]
            return all(r.disposition == Disposition.INTERRUPTED for r in rows)

        sweep = asyncio.ensure_future(_wait("a's calls interrupted", swept, LEASE * 4))
        second = await sipp.start(
            "b2bua_caller.xml", remote=("127.0.0.1", front_port), calls=SECOND,
            keys=keys, extra=["-s", DID[1:], "-d", "500", "-r", "2"], seconds=40,
        )  # fmt: skip
        await second.wait()
        marked = await sweep
        print(f"kill -9 -> the dead node's calls marked interrupted: {marked:.1f} s "
              f"(lease {LEASE} s)")  # fmt: skip

        async def all_final() -> bool:
            rows = await b.records()
            return len(rows) == FIRST + SECOND and all(r.is_final for r in rows)

        await _wait("every record final", all_final, 30)
        first.kill()
        rows = await b.records()
        placed = _invite_call_ids([first.workdir, second.workdir])
        assert len(placed) == FIRST + SECOND
        assert sorted(r.inbound_call_id for r in rows) == placed  # exactly one record each
        # the carrier-side source Kamailio passed (X-Pbx-Received), kept on every record
        assert all((r.received_from or "").startswith("127.0.0.1:") for r in rows)
        late = [r for r in rows if r.inbound_call_id not in _invite_call_ids([first.workdir])]
        assert len(late) == SECOND
        assert all(r.node == "b" and r.disposition == Disposition.ANSWERED for r in late)
        dups = [key for key, n in Counter(hooks.seen).items() if n > 1]
        assert dups == []  # no event delivered twice
        ended = {call for event, call in hooks.seen if event == "call.ended"}
        assert {r.id for r in late} <= ended or await _ended_soon(hooks, late)
    finally:
        if front is not None:
            await front.stop()
        await a.stop()
        await b.stop()
        phone.kill()


async def _ended_soon(hooks: Hooks, late: list[object]) -> bool:
    """The last `call.ended` events may still be on their way (outbox poll): wait a bit."""
    want = {r.id for r in late}  # type: ignore[attr-defined]

    async def delivered() -> bool:
        return want <= {call for event, call in hooks.seen if event == "call.ended"}

    await _wait("call.ended delivered for the late calls", delivered, 10)
    return True


@pytest.mark.usefixtures("hooks")
async def test_a_second_node_with_a_live_name_refuses_to_start(
    tmp_path: Path, pg_url: str, hooks: Hooks
) -> None:
    first = _node(tmp_path, "twin", pg_url, hooks)
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = DaemonProcess(second_dir, pg_url, env={"PBX_NODE_ID": "twin"})
    try:
        await first.start()
        with pytest.raises(RuntimeError, match="exited early"):
            await second.start()
        assert second.process is not None
        assert second.process.returncode == 1
        assert "Error: cannot start: node 'twin' is already running" in second.log_text()
        assert await first.health() == 200  # the first node is untouched
    finally:
        await second.stop()
        await first.stop()


async def test_a_node_rides_out_postgresql_going_away(tmp_path: Path, sipp: SippFactory) -> None:
    """PostgreSQL stops while a call is up: the call goes on, new calls get 503, and once
    the server is back the held final row is written and calls are taken again."""
    cluster = await asyncio.to_thread(pg.Cluster.start)
    node: DaemonProcess | None = None
    try:
        await asyncio.to_thread(cluster.create_template)
        url = cluster.url(await asyncio.to_thread(cluster.fresh_db))
        node = DaemonProcess(tmp_path / "node", url, env={"PBX_NODE_ID": "solo"})
        (tmp_path / "node").mkdir()
        callee = await sipp.start("b2bua_callee.xml", calls=3, seconds=60)
        await _setup_direct(url, callee.port)
        await node.start()
        keys = {"caller": CALLER, "mport": str(free_udp_range(2))}
        live = await sipp.start(
            "b2bua_caller.xml", remote=("127.0.0.1", node.sip_port), keys=keys,
            extra=["-s", DID[1:], "-d", "5000"], seconds=30,
        )  # fmt: skip
        await _logged_line(live, "ANSWER_MEDIA")
        await asyncio.to_thread(cluster.pause)
        refused = await sipp.start(
            "b2bua_caller_fail.xml", remote=("127.0.0.1", node.sip_port), keys=keys,
            extra=["-s", DID[1:]], seconds=30,
        )  # fmt: skip
        assert await _logged_line(refused, "FINAL") == ["503"]  # not taken unrecorded
        assert await live.wait() == 0  # the call that was up went on and ended
        await asyncio.to_thread(cluster.resume)
        await node.wait_health(200, limit=30)
        rows = await node.records()
        assert any(r.disposition == Disposition.ANSWERED and r.is_final for r in rows), rows
        again = await sipp.start(
            "b2bua_caller.xml", remote=("127.0.0.1", node.sip_port), keys=keys,
            extra=["-s", DID[1:], "-d", "300"], seconds=30,
        )  # fmt: skip
        assert await again.wait() == 0  # taken again without a restart
        text = node.log_text()
        assert "store.unwritable" in text
        assert "call.crashed" not in text  # refused or carried on, never a crashed call
    finally:
        if node is not None:
            await node.stop()  # by its PID, whatever failed above
        await asyncio.to_thread(cluster.stop)


async def _setup_direct(url: str, callee_port: int) -> None:
    async def rows(store: Store) -> None:
        await store.trunks.add(
            Trunk(name="carrier", host="127.0.0.1", port=callee_port, allow=("127.0.0.1/32",))
        )
        await store.destinations.add(Destination(name="office", target=OFFICE, kind="number"))
        await store.sources.add(Source(name="Radio", tag="radio"))
        await store.numbers.add(
            TrackingNumber(number=DID, source="Radio", destinations=("office",), trunk="carrier")
        )

    await provision(url, rows)


async def _logged_line(run: object, prefix: str, limit: float = 15.0) -> list[str]:
    from .test_b2bua import _logged

    return await _logged(run, prefix, limit)  # type: ignore[arg-type]
