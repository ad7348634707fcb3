"""Which pbx modules run compiled (mypyc), and falling back to their source.

Theory of operation: `pip install .` (setup.py) compiles the modules listed
in `MODULES` with mypyc into C extensions placed beside their sources
(`pbx/sip/message.cpython-311-x86_64-linux-gnu.so` next to `message.py`) and
one shared library, `pbx_native__mypyc...so` beside `pbx/`, that holds the
code of all of them. Python's import system prefers an extension to a source
file, so the compiled code runs without any other change. These are the pure protocol and
rules modules the call path spends its time in (parsing, transactions,
dialogs, SDP, records, rules); I/O edges (transport, agent, daemon, stores)
stay interpreted, because their values come from libraries whose type stubs
are not exact and compiled code checks every annotation at run time. So does
`pbx.rtp.media`, the engine interface, whose `NoAudio` an interpreted engine
subclasses (compiled classes refuse interpreted subclasses).

The compiled modules call each other's code directly inside the shared
library, so they run compiled all together or not at all. `activate()`, run
by `pbx/__init__.py` before any of them is imported, chooses pure Python
(source files, through a finder put first on `sys.meta_path`) when:

- `PBX_NATIVE=0` is set (at install time it skips the compile; at run time it
  ignores a build);
- nothing was built (no extension beside any listed module): silently, it is
  a plain source checkout;
- the build is partial, or a listed source file is newer than its extension
  (edited after the build: the extension would run old code): with one
  warning line on stderr, since `pip install -e .` rebuilds.

This module is read by setup.py as a plain file (the build environment has
none of pbx's dependencies), so it imports only the standard library.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

GROUP = "pbx_native"  # the shared library: pbx_native__mypyc.<suffix>, beside pbx/

MODULES: tuple[str, ...] = (
    "pbx.records",
    "pbx.numbers",
    "pbx.sip.auth",
    "pbx.sip.dialog",
    "pbx.sip.framing",
    "pbx.sip.headers",
    "pbx.sip.ids",
    "pbx.sip.idle",
    "pbx.sip.message",
    "pbx.sip.peer",
    "pbx.sip.register",
    "pbx.sip.registrar",
    "pbx.sip.responses",
    "pbx.sip.status",
    "pbx.sip.transaction",
    "pbx.sip.transaction_machines",
    "pbx.sip.uri",
    "pbx.rtp.bencode",
    "pbx.rtp.control",
    "pbx.rtp.dtmf",
    "pbx.rtp.ng",
    "pbx.rtp.packet",
    "pbx.rtp.payload",
    "pbx.rtp.ports",
    "pbx.rtp.sdp",
    "pbx.rtp.stream",
    "pbx.call.audio",
    "pbx.call.branches",
    "pbx.call.controller",
    "pbx.call.endings",
    "pbx.call.in_dialog",
    "pbx.call.legs",
    "pbx.call.locations",
    "pbx.call.model",
    "pbx.call.routing",
    "pbx.call.state",
    "pbx.call.targets",
    "pbx.rules.admission",
    "pbx.rules.blocking",
    "pbx.rules.geo",
    "pbx.rules.lag",
    "pbx.rules.limits",
    "pbx.rules.pools",
    "pbx.rules.roi",
    "pbx.rules.screening",
    "pbx.rules.sources",
)

ROOT = Path(__file__).resolve().parent.parent  # the directory holding pbx/
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # what setuptools names them

# What `activate()` decided: read by the daemon's start line and `pbx doctor`
# (`degraded`: a build exists but cannot be used).
active = False
reason = "not activated"
degraded = False


def source_path(module: str, root: Path = ROOT) -> Path:
    """`pbx.sip.message` -> <root>/pbx/sip/message.py."""
    return root.joinpath(*module.split(".")).with_suffix(".py")


def extension_path(module: str, root: Path = ROOT) -> Path:
    """The compiled extension that would shadow `module`'s source."""
    source = source_path(module, root)
    return source.with_name(source.stem + SUFFIX)


def verdict(
    sources: Sequence[float | None], extensions: Sequence[float | None], names: Sequence[str]
) -> tuple[bool, str, bool]:
    """(use the build, why, warn) from modification times (None: no such file).

    Pure: `activate()` feeds it `stat()` results for `MODULES` in order.
    """
    built = [ext is not None for ext in extensions]
    if not any(built):
        return False, "not compiled (pure Python)", False
    if not all(built):
        missing = names[built.index(False)]
        return False, f"partial build: {missing} has no compiled extension", True
    for name, src, ext in zip(names, sources, extensions, strict=True):
        if src is not None and ext is not None and src > ext:
            return False, f"{name} changed after the build", True
    return True, f"compiled with mypyc ({len(names)} modules)", False


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


class _SourceFirst:
    """A meta path finder that loads the listed modules from their .py files."""

    def __init__(self, modules: Sequence[str], root: Path) -> None:
        self._paths = {name: str(source_path(name, root)) for name in modules}

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        location = self._paths.get(name)
        if location is None:
            return None
        return importlib.util.spec_from_file_location(name, location)


def activate(root: Path = ROOT) -> None:
    """Decide compiled or pure for this process (idempotent; see the module doc)."""
    global active, reason, degraded
    if any(isinstance(finder, _SourceFirst) for finder in sys.meta_path):
        return
    if os.environ.get("PBX_NATIVE") == "0":
        active, reason, warn = False, "PBX_NATIVE=0 (pure Python)", False
    else:
        sources = [_mtime(source_path(name, root)) for name in MODULES]
        extensions = [_mtime(extension_path(name, root)) for name in MODULES]
        active, reason, warn = verdict(sources, extensions, MODULES)
    degraded = warn
    if active:
        return
    sys.meta_path.insert(0, _SourceFirst(MODULES, root))
    if warn:
        sys.stderr.write(f"pbx: running pure Python: {reason}; `pip install -e .` rebuilds\n")
