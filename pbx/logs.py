"""Logging setup shared by the daemon and the CLI (I/O: configures structlog and logging).

`setup_logging(fmt, level)` is called once at start (`pbx serve` with the
`log.format` / `log.level` settings, every other CLI command with the
defaults). After it, code logs with `structlog.get_logger()` and binds
context (`call_id`, `leg`, `branch`), never with the async `a*` methods.

Decisions:
- Everything goes to **stderr**, for the daemon too: stdout stays clean for
  the CLI's table/JSON/CSV output, and systemd's journal captures stderr.
- `fmt="auto"`: human console lines when the stream is a terminal, JSON
  lines (one object per line: `timestamp`, `level`, `event`, bound keys)
  otherwise, e.g. under systemd or in a pipe.
- Timestamps are UTC ISO 8601 with a `Z`.
- Log lines of other libraries (aiohttp, asyncio) that use stdlib `logging`
  are rendered by the same processors, so one stream has one format.
- Our loggers filter by level before any processor runs
  (`make_filtering_bound_logger`), so a disabled `debug` call costs ~nothing.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO, cast

import structlog
from structlog.typing import FilteringBoundLogger, Processor

from pbx.errors import ConfigError

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FORMATS = ("auto", "console", "json")


class _Stderr:
    """Writes to whatever `sys.stderr` is at the time of the write.

    Binding the object `sys.stderr` at setup would keep writing to a stream
    that test runners (click's CliRunner, pytest capture) close afterwards.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _renderer(fmt: str, stream: TextIO) -> Processor:
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    if console:
        return structlog.dev.ConsoleRenderer(colors=stream.isatty())
    return structlog.processors.JSONRenderer()


def _route_stdlib(renderer: Processor, level: int, stream: TextIO) -> None:
    """Render stdlib `logging` records (third-party libraries) like ours."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *_shared_processors()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def setup_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog and stdlib logging; `stream` defaults to (the current) stderr."""
    if fmt not in FORMATS:
        raise ConfigError(f"config: log.format must be one of {'|'.join(FORMATS)} (got {fmt!r})")
    if level.lower() not in LEVELS:
        raise ConfigError(f"config: log.level must be one of {'|'.join(LEVELS)} (got {level!r})")
    out = stream if stream is not None else cast(TextIO, _Stderr())
    numeric = LEVELS[level.lower()]
    renderer = _renderer(fmt, out)
    processors: list[Processor] = [*_shared_processors(), structlog.processors.StackInfoRenderer()]
    if not isinstance(renderer, structlog.dev.ConsoleRenderer):
        processors.append(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    _route_stdlib(renderer, numeric, out)


def get_logger(**context: Any) -> FilteringBoundLogger:
    """A structlog logger bound with `context` (e.g. `component="relay"`)."""
    logger: FilteringBoundLogger = structlog.get_logger(**context)
    return logger
