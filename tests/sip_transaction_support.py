"""Message factories for the transaction and dialog tests (built by parsing wire text)."""

from __future__ import annotations

from pbx.sip.message import Headers, Request, Response, parse
from pbx.sip.peer import Peer
from pbx.sip.status import reason_phrase

UAC = Peer("udp", "192.0.2.10", 5060)
UAS = Peer("udp", "198.51.100.1", 5060)
UAC_TCP = Peer("tcp", "192.0.2.10", 40001)
UAS_TCP = Peer("tcp", "198.51.100.1", 5060)


def request(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bKa1",
    via_host: str = "192.0.2.10",
    via_port: int | None = 5060,
    transport: str = "UDP",
    rport: bool = False,
    cseq: int = 1,
    call_id: str = "c1@192.0.2.10",
    from_tag: str = "f1",
    to_tag: str | None = None,
    extra: str = "",
) -> Request:
    """A request as a UAC at 192.0.2.10 would send it."""
    sent_by = via_host if via_port is None else f"{via_host}:{via_port}"
    via = f"SIP/2.0/{transport} {sent_by};branch={branch}{';rport' if rport else ''}"
    to = "<sip:+14155550101@198.51.100.1>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:+14155550101@198.51.100.1 SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:+12125550123@192.0.2.10>;tag={from_tag}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:caller@192.0.2.10:5060>\r\n"
        f"{extra}"
        "\r\n"
    )
    msg = parse(text.encode())
    assert isinstance(msg, Request)
    return msg


def reply(req: Request, status: int, *, to_tag: str | None = "t1", extra: str = "") -> Response:
    """A response to `req` (RFC 3261 §8.2.6.2), To tag added unless a 100."""
    headers = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in req.headers.get_all(name, split=False):
            headers.add(name, value)
    if to_tag and status != 100 and req.to.tag is None:
        headers.set("To", f"{headers.get('To')};tag={to_tag}")
    for line in extra.split("\r\n"):
        if line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    return Response(status, reason_phrase(status), headers)


def wire(msg: Request | Response) -> Request | Response:
    """A copy of `msg` as the peer sees it (serialised and parsed again)."""
    copy = parse(bytes(msg))
    assert type(copy) is type(msg)
    return copy
