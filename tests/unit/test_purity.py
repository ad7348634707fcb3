"""The pure core must not import I/O, clocks or logging (STYLE.md §3.1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "pbx"
FORBIDDEN = {"asyncio", "socket", "time", "aiosqlite", "structlog", "selectors", "threading"}
IMPURE = {
    "sip/transport.py",
    "sip/agent.py",
    "rtp/relay.py",
    "runner.py",
    "daemon.py",
    "audio/tts.py",
}


def _pure_modules() -> list[Path]:
    pure: list[Path] = []
    for sub in ("sip", "rules", "audio"):
        pure.extend(sorted((ROOT / sub).glob("*.py")))
    for name in (
        "rtp/sdp.py",
        "rtp/ports.py",
        "rtp/packet.py",
        "rtp/stream.py",
        "rtp/dtmf.py",
        "rtp/payload.py",
        "numbers.py",
        "records.py",
        "calls.py",
        "call_routing.py",
        "call_dialog.py",
        "calls_model.py",
        "legs.py",
        "errors.py",
        "attribution.py",
        "integrations.py",
    ):
        pure.append(ROOT / name)
    return [p for p in pure if p.exists() and str(p.relative_to(ROOT)) not in IMPURE]


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", _pure_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_io(path: Path) -> None:
    bad = _imported_roots(path) & FORBIDDEN
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_purity_check_sees_modules() -> None:
    names = {str(p.relative_to(ROOT)) for p in _pure_modules()}
    assert {"sip/peer.py", "sip/message.py", "sip/transaction.py", "calls.py", "legs.py"} <= names
    assert {"audio/wav.py", "audio/recorder.py", "rtp/stream.py"} <= names
