"""PostgreSQL backend of the store (I/O): `open_postgres(url)` returns a ready `Store`.

Modules: `store` (pool, migrations, dump), `db` (transactions, errors),
`cache` (provisioning cache kept fresh by `config_version`), and the
repositories `config`, `numbers`, `activity`, `local`. The schema is
`migrations/NNNN_name.sql`, numbered for this backend alone.
"""

from pbx.store.postgres.store import (
    PostgresStore,
    PostgresUnavailableError,
    open_postgres,
    redact,
)

__all__ = ["PostgresStore", "PostgresUnavailableError", "open_postgres", "redact"]
