"""Capturing one module's log lines in a test, whatever earlier tests configured."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from types import ModuleType
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs


@contextlib.contextmanager
def module_logs(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str
) -> Iterator[list[MutableMapping[str, Any]]]:
    """The lines `module.log` writes, through a fresh logger named `name`.

    An in-process CLI test may have configured a level filter, and the module's
    own logger may be cached behind it (cache_logger_on_first_use); both are
    undone here and the configuration restored after.
    """
    before = structlog.get_config()
    structlog.reset_defaults()
    try:
        with capture_logs() as captured:
            monkeypatch.setattr(module, "log", structlog.get_logger(name))
            yield captured
    finally:
        structlog.configure(**before)
