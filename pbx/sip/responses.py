"""Responses to requests: RFC 3261 §8.2.6 construction, parse-error answers (pure).

The one response builder of the code base: the agent, the transaction layer,
the registrar and the call controller all build responses here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pbx.sip.message import Headers, Request, Response
from pbx.sip.status import HeaderSource, SipParseError, reason_phrase

__all__ = ["make_response", "response_for_error"]

# Requests whose 1xx/2xx responses create dialogs and so carry Record-Route
# back (RFC 3261 §12.1.1; RFC 6665 §4.1.3 SUBSCRIBE/NOTIFY; RFC 3515 REFER).
_DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "NOTIFY", "REFER"})
_HAS_TAG = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to `request` per RFC 3261 §8.2.6.

    Copies every Via (in order), From, To, Call-ID and CSeq; adds `;tag=to_tag`
    to To unless it already has a tag; copies Timestamp into 100 (§8.2.6.1) and
    Record-Route into 101-299 responses to dialog-creating requests (§12.1.1).
    `headers` are appended; `reason` defaults to the standard phrase.
    """
    return _response_from(request.headers, request.method, status, reason, to_tag, headers, body)


def response_for_error(
    err: SipParseError, *, to_tag: str | None = None, reason: str | None = None
) -> Response | None:
    """The `err.status_hint` response to an unparsable request, or None to drop it.

    Possible only when the request's Via, From, To, Call-ID and CSeq were read
    (STYLE.md §3.6); never answer a response (its start line starts with SIP/).
    """
    partial = err.partial
    start = err.start_line or ""
    if partial is None or start[:4].upper() == "SIP/" or not start:
        return None
    method = start.split(" ", 1)[0]
    if method == "ACK":  # RFC 3261 §17.2.1: an ACK is never answered
        return None
    if any(partial.get(name) is None for name in ("Via", "From", "To", "Call-ID", "CSeq")):
        return None
    return _response_from(partial, method, err.status_hint, reason, to_tag, (), b"")


def _response_from(
    src: HeaderSource,
    method: str,
    status: int,
    reason: str | None,
    to_tag: str | None,
    extra: Iterable[tuple[str, str]],
    body: bytes,
) -> Response:
    out = Headers()
    for value in src.get_all("Via", split=False):
        out.add("Via", value)
    to = src.get("To") or ""
    if to_tag is not None and not _HAS_TAG.search(to[to.rfind(">") + 1 :]):
        to = f"{to};tag={to_tag}"
    copied: list[tuple[str, str | None]] = [
        ("From", src.get("From")),
        ("To", to),
        ("Call-ID", src.get("Call-ID")),
        ("CSeq", src.get("CSeq")),
    ]
    for name, copy in copied:
        if copy is not None:
            out.add(name, copy)
    if status == 100 and (stamp := src.get("Timestamp")) is not None:
        out.add("Timestamp", stamp)
    if 100 < status < 300 and method in _DIALOG_METHODS:
        for value in src.get_all("Record-Route", split=False):
            out.add("Record-Route", value)
    for name, value in extra:
        out.add(name, value)
    return Response(status, reason if reason is not None else reason_phrase(status), out, body)
