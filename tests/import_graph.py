"""The project's import graph, read from the source (every import: module level,
inside functions and under `if TYPE_CHECKING:`), for the architecture tests."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "pbx"


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the `pbx` package by dotted name."""
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _parents(name: str) -> list[str]:
    """`pbx.a.b` -> [`pbx`, `pbx.a`]: importing a module runs its packages' __init__."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _resolve(name: str) -> list[str]:
    """Project modules that importing `name` runs (itself if a module, and its packages)."""
    known = modules()
    found = [p for p in _parents(name) if p in known]
    if name in known:
        found.append(name)
    return found


def _package_of(module: str) -> str:
    path = modules()[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


@cache
def imports(module: str) -> tuple[frozenset[str], frozenset[str]]:
    """(project modules, external top-level names) that `module` imports directly."""
    tree = ast.parse(modules()[module].read_text(), filename=str(modules()[module]))
    project: set[str] = set()
    external: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = _package_of(module).split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            if target.split(".")[0] == "pbx":
                project.update(_resolve(target))
            elif target:
                external.add(target.split(".")[0])
    project.discard(module)
    return frozenset(project), frozenset(external)


def closure(module: str) -> set[str]:
    """Every project module that importing `module` may run, itself included."""
    seen = {module, *_resolve(module)}
    todo = list(seen)
    while todo:
        for dep in imports(todo.pop())[0]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(imports(node)[0]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in modules():
        if name not in index:
            visit(name)
    return found
