"""Regression tests for what the fuzz targets (tests/fuzz) found.

All fixed, each kept as a regression test: SDP ports written with non-ASCII
digits raised ValueError; a session-level a=rtcp carried the peer's address
through the rewrite; a near-limit SDP could be rewritten past our own size
limit; visitor/GA ids accepted a trailing newline (re.match with '$');
deeply nested JSON raised RecursionError (a 500 instead of a 400).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from pbx.config import load_settings
from pbx.http.visitors import MAX_BODY, BadRequest, add_routes, check_visit_body
from pbx.rtp.sdp import MAX_SDP_BYTES, OriginState, SdpError, parse_sdp, rewrite
from pbx.store.connect import open_store

# -- pbx.rtp.sdp ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "v=0\r\nm=audio \u00b2 RTP/AVP 0\r\n",  # superscript two: isdigit() but not int()
        "v=0\r\nm=audio 4000/\u00b3 RTP/AVP 0\r\n",
        "v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:\u00b9\r\n",
        "v=0\r\nm=audio \u0664\u0660\u0660\u0660 RTP/AVP 0\r\n",  # Arabic-Indic 4000
    ],
)
def test_sdp_port_with_non_ascii_digits_is_an_sdp_error(body: str) -> None:
    with pytest.raises(SdpError):
        parse_sdp(body.encode())


def test_session_level_rtcp_attribute_does_not_leak_the_peer_address() -> None:
    body = (
        b"v=0\r\no=- 42 42 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        b"a=rtcp:40001 IN IP4 192.0.2.10\r\nm=audio 40000 RTP/AVP 0\r\n"
    )
    out = rewrite(parse_sdp(body), "203.0.113.99", [20000], origin=OriginState(session_id=1))
    assert b"192.0.2.10" not in out


def test_rewrite_output_of_a_near_limit_body_parses_again() -> None:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=audio 4000 RTP/AVP 0"]
    text = "\r\n".join([*lines, *["c=IN IP4 192.0.2.1"] * 400]) + "\r\n"
    text += "a=x:" + "y" * (MAX_SDP_BYTES - len(text) - 6) + "\r\n"
    assert len(text) == MAX_SDP_BYTES
    try:
        out = rewrite(parse_sdp(text.encode()), "2001:db8::99", [20000], origin=OriginState(1))
    except SdpError:
        return  # refusing is fine too
    parse_sdp(out)


# -- pbx.http.visitors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"), [("visitor_id", "abcdefgh\n"), ("ga_client_id", "1234567890.1700000000\n")]
)
def test_ids_with_a_trailing_newline_are_refused(field: str, value: str) -> None:
    with pytest.raises(BadRequest):
        check_visit_body({field: value, "landing_url": "https://www.example.com/"}, "US")


@pytest.fixture
async def visits_url(tmp_path: Path) -> AsyncIterator[str]:
    store = await open_store(tmp_path / "db.sqlite3")
    app = web.Application()
    add_routes(app, store, load_settings(None, {}, {}))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1/visits"
    await runner.cleanup()
    await store.close()


async def test_deeply_nested_json_gets_400(visits_url: str) -> None:
    body = b"[" * (MAX_BODY - 1)
    async with aiohttp.ClientSession() as session, session.post(visits_url, data=body) as r:
        assert r.status == 400
        assert "error" in await r.json()


async def test_ordinary_bad_json_gets_400(visits_url: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(visits_url, data=b"{") as r:
        assert r.status == 400
        assert "error" in await r.json()
