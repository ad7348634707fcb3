"""Where a SIP message came from or goes to (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Transport = Literal["udp", "tcp"]


@dataclass(frozen=True, slots=True)
class Peer:
    """A transport address: protocol, host (IP literal) and port."""

    transport: Transport
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        """RFC 3261 §17: retransmission timers run only on unreliable transports."""
        return self.transport != "udp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"
