"""End to end (issue 16, wire details): the running daemon answers what RFC 3261 says.

sipp (a peer nobody here wrote) sends an OPTIONS with `Require` and a
zero-padded Max-Forwards over UDP and TCP and expects 420 with Unsupported;
a raw UDP datagram with a NUL in a header gets 400 (a NUL cannot be written
in a sipp XML scenario).
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from pbx.sip.message import Response, parse

from .conftest import SippFactory
from .daemon import DaemonProcess

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_require_gets_420_with_unsupported(
    sipp: SippFactory, daemon: DaemonProcess, transport: str
) -> None:
    await daemon.start()
    run = await sipp.start(
        "sip_options_require_uac.xml", remote=("127.0.0.1", daemon.sip_port),
        transport=transport, seconds=10,
    )  # fmt: skip
    code = await run.wait()
    assert code == 0, run.diagnostics()


async def test_nul_in_a_header_gets_400_over_udp(daemon: DaemonProcess) -> None:
    await daemon.start()
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:+14155550101@127.0.0.1:{daemon.sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKnul1\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=n1\r\n"
            "To: <sip:+14155550101@127.0.0.1>\r\nCall-ID: nul-e2e\r\nCSeq: 1 OPTIONS\r\n"
            "User-Agent: evil\x00phone\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(request, ("127.0.0.1", daemon.sip_port))
        data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
    response = parse(data)
    assert isinstance(response, Response)
    assert response.status == 400
    assert response.call_id == "nul-e2e"
    assert "0x00" in response.reason
