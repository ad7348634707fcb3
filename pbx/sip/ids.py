"""Sources of tags, branches, Call-IDs and cnonces (pure; randomness injected).

STYLE.md §3.3: production uses `RandomIds` (the `secrets` module); tests use
`CountingIds(seed)`, which is deterministic so messages are byte-for-byte
reproducible. Every value is made of RFC 3261 §25.1 `token` characters, so it
is safe in a Via branch, a tag, a Call-ID or a quoted cnonce.

Decision: `CountingIds` values are readable (`z9hG4bK<seed>-b1`, `<seed>-t2`)
rather than random-looking; the counter is shared by all kinds so no two
values from one source are ever equal.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Protocol

# RFC 3261 §8.1.1.7: branches of RFC 3261 implementations start with this cookie.
MAGIC_COOKIE = "z9hG4bK"

_NOT_TOKEN = re.compile(r"[^A-Za-z0-9.!%*_+`'~-]")


class IdSource(Protocol):
    """Where pure SIP code gets its unique identifiers."""

    def branch(self) -> str:
        """A Via branch: 'z9hG4bK' + a unique token (RFC 3261 §8.1.1.7)."""
        ...

    def tag(self) -> str:
        """A From/To tag (RFC 3261 §19.3)."""
        ...

    def call_id(self) -> str:
        """A globally unique Call-ID (RFC 3261 §8.1.1.4)."""
        ...

    def cnonce(self) -> str:
        """A client nonce for digest auth (RFC 2617 §3.2.2)."""
        ...

    def token(self, n: int) -> str:
        """A unique token of exactly `n` characters."""
        ...


class RandomIds:
    """Production ids from `secrets` (hex, so always token characters)."""

    def token(self, n: int) -> str:
        return secrets.token_hex((n + 1) // 2)[:n]

    def branch(self) -> str:
        return MAGIC_COOKIE + self.token(16)

    def tag(self) -> str:
        return self.token(12)

    def call_id(self) -> str:
        return self.token(32)

    def cnonce(self) -> str:
        return self.token(16)


class CountingIds:
    """Deterministic ids for tests: the same seed gives the same sequence."""

    def __init__(self, seed: str = "t") -> None:
        self._seed = _NOT_TOKEN.sub("", seed) or "t"
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    def token(self, n: int) -> str:
        out = ""
        digest_input = f"{self._seed}:{self._next()}"
        while len(out) < n:
            digest_input = hashlib.sha256(digest_input.encode()).hexdigest()
            out += digest_input
        return out[:n]

    def branch(self) -> str:
        return f"{MAGIC_COOKIE}{self._seed}-b{self._next()}"

    def tag(self) -> str:
        return f"{self._seed}-t{self._next()}"

    def call_id(self) -> str:
        return f"{self._seed}-c{self._next()}"

    def cnonce(self) -> str:
        return f"{self._seed}-n{self._next()}"
