"""Build hook: compiles pbx's pure protocol modules with mypyc (pbx/native.py).

Everything else about the package is in pyproject.toml. `PBX_NATIVE=0 pip
install .` skips the compile (pure Python, same behaviour, slower calls). A
compile that fails fails the install: a silent fallback would hide it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent


def _native_list() -> ModuleType:
    # Loaded as a plain file: importing the package would need its dependencies.
    spec = importlib.util.spec_from_file_location("_pbx_native", HERE / "pbx" / "native.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("cannot read pbx/native.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# setuptools runs this file for metadata too; only a build needs the (slow) compile.
BUILDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}


def _remove_orphans(native: ModuleType) -> None:
    """An in-place build leaves extensions of modules no longer listed: they would
    shadow their sources, so they go before the build."""
    listed = {native.extension_path(name, HERE) for name in native.MODULES}
    for path in (HERE / "pbx").rglob("*" + native.SUFFIX):
        if path not in listed:
            path.unlink()


def extensions() -> list[Extension]:
    if os.environ.get("PBX_NATIVE") == "0" or not BUILDS.intersection(sys.argv[1:]):
        return []
    from mypyc.build import mypycify

    native = _native_list()
    _remove_orphans(native)
    paths = [str(native.source_path(name, HERE).relative_to(HERE)) for name in native.MODULES]
    return mypycify(paths, opt_level="3", multi_file=True, group_name=native.GROUP)


setup(ext_modules=extensions())
