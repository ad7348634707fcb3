"""pbx.logs: JSON lines off a TTY, console on request, level filtering, stdlib routing."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from pbx.errors import ConfigError
from pbx.logs import get_logger, setup_logging


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_auto_is_json_when_not_a_tty() -> None:
    out = io.StringIO()
    setup_logging("auto", "info", stream=out)
    get_logger(component="test").info("call started", call_id="abc", leg="inbound")
    (line,) = _lines(out)
    assert line["event"] == "call started"
    assert line["level"] == "info"
    assert line["call_id"] == "abc"
    assert line["component"] == "test"
    assert str(line["timestamp"]).endswith("Z")


def test_auto_is_console_on_a_tty() -> None:
    out = _Tty()
    setup_logging("auto", "info", stream=out)
    get_logger().warning("trunk down", trunk="main")
    text = out.getvalue()
    assert "trunk down" in text
    assert "trunk" in text
    assert not text.lstrip().startswith("{")


def test_console_forced_without_tty_has_no_colour_codes() -> None:
    out = io.StringIO()
    setup_logging("console", "debug", stream=out)
    get_logger().debug("hello", n=1)
    assert "hello" in out.getvalue()
    assert "\x1b[" not in out.getvalue()


def test_level_filters() -> None:
    out = io.StringIO()
    setup_logging("json", "warning", stream=out)
    log = get_logger()
    log.info("quiet")
    log.debug("quieter")
    log.error("loud")
    assert [line["event"] for line in _lines(out)] == ["loud"]


def test_stdlib_logging_uses_the_same_format() -> None:
    out = io.StringIO()
    setup_logging("json", "info", stream=out)
    logging.getLogger("aiohttp.access").info("GET /health 200")
    logging.getLogger("noisy").debug("dropped")
    (line,) = _lines(out)
    assert line["event"] == "GET /health 200"
    assert line["logger"] == "aiohttp.access"
    assert line["level"] == "info"


def test_exceptions_are_one_json_line() -> None:
    out = io.StringIO()
    setup_logging("json", "info", stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger().exception("failed")
    (line,) = _lines(out)
    assert "ValueError: boom" in str(line["exception"])


@pytest.mark.parametrize(("fmt", "level"), [("xml", "info"), ("json", "loud")])
def test_bad_arguments(fmt: str, level: str) -> None:
    with pytest.raises(ConfigError, match=r"^config: log\.(format|level) must be one of"):
        setup_logging(fmt, level, stream=io.StringIO())


def test_default_stream_follows_sys_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("json", "info")
    get_logger().info("to stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["event"] == "to stderr"
