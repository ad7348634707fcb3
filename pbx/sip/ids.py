"""Sources of tags, branches, Call-IDs and cnonces (pure; randomness injected).

STYLE.md §3.3: production uses `RandomIds` (os.urandom, as `secrets`); tests use
`CountingIds(seed)`, which is deterministic so messages are byte-for-byte
reproducible. Every value is made of RFC 3261 §25.1 `token` characters, so it
is safe in a Via branch, a tag, a Call-ID or a quoted cnonce.

Decision: `CountingIds` values are readable (`z9hG4bK<seed>-b1`, `<seed>-t2`)
rather than random-looking; the counter is shared by all kinds so no two
values from one source are ever equal.
"""

from __future__ import annotations

import hashlib
import os
import re
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


# Random bytes are read this many at a time: one getrandom(2) per ~300 ids
# instead of one per id. Every byte is used once, so the ids are exactly as
# unpredictable as `secrets.token_hex` (the same os.urandom source). The pool
# is per process, not per RandomIds, so one fork hook covers every instance.
POOL_BYTES = 4096
_pool = bytearray()


def _forget_pool() -> None:  # a forked child must never reuse its parent's bytes
    _pool.clear()


os.register_at_fork(after_in_child=_forget_pool)


def random_hex(n: int) -> str:
    """`n` hex characters from os.urandom, taken from the shared pool."""
    need = (n + 1) // 2
    if len(_pool) < need:
        _pool[:] = os.urandom(POOL_BYTES)
    chunk = _pool[-need:]
    del _pool[-need:]
    return chunk.hex()[:n]


class RandomIds:
    """Production ids from os.urandom (hex, so always token characters)."""

    def token(self, n: int) -> str:
        return random_hex(n)

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
