"""When a TCP or TLS connection is closed for doing nothing (pure: times in, verdicts out).

Every open connection holds one of `transport.MAX_CONNECTIONS` slots and a
socket; without a bound, a peer that opens connections and never speaks
(a connect flood, a slowloris sending a byte now and then) keeps them
forever and locks every TCP/TLS trunk out. Two rules, checked by the
transport every `SWEEP_INTERVAL` seconds:

- **silent**: an inbound connection that has not delivered one complete
  SIP message `SILENT_TIMEOUT` seconds after it opened (64*T1 = 32 s, the
  longest a transaction waits, RFC 3261 §17). Always on: such a
  connection carries nothing a SIP peer could be waiting for.
- **idle**: no byte either way (CRLF keep-alives count) for `idle_timeout`
  seconds, `[sip] tcp_idle_timeout`, 0 = never. The default, 300 s, lies
  above the keep-alive intervals UAs and trunks use on TCP (RFC 5626
  §4.4.1 recommends 95-120 s) and above every transaction timer, so a
  live flow is never cut; a peer that finds the connection closed opens a
  new one for its next request (RFC 3261 §18.1.1, §18.2.2).

Outbound connections (opened by pbx) are never "silent": pbx wrote first
and the answer may take a while; they are subject to the idle rule only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SILENT_TIMEOUT = 32.0
SWEEP_INTERVAL = 5.0
DEFAULT_IDLE_TIMEOUT = 300.0

Verdict = Literal["silent", "idle"]


@dataclass(slots=True)
class Activity:
    """What one connection did: when it opened, its last byte either way, messages in."""

    opened: float
    inbound: bool
    last: float = 0.0
    messages: int = 0

    def __post_init__(self) -> None:
        self.last = max(self.last, self.opened)

    def saw_bytes(self, now: float, messages: int = 0) -> None:
        self.last = now
        self.messages += messages


def verdict(
    activity: Activity, now: float, idle_timeout: float, silent_timeout: float = SILENT_TIMEOUT
) -> Verdict | None:
    """Why the connection should be closed at `now`, or None to keep it."""
    if activity.inbound and activity.messages == 0 and now - activity.opened >= silent_timeout:
        return "silent"
    if idle_timeout > 0 and now - activity.last >= idle_timeout:
        return "idle"
    return None
