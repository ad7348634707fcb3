"""The tree is the architecture: layers only import downwards, and nothing cycles.

Read from the source (tests/import_graph.py): every import counts, at module
level, inside functions and under `if TYPE_CHECKING:`, and importing a module
counts as importing its packages' `__init__` too (Python runs them). The
layers are the table in docs/architecture.md.
"""

from __future__ import annotations

import pytest

from tests.import_graph import cycles, imports, modules

# Lowest first. A module may import its own layer and the layers below it.
LAYERS: list[tuple[str, ...]] = [
    ("pbx", "pbx.errors"),
    ("pbx.numbers", "pbx.records"),
    ("pbx.store", "pbx.store.base", "pbx.store.url", "pbx.store.probe"),
    ("pbx.config", "pbx.logs", "pbx.runtime"),
    ("pbx.rules",),
    ("pbx.sip", "pbx.rtp", "pbx.audio"),
    (
        "pbx.store.sqlite",
        "pbx.store.postgres",
        "pbx.store.connect",
        "pbx.store.transfer",
        "pbx.store.migrations",
    ),
    ("pbx.attribution",),
    ("pbx.call",),
    ("pbx.admin",),
    ("pbx.service",),
    ("pbx.http",),
    ("pbx.daemon",),
    ("pbx.commands",),
]


def layer_of(module: str) -> int:
    """The layer of the longest prefix of `module` named in LAYERS."""
    best, rank = -1, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, rank = len(name), index
    assert rank >= 0, f"{module} is in no layer: add its package to LAYERS"
    return rank


def test_every_module_has_a_layer() -> None:
    for module in modules():
        layer_of(module)


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_go_down_the_layers(module: str) -> None:
    own = layer_of(module)
    upward = sorted(dep for dep in imports(module)[0] if layer_of(dep) > own)
    assert not upward, f"{module} (layer {own}) imports higher layers: {upward}"


def test_no_import_cycle() -> None:
    assert cycles() == []


def test_the_checks_can_fail() -> None:
    """The graph sees function-level and TYPE_CHECKING imports (these exist today)."""
    assert "pbx.daemon" in imports("pbx.commands.serve")[0]  # imported inside a function
    assert layer_of("pbx.commands.serve") > layer_of("pbx.daemon")
    assert layer_of("pbx.sip.message") < layer_of("pbx.call.controller")
