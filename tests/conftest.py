"""Fixtures shared by every suite: a throwaway PostgreSQL cluster (tests/pg.py).

`pg_cluster` starts one server for the whole session (only when a test asks
for it); `pg_url` names a database holding the current schema, emptied before each
test.
Without PostgreSQL's binaries the tests that need it are skipped, or fail
under CI (env `CI` set), where the server must be there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests import pg

# Timing is not what the property tests check: on the shared 2-core CI box a
# case that takes 350 ms instead of 150 ms must not fail the suite (it did).
settings.register_profile("pbx", deadline=None)
settings.load_profile("pbx")


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


@pytest.fixture(scope="session")
def pg_shared_db(pg_cluster: pg.Cluster) -> str:
    return pg_cluster.fresh_db()


@pytest.fixture
def pg_url(pg_cluster: pg.Cluster, pg_shared_db: str) -> str:
    """A database with the current schema and no rows (emptied before each test).

    The test must close its stores before it ends (the next test truncates).
    """
    pg_cluster.empty_tables(pg_shared_db)
    return pg_cluster.url(pg_shared_db)
