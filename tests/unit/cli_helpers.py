"""Shared helpers for the CLI tests: run `pbx` with CliRunner on a real SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from click.testing import CliRunner, Result

from cli import cli
from pbx.store.base import Store
from pbx.store.connect import open_store

T = TypeVar("T")

SEED = (
    ("trunks", "add", "carrier", "--host", "203.0.113.10", "--username", "acme",
     "--password", "s3cret"),
    ("destinations", "add", "front-desk", "+14155550101"),
    ("destinations", "add", "mobile", "(212) 555-0123"),
    ("sources", "add", "Google Ads", "--preset", "google-ads"),
    ("sources", "add", "Radio", "--cost-per-call", "12.50", "--tag", "radio"),
    ("numbers", "add", "+1 415 555 0150", "--source", "Google Ads", "--destination", "front-desk",
     "--destination", "mobile", "--trunk", "carrier"),
)  # fmt: skip


def pbx(
    db: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> Result:
    """Run `pbx --db DB ARGS...` (`input` on stdin); stdout and stderr are kept apart."""
    return CliRunner().invoke(
        cli, ["--db", str(db), *args], env=env, input=input, catch_exceptions=False
    )


def ok(db: Path, *args: str, input: str | None = None) -> str:
    result = pbx(db, *args, input=input)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return result.stdout


def seed(db: Path, steps: Sequence[Sequence[str]] = SEED) -> None:
    for step in steps:
        ok(db, *step)


async def _dump(db: Path) -> str:
    async with await open_store(db) as store:
        return await store.dump()


def dump(db: Path) -> str:
    """The whole database as SQL text (for before/after comparisons)."""
    return asyncio.run(_dump(db))


def run_on_store(db: Path, fn: Callable[[Store], Awaitable[T]]) -> T:
    """Run `await fn(store)` on the database at `db` (to set up rows the CLI cannot)."""

    async def go() -> T:
        async with await open_store(db) as store:
            return await fn(store)

    return asyncio.run(go())
