-- pbx schema 3: dashboard logins (users), API bearer tokens, the audit log,
-- and the indexes the dashboard's call log and overview need over a million
-- calls (issue 14; bench/dashboard.py measures them).

-- A dashboard login. password_hash is an argon2id encoded hash (argon2-cffi).
CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    role           TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    password_hash  TEXT    NOT NULL,
    created_at     TEXT    NOT NULL
);

-- An API bearer token: only the SHA-256 (hex) of the token is kept. A name is
-- unique among the tokens not revoked, so a revoked name can be reused.
CREATE TABLE tokens (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    token_sha256  TEXT    NOT NULL UNIQUE,
    created_at    TEXT    NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);
CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;

-- Who changed what, when: one row per change made through the CLI or the
-- admin API. detail is a JSON object (never a password or a token).
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    at       TEXT    NOT NULL,
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    subject  TEXT    NOT NULL DEFAULT '',
    detail   TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_at ON audit (at);

-- Call log keyset paging is ORDER BY started_at DESC, id DESC: each filter
-- gets an index that ends in (started_at, id), so a page is one index range
-- walked in order, never a sort of every match. The indexes of schema 1
-- that are prefixes of these are dropped (one fewer write per call each).
-- calls_page also carries source, answered_at and caller: the overview's
-- counts per day and source (and how many were answered) and the ROI
-- report's call facts read only this index, never the table.
CREATE INDEX calls_page ON calls (started_at, id, source, answered_at, caller);
CREATE INDEX calls_source_page ON calls (source, started_at, id);
CREATE INDEX calls_number_page ON calls (tracking_number, started_at, id);
CREATE INDEX calls_disposition_page ON calls (disposition, started_at, id);
CREATE INDEX calls_caller_page ON calls (caller, started_at, id);
-- Live calls: unfinished rows only (calls_live of schema 1 also holds every
-- finished answered call, which keeps the disposition 'answered').
CREATE INDEX calls_unfinished ON calls (started_at) WHERE ended_at IS NULL;
DROP INDEX calls_started;
DROP INDEX calls_source;
DROP INDEX calls_number;
