"""`[rtp] engine = "rtpengine"`: pbx drives a real userspace rtpengine; sipp calls through it.

The harness call of test_b2bua (caller -> pbx -> callee with RTP echo) with
the media anchored by rtpengine instead of pbx's relay: the SDP both sides
get names rtpengine's ports, RTP flows both ways through rtpengine, and the
record's media counters are rtpengine's (its `delete` totals).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.records import Disposition

from .conftest import SippFactory, free_port, free_udp_range
from .daemon import DaemonProcess
from .rtpengine_proc import RtpengineProcess, rtpengine_binary, start_rtpengine
from .test_b2bua import OFFICE, _call, _exchange_rtp, _logged, _ok, _setup

pytestmark = pytest.mark.e2e


@pytest.fixture
def rtpengine(tmp_path: Path) -> Iterator[RtpengineProcess]:
    if rtpengine_binary() is None:
        import os

        if os.environ.get("CI"):
            pytest.fail(
                "rtpengine is not installed but CI is set (apt-get install rtpengine-daemon)"
            )
        pytest.skip("rtpengine is not installed")
    low = free_udp_range(40)
    engine = start_rtpengine(tmp_path, free_port(), (low, low + 39))
    yield engine
    engine.stop()


async def test_a_call_with_media_anchored_by_rtpengine(
    sipp: SippFactory, daemon: DaemonProcess, rtpengine: RtpengineProcess
) -> None:
    daemon.env["PBX_RTP_ENGINE"] = "rtpengine"
    daemon.env["PBX_RTP_RTPENGINE"] = f"{rtpengine.ng[0]}:{rtpengine.ng[1]}"
    callee = await sipp.start("b2bua_callee.xml", extra=["-rtp_echo"], seconds=20)
    await _setup(daemon, [OFFICE], trunk_port=callee.port)
    media_port = free_udp_range(2)
    caller = await _call(sipp, daemon, "b2bua_caller.xml", hold_ms=3000, media_port=media_port)
    answer_ip, answer_port = await _logged(caller, "ANSWER_MEDIA")
    offer = await _logged(callee, "OFFER_MEDIA")
    low, high = rtpengine.ports
    assert low <= int(answer_port) <= high  # the caller sends to rtpengine
    assert low <= int(offer[1]) <= high  # so does the callee
    echoed = await _exchange_rtp(media_port, (answer_ip, int(answer_port)), 50)
    assert echoed == 50  # caller -> rtpengine -> callee (echo) -> rtpengine -> caller
    await _ok(caller)
    await _ok(callee)
    [record] = await daemon.wait_final_record()
    assert record.disposition == Disposition.ANSWERED
    assert record.packets_in_out >= 50  # rtpengine's counters: from the caller
    assert record.packets_out_in >= 50  # and from the callee
    assert "media.rtpengine" in daemon.log_text()
    # rtpengine kept its ports when each leg's real address replaced the placeholder
    # ("port latching"): the SDP both sides were sent stayed true
    assert "media.rtpengine_moved" not in daemon.log_text()


async def test_rtpengine_refuses_to_start_for_recorded_numbers(
    daemon: DaemonProcess, rtpengine: RtpengineProcess
) -> None:
    """rtpengine does not play or record for pbx: a recorded number stops `pbx serve`."""
    from pbx.store import Destination, Source, Store, TrackingNumber, Trunk

    from .daemon import provision

    async def rows(store: Store) -> None:
        await store.trunks.add(Trunk(name="carrier", host="127.0.0.1", allow=("127.0.0.0/8",)))
        await store.destinations.add(Destination(name="d0", target=OFFICE, kind="number"))
        await store.sources.add(Source(name="Radio"))
        await store.numbers.add(TrackingNumber(number="+12125550150", source="Radio",
                                               destinations=("d0",), record=True))  # fmt: skip

    await provision(daemon.db, rows)
    daemon.env["PBX_RTP_ENGINE"] = "rtpengine"
    daemon.env["PBX_RTP_RTPENGINE"] = f"{rtpengine.ng[0]}:{rtpengine.ng[1]}"
    with pytest.raises(RuntimeError, match="exited early"):
        await daemon.start()
    assert daemon.process is not None
    assert daemon.process.returncode == 1
    errors = [line for line in daemon.log_text().splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: cannot start: rtp.engine = rtpengine cannot play prompts or record calls, but "
        "+12125550150 use recording, prompts or screening: set rtp.engine = builtin, or turn "
        "those off"
    ]
