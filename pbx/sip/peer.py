"""Where a SIP message came from or goes to (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Transport = Literal["udp", "tcp", "tls"]
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")


@dataclass(frozen=True, slots=True, eq=False)
class Peer:
    """A transport address: protocol, host (IP literal) and port.

    For an outbound TLS connection, `server_name` is the name the peer's
    certificate must carry (and the SNI sent; "" = the host itself) and `ca`
    the PEM of a private CA to trust instead of the system's ("" = system).
    Neither takes part in equality: one connection per address either way.
    """

    transport: Transport
    host: str
    port: int
    server_name: str = field(default="", compare=False)
    ca: str = field(default="", compare=False, repr=False)

    # Written out so that mypyc compiles them (the dataclass's stay interpreted):
    # peers key the connection and flood tables.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Peer):
            return NotImplemented
        return (
            self.port == other.port
            and self.host == other.host
            and self.transport == other.transport
        )

    def __hash__(self) -> int:
        return hash((self.transport, self.host, self.port))

    @property
    def reliable(self) -> bool:
        """RFC 3261 §17: retransmission timers run only on unreliable transports."""
        return self.transport != "udp"

    @property
    def stream(self) -> bool:
        """A connection-oriented transport (TCP, or TLS over TCP): framed, reused."""
        return self.transport != "udp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def as_transport(text: str | None, default: Transport = "udp") -> Transport | None:
    """A URI `transport=` param (any case) as a Transport; None if it names another."""
    if not text:
        return default
    lowered = text.lower()
    for t in TRANSPORTS:
        if t == lowered:
            return t
    return None
