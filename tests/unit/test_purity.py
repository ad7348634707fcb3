"""The pure core must not reach I/O, clocks or logging, directly or through any chain
of project imports (STYLE.md §3.1; docs/architecture.md "where I/O is allowed")."""

from __future__ import annotations

import pytest

from tests.import_graph import closure, imports, modules

FORBIDDEN = {
    "asyncio", "socket", "time", "aiosqlite", "asyncpg", "sqlite3", "structlog", "selectors",
    "threading", "subprocess", "aiohttp", "urllib3", "http",
}  # fmt: skip
# Modules of pure packages that are I/O edges on purpose.
EDGES = {
    "pbx.sip.transport",
    "pbx.sip.agent",
    "pbx.rtp.relay",
    "pbx.rtp.recording",
    "pbx.rtp.rtpengine",
    "pbx.rtp.rtpengine_engine",
    "pbx.rtp.worker",
    "pbx.rtp.workers",
    "pbx.audio.tts",
    "pbx.call.intake",
    "pbx.call.targets",
}
PURE_PACKAGES = ("pbx.sip", "pbx.rules", "pbx.rtp", "pbx.audio", "pbx.call", "pbx.attribution")
PURE_MODULES = ("pbx.errors", "pbx.numbers", "pbx.records", "pbx.store.base", "pbx.store.url")


def _pure_modules() -> list[str]:
    found = [
        name
        for name in modules()
        if name in PURE_MODULES or any(name.startswith(p + ".") for p in PURE_PACKAGES)
    ]
    return sorted(n for n in found if n not in EDGES)


@pytest.mark.parametrize("module", _pure_modules())
def test_pure_module_imports_no_io(module: str) -> None:
    bad = imports(module)[1] & FORBIDDEN
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", _pure_modules())
def test_pure_module_reaches_no_io_through_project_imports(module: str) -> None:
    reached = closure(module)
    edges = sorted(reached & EDGES)
    assert not edges, f"{module} reaches the I/O edge(s) {edges}"
    via = {dep: imports(dep)[1] & FORBIDDEN for dep in reached}
    bad = {dep: sorted(names) for dep, names in via.items() if names}
    assert not bad, f"{module} reaches I/O through {bad}"


def test_purity_check_sees_modules() -> None:
    names = set(_pure_modules())
    assert {
        "pbx.sip.peer", "pbx.sip.message", "pbx.sip.transaction", "pbx.call.controller",
        "pbx.call.legs", "pbx.rtp.sdp", "pbx.rules.routing", "pbx.attribution.visits",
    } <= names  # fmt: skip


def test_transitive_check_can_fail() -> None:
    """A pure module importing the agent would be caught through the chain."""
    assert "pbx.sip.transport" in closure("pbx.sip.agent")
    assert "pbx.service.runner" not in closure("pbx.call.controller")
