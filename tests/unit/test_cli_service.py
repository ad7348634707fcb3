"""config/pbx.service: the systemd unit runs `pbx serve` safely (parsed; verified if possible)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from cli import cli
from pbx.config import TimerSettings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "config" / "pbx.service"


@pytest.fixture(scope="module")
def unit() -> configparser.ConfigParser:
    # strict=True: a key given twice would be a silent override in our reading
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_runs_pbx_serve_with_the_etc_config(unit: configparser.ConfigParser) -> None:
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert Path(argv[0]).is_absolute()
    assert Path(argv[0]).name == "pbx"
    assert argv[1:] == ["serve", "--config", "/etc/pbx/pbx.toml"]
    assert "serve" in cli.commands
    serve_options = {o for p in cli.commands["serve"].params for o in getattr(p, "opts", [])}
    assert "--config" in serve_options


def test_unprivileged_user_state_directory_and_restart(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    assert service["User"] == "pbx"
    assert service["Group"] == "pbx"
    assert service["WorkingDirectory"] == "/var/lib/pbx"
    assert service["StateDirectory"] == "pbx"
    assert service["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]


def test_logs_go_to_the_journal(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    assert service["StandardOutput"] == "journal"
    assert service["StandardError"] == "journal"
    assert "PYTHONUNBUFFERED=1" in service["Environment"]


def test_hardening(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/pbx"
    assert service["ProtectHome"] == "yes"
    assert service["PrivateTmp"] == "yes"
    # 5060 and the RTP range are above 1024: no capability at all
    assert service["CapabilityBoundingSet"] == ""
    assert service["AmbientCapabilities"] == ""
    families = service["RestrictAddressFamilies"].split()
    assert {"AF_INET", "AF_INET6"} <= set(families)


def test_stop_timeout_outlasts_the_drain(unit: configparser.ConfigParser) -> None:
    stop = float(unit["Service"]["TimeoutStopSec"])
    example = tomllib.loads((ROOT / "config" / "pbx.example.toml").read_text())
    drain = max(TimerSettings().drain_timeout, float(example["timers"]["drain_timeout"]))
    t1 = float(example["timers"]["t1"])
    assert stop > drain + 64 * t1  # drain, then a BYE transaction (RFC 3261 §17.1.2.2 Timer F)
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    assert unit["Service"]["KillMode"] == "mixed"  # SIGTERM to pbx only, SIGKILL to all at the end


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_finds_nothing_but_the_missing_binary(tmp_path: Path) -> None:
    copy = tmp_path / "pbx.service"
    copy.write_text(UNIT.read_text())
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "/usr/local/bin/pbx" not in line
    ]
    assert problems == []
