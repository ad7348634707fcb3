"""Hypothesis profiles for the fuzz targets (only profiles live here).

- `fuzz` (default for tests/fuzz): ~200 examples per target, part of the suite.
- `fuzz-long`: on demand, `HYPOTHESIS_PROFILE=fuzz-long pytest tests/fuzz`;
  examples per target from `PBX_FUZZ_EXAMPLES` (default 20,000).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile("fuzz", max_examples=200, deadline=None, suppress_health_check=_SLOW_OK)
settings.register_profile(
    "fuzz-long",
    max_examples=int(os.environ.get("PBX_FUZZ_EXAMPLES", "20000")),
    deadline=None,
    suppress_health_check=_SLOW_OK,
    print_blob=True,
)
if os.environ.get("HYPOTHESIS_PROFILE", "").startswith("fuzz"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
