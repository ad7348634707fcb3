"""pbx.config: defaults, TOML + env + override layering, one-line errors naming the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.config import (
    Settings,
    load_settings,
    parse_listen,
    parse_port_range,
)
from pbx.errors import ConfigError, InputError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "pbx.example.toml"


def _load(toml: str | None = None, tmp_path: Path | None = None, **kw: object) -> Settings:
    path = None
    if toml is not None:
        assert tmp_path is not None
        path = tmp_path / "pbx.toml"
        path.write_text(toml)
    env = kw.pop("env", {})
    assert isinstance(env, dict)
    return load_settings(path, env, kw.pop("overrides", {}))  # type: ignore[arg-type]


def _error(toml: str | None, tmp_path: Path, **kw: object) -> str:
    with pytest.raises(ConfigError) as info:
        _load(toml, tmp_path, **kw)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("config: ")
    assert isinstance(info.value, InputError)
    return message


def test_defaults() -> None:
    s = load_settings(None, {}, {})
    assert (s.sip.host, s.sip.port, s.sip.transports) == ("0.0.0.0", 5060, ("udp", "tcp"))
    assert (s.rtp.port_low, s.rtp.port_high) == (10000, 20000)
    assert s.rtp.host == "0.0.0.0"
    assert s.rtp.advertised_address == "0.0.0.0"
    assert s.media_address_is_wildcard
    assert (s.http.host, s.http.port) == ("127.0.0.1", 8080)
    assert s.store.path == Path("data/pbx.sqlite3")
    assert s.phone.default_region == "US"
    assert (s.log.format, s.log.level) == ("auto", "info")
    assert s.timers.t1 == 0.5
    assert s.calls.max_concurrent == 0


def test_example_file_loads_and_lists_every_key() -> None:
    from_file = load_settings(EXAMPLE, {}, {})
    assert from_file == load_settings(None, {}, {})
    document = tomllib.loads(EXAMPLE.read_text())
    defaults = load_settings(None, {}, {})
    sections = ("sip", "rtp", "http", "store", "phone", "log", "timers", "registrar", "calls")
    for section in (*sections, "flood", "metrics"):
        expected = set(getattr(defaults, section).__slots__)
        assert set(document[section]) == expected, section


def test_layering_toml_then_env_then_overrides(tmp_path: Path) -> None:
    toml = '[sip]\nport = 5070\nhost = "127.0.0.1"\n[rtp]\nport_low = 30000\nport_high = 30100\n'
    s = _load(
        toml,
        tmp_path,
        env={"PBX_SIP_PORT": "5080", "PBX_DB": "/tmp/x.db", "HOME": "/root", "PBX_OTHER_X": "1"},
        overrides={"sip.port": 5090, "http.port": None},
    )
    assert s.sip.port == 5090
    assert s.sip.host == "127.0.0.1"
    assert s.rtp.host == "127.0.0.1"
    assert s.rtp.advertised_address == "127.0.0.1"
    assert not s.media_address_is_wildcard
    assert (s.rtp.port_low, s.rtp.port_high) == (30000, 30100)
    assert s.store.path == Path("/tmp/x.db")
    assert s.http.port == 8080


def test_env_conversions() -> None:
    s = load_settings(
        None,
        {
            "PBX_SIP_TRANSPORTS": "UDP",
            "PBX_TIMERS_T1": "0.25",
            "PBX_LOG_FORMAT": "JSON",
            "PBX_PHONE_DEFAULT_REGION": "gb",
            "PBX_RTP_ADVERTISED_ADDRESS": "203.0.113.7",
            "PBX_CALLS_MAX_CONCURRENT": "200",
        },
        {},
    )
    assert s.sip.transports == ("udp",)
    assert s.timers.t1 == 0.25
    assert s.log.format == "json"
    assert s.phone.default_region == "GB"
    assert s.rtp.advertised_address == "203.0.113.7"
    assert s.calls.max_concurrent == 200


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[rtp]\nport_low = 10001\n", "config: rtp.port_low must be even (got 10001)"),
        ("[rtp]\nport_low = 20000\n", "config: rtp.port_high must be above rtp.port_low"),
        ("[rtp]\nport_low = 5000\nport_high = 6000\n", "overlaps sip.port (5060)"),
        ("[rtp]\nport_low = 8000\nport_high = 9000\n", "overlaps http.port (8080)"),
        ("[rtp]\nport_high = 70000\n", "config: rtp.port_high must be a port 1-65535"),
        ("[sip]\nport = 0\n", "config: sip.port must be a port 1-65535 (got 0)"),
        ("[sip]\nport = true\n", "config: sip.port must be an integer (got True)"),
        ('[sip]\nport = "x"\n', "config: sip.port must be an integer (got 'x')"),
        ("[sip]\ntransports = [\"udp\", \"tls\"]\n", "config: sip.tls_cert must name a PEM file"),
        ("[sip]\ntransports = []\n", "config: sip.transports must be a non-empty list"),
        ('[sip]\ntransports = ["udp", "udp"]\n', "without repeats"),
        ('[sip]\nhost = "not a host!"\n', "config: sip.host must be an IP address or host name"),
        ("[sip]\nhots = 1\n", "config: unknown key sip.hots"),
        ("[nope]\nx = 1\n", "config: unknown key nope.x"),
        ("sip = 1\n", "config: sip must be a table"),
        ('[log]\nformat = "xml"\n', "config: log.format must be one of auto|console|json"),
        ('[log]\nlevel = "loud"\n', "config: log.level must be one of"),
        ("[timers]\nt1 = 0\n", "config: timers.t1 must be more than zero (got 0.0)"),
        ("[timers]\nt2 = 0.1\n", "config: timers.t2 must be at least timers.t1"),
        ("[timers]\ndrain_timeout = -1\n", "config: timers.drain_timeout must be zero or more"),
        ('[timers]\nring_timeout = "long"\n', "config: timers.ring_timeout must be a number"),
        ('[phone]\ndefault_region = "XX"\n', "config: phone.default_region must be a region"),
        ("[calls]\nmax_concurrent = -1\n", "config: calls.max_concurrent must be zero or more"),
        ("[registrar]\nmin_expires = 9000\n", "config: registrar.default_expires must be between"),
        ('[registrar]\nrealm = ""\n', "config: registrar.realm must be a non-empty string"),
        ('[store]\npath = ""\n', "config: store.path must be a file path"),
        ("[sip\n", "is not valid TOML"),
    ],
)
def test_bad_toml_values(tmp_path: Path, toml: str, expected: str) -> None:
    assert expected in _error(toml, tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config: cannot read .*missing\.toml"):
        load_settings(tmp_path / "missing.toml", {}, {})


def test_bad_env_and_overrides(tmp_path: Path) -> None:
    assert "env PBX_SIP_HOTS" in _error(None, tmp_path, env={"PBX_SIP_HOTS": "1"})
    assert "rtp.port_low must be an integer" in _error(
        None, tmp_path, env={"PBX_RTP_PORT_LOW": "ten"}
    )
    assert "unknown key sip.bogus (command line)" in _error(
        None, tmp_path, overrides={"sip.bogus": 1}
    )


def test_overload_defaults_and_env() -> None:
    s = load_settings(None, {}, {})
    assert (s.calls.max_per_trunk, s.calls.max_per_number, s.calls.max_cps_per_source) == (0, 0, 0)
    assert s.flood.rate == 50.0
    assert s.flood.exempt_trunks is True
    assert s.metrics.enabled is True
    s = load_settings(
        None,
        {
            "PBX_CALLS_MAX_PER_TRUNK": "30",
            "PBX_CALLS_MAX_CPS_PER_SOURCE": "2.5",
            "PBX_FLOOD_BAN_SECONDS": "120",
            "PBX_FLOOD_EXEMPT_TRUNKS": "no",
            "PBX_METRICS_ENABLED": "OFF",
        },
        {},
    )
    assert s.calls.max_per_trunk == 30
    assert s.calls.max_cps_per_source == 2.5
    assert s.flood.ban_seconds == 120.0
    assert s.flood.exempt_trunks is False
    assert s.metrics.enabled is False


def test_overload_from_toml(tmp_path: Path) -> None:
    toml = "[calls]\nmax_per_number = 2\n[flood]\nrate = 0\n[metrics]\nenabled = false\n"
    s = _load(toml, tmp_path)
    assert s.calls.max_per_number == 2
    assert s.flood.rate == 0.0
    assert s.metrics.enabled is False


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[calls]\nmax_per_trunk = -1\n", "config: calls.max_per_trunk must be zero or more"),
        ("[calls]\nmax_cps_per_source = -0.5\n", "calls.max_cps_per_source must be zero or more"),
        ("[flood]\nwindow = 0\n", "config: flood.window must be more than zero"),
        ("[flood]\nmax_addresses = 0\n", "config: flood.max_addresses must be more than zero"),
        ("[flood]\nburst = 0.5\n", "config: flood.burst must be at least 1"),
        ('[metrics]\nenabled = "maybe"\n', "config: metrics.enabled must be true or false"),
        ("[metrics]\nenabled = 1\n", "config: metrics.enabled must be true or false"),
        ("[sip]\nmax_transactions = 10\n", "config: sip.max_transactions must be at least 100"),
        ("[sip]\ntcp_idle_timeout = -1\n", "config: sip.tcp_idle_timeout must be 0 (never) to"),
        ('[sip]\ntcp_idle_timeout = "soon"\n', "sip.tcp_idle_timeout"),
        ("[calls]\nmax_loop_busy = 1.0\n", "config: calls.max_loop_busy must be at least 0"),
        ("[calls]\nmax_loop_busy = -0.1\n", "config: calls.max_loop_busy must be at least 0"),
    ],
)
def test_bad_overload_values(tmp_path: Path, toml: str, expected: str) -> None:
    assert expected in _error(toml, tmp_path)


def test_parse_listen_and_range() -> None:
    assert parse_listen("127.0.0.1:5070", "--sip") == ("127.0.0.1", 5070)
    assert parse_listen("[::1]:5070", "--sip") == ("::1", 5070)
    assert parse_listen("pbx.example.com:8080", "--http") == ("pbx.example.com", 8080)
    assert parse_port_range("30000-30100", "--rtp-ports") == (30000, 30100)
    with pytest.raises(ConfigError, match=r"^config: --sip must be HOST:PORT"):
        parse_listen("5060", "--sip")
    with pytest.raises(ConfigError, match=r"^config: --rtp-ports must be LOW-HIGH"):
        parse_port_range("10000", "--rtp-ports")


@given(
    low=st.integers(min_value=1024, max_value=65534),
    size=st.integers(min_value=1, max_value=500),
)
def test_property_rtp_range_accepted_iff_valid(low: int, size: int) -> None:
    high = low + size
    overrides = {"rtp.port_low": low, "rtp.port_high": high, "sip.port": 80, "http.port": 81}
    valid = low % 2 == 0 and high <= 65535
    if not valid:
        with pytest.raises(ConfigError, match=r"^config: rtp\.port_(low|high) must be"):
            load_settings(None, {}, overrides)
        return
    s = load_settings(None, {}, overrides)
    assert (s.rtp.port_low, s.rtp.port_high) == (low, high)
