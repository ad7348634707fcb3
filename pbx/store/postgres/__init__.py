"""PostgreSQL backend of the store (I/O): `store.open_postgres(url)` returns a ready `Store`.

This file imports nothing, so that importing one module of the package
never runs the others (no import cycle); import from the modules.

Modules: `store` (pool, migrations, dump), `db` (transactions, errors),
`cache` (provisioning cache kept fresh by `config_version`), the
repositories `config`, `numbers`, `activity`, `local`, `users` (dashboard
users, API tokens, the audit log), `call_log` (the dashboard's reads) and
`nodes` (leases of the nodes sharing one store). The schema is `migrations/NNNN_name.sql`,
numbered for this backend alone; its shared part has the SQLite schema's
tables and columns, so `dump()` (pbx.store.dump) is the same text on both.

Decisions, where each module says more:
- Times stay ISO 8601 TEXT, text columns compare in byte order (domain
  `ctext`, COLLATE "C"): every comparison and ordering as on SQLite.
- Per-call writes are one statement each (one round trip); no client-side
  group commit: the server groups concurrent commits' WAL flushes (`db`).
- Provisioning writes serialise on an advisory lock, as SQLite's single
  writer does (`db`); the cache reads `config_version` per lookup (`cache`).
- `outbox.due()` claims what it returns for this store (SKIP LOCKED), so
  two nodes never deliver the same item at once (`activity`).

Differences from SQLite a caller can see: a NUL character in text is an
`InputError` (PostgreSQL text cannot hold it); a deleted row's id is never
reused (SQLite reuses the highest); `outbox.due()` needs `now` in the ISO
form; `calls.mark_interrupted()` is the single-node sweep and, on a shared
store, would touch other nodes' calls: nodes use `store.nodes` instead.
The call log's index choice is PostgreSQL's planner's (no index hints), not
SQLite's count-first rule; the results are the same.
"""
