"""Responses to requests: RFC 3261 §8.2.6 construction, parse-error answers (pure).

The one response builder of the code base: the agent, the transaction layer,
the registrar and the call controller all build responses here.

Decisions:
- pbx supports no SIP extension (option tag) yet: `SUPPORTED_EXTENSIONS` is
  empty, so no 100rel (RFC 3262), no timer (RFC 4028), no replaces. A
  request that `Require`s any option tag is answered 420 Bad Extension with
  `Unsupported` listing the tags (RFC 3261 §8.2.2.3), OPTIONS included;
  ACK and CANCEL never are (they cannot be refused on their own). A
  B2BUA could relay a tag end to end, but then it would have to honour it on
  both legs, which pbx does not do. Option tags compare case-sensitively
  (tokens, RFC 3261 §19.2 gives no case folding).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pbx.sip.message import Headers, Request, Response
from pbx.sip.status import HeaderSource, SipParseError, reason_phrase

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "bad_extension",
    "make_response",
    "response_for_error",
    "unsupported_extensions",
]

# Option tags pbx implements (see Decisions); what OPTIONS answers in Supported.
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()

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


def unsupported_extensions(
    request: Request, supported: frozenset[str] = SUPPORTED_EXTENSIONS
) -> list[str]:
    """Option tags `request` Requires that are not in `supported`, in order, once each.

    Empty for ACK and CANCEL, which RFC 3261 §8.2.2.3 exempts.
    """
    if request.method in ("ACK", "CANCEL"):
        return []
    missing: list[str] = []
    for tag in request.headers.get_all("Require"):
        tag = tag.strip(" \t")
        if tag and tag not in supported and tag not in missing:
            missing.append(tag)
    return missing


def bad_extension(
    request: Request, supported: frozenset[str] = SUPPORTED_EXTENSIONS, *, to_tag: str | None = None
) -> Response | None:
    """The 420 Bad Extension for `request` (RFC 3261 §8.2.2.3), or None if it needs nothing else."""
    missing = unsupported_extensions(request, supported)
    if not missing:
        return None
    return make_response(request, 420, to_tag=to_tag, headers=[("Unsupported", ", ".join(missing))])
