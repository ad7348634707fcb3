"""pbx.config, issue 6 keys: visits, GA4, webhooks, outbox, CORS and proxies."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.config import load_settings
from pbx.errors import ConfigError


def test_attribution_defaults() -> None:
    s = load_settings(None, {}, {})
    assert s.http.cors_origins == ()
    assert s.http.trusted_proxies == ()
    assert s.visits.session_length == 1800.0
    assert s.visits.default_source == ""
    assert s.ga4.base_url == "https://www.google-analytics.com"
    assert s.ga4.event_name == "phone_call"
    assert s.webhooks.urls == ()
    assert (s.outbox.backoff_base, s.outbox.backoff_max, s.outbox.max_attempts) == (
        5.0,
        3600.0,
        30,
    )


def test_attribution_toml_and_env(tmp_path: Path) -> None:
    path = tmp_path / "pbx.toml"
    path.write_text(
        '[http]\ncors_origins = ["https://www.example.com"]\ntrusted_proxies = ["10.0.0.0/8"]\n'
        '[ga4]\nmeasurement_id = "G-TEST"\napi_secret = "s3"\n'
        '[webhooks]\nurls = ["http://127.0.0.1:9/hook"]\nsecret = "k"\n'
        "[visits]\nsession_length = 600\n"
    )
    env = {"PBX_OUTBOX_BACKOFF_BASE": "0.5", "PBX_VISITS_DEFAULT_SOURCE": "Direct"}
    s = load_settings(path, env, {})
    assert s.http.cors_origins == ("https://www.example.com",)
    assert s.http.trusted_proxies == ("10.0.0.0/8",)
    assert (s.ga4.measurement_id, s.ga4.api_secret) == ("G-TEST", "s3")
    assert s.webhooks.urls == ("http://127.0.0.1:9/hook",)
    assert s.visits.session_length == 600.0
    assert s.visits.default_source == "Direct"
    assert s.outbox.backoff_base == 0.5


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[http]\ncors_origins = ["example.com"]\n', "config: http.cors_origins must be origins"),
        ('[http]\ntrusted_proxies = ["10.0.0.0/33"]\n', "config: http.trusted_proxies must be"),
        ("[visits]\nsession_length = 0\n", "config: visits.session_length must be more than"),
        ("[visits]\nmax_new_per_ip = -1\n", "config: visits.max_new_per_ip must be zero or more"),
        ('[ga4]\nmeasurement_id = "G-1"\n', "config: ga4.measurement_id and ga4.api_secret go"),
        ('[ga4]\nbase_url = "ftp://x"\n', "config: ga4.base_url must be an http(s) URL"),
        ('[ga4]\nevent_name = ""\n', "config: ga4.event_name must be a non-empty string"),
        ('[webhooks]\nurls = ["nope"]\n', "config: webhooks.urls must be a list of http(s) URLs"),
        ("[outbox]\nmax_attempts = 0\n", "config: outbox.max_attempts must be more than zero"),
        ("[outbox]\nbackoff_max = -1\n", "config: outbox.backoff_max must be more than zero"),
    ],
)
def test_bad_attribution_values(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "pbx.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path, {}, {})
    assert expected in str(info.value)
