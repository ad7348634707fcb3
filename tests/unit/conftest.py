"""Fixtures shared by the unit tests: a throwaway PostgreSQL cluster (tests/pg.py).

`pg_cluster` starts one server for the whole session (only when a test asks
for it); `pg_url` is a fresh database per test holding the current schema.
Without PostgreSQL's binaries the tests that need it are skipped, or fail
under CI (env `CI` set), where the server must be there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import pg


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pg.Cluster]:
    if not pg.available():
        message = f"PostgreSQL binaries not found in {pg.PG_BIN}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = pg.Cluster.start()
    try:
        cluster.create_template()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: pg.Cluster) -> Iterator[str]:
    """A fresh database with the current schema, dropped after the test."""
    name = pg_cluster.fresh_db()
    yield pg_cluster.url(name)
    pg_cluster.drop_db(name)
