"""The SQLite backend of the store (aiosqlite; the embedded default).

`store.open_sqlite(path)` opens and migrates, `probe.probe_sqlite(path)`
checks a file read-only; the repositories are split by aggregate (`config`,
`numbers`, `local`, `activity`) over one `db.Db`, with the provisioning
cache in `cache`. This file imports nothing, so that importing one module of
the package never runs the others (no import cycle).
"""
