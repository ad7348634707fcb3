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
-- calls_page also carries source, answered_at and caller: the ROI report's
-- call facts read only this index, never the table.
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

-- Calls and answered calls per UTC day and source, kept by triggers in the
-- same transaction as every write to calls (the daemon's, the CLI's, a
-- sqlite3 shell's): the overview reads at most days x sources rows instead
-- of every call. source '' stands for "no source" (a primary key column of
-- a WITHOUT ROWID table cannot be NULL; source names are never empty).
CREATE TABLE call_days (
    day       TEXT    NOT NULL,
    source    TEXT    NOT NULL,
    calls     INTEGER NOT NULL DEFAULT 0,
    answered  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, source)
) WITHOUT ROWID;
INSERT INTO call_days (day, source, calls, answered)
    SELECT substr(started_at, 1, 10), coalesce(source, ''), count(*), sum(answered_at IS NOT NULL)
    FROM calls GROUP BY 1, 2;
CREATE TRIGGER calls_days_insert AFTER INSERT ON calls BEGIN
    INSERT INTO call_days (day, source, calls, answered)
    VALUES (substr(NEW.started_at, 1, 10), coalesce(NEW.source, ''), 1, NEW.answered_at IS NOT NULL)
    ON CONFLICT (day, source) DO UPDATE SET calls = calls + 1, answered = answered + excluded.answered;
END;
CREATE TRIGGER calls_days_update AFTER UPDATE OF started_at, source, answered_at ON calls
WHEN substr(OLD.started_at, 1, 10) IS NOT substr(NEW.started_at, 1, 10)
     OR OLD.source IS NOT NEW.source
     OR (OLD.answered_at IS NULL) <> (NEW.answered_at IS NULL)
BEGIN
    UPDATE call_days SET calls = calls - 1, answered = answered - (OLD.answered_at IS NOT NULL)
    WHERE day = substr(OLD.started_at, 1, 10) AND source = coalesce(OLD.source, '');
    INSERT INTO call_days (day, source, calls, answered)
    VALUES (substr(NEW.started_at, 1, 10), coalesce(NEW.source, ''), 1, NEW.answered_at IS NOT NULL)
    ON CONFLICT (day, source) DO UPDATE SET calls = calls + 1, answered = answered + excluded.answered;
END;
CREATE TRIGGER calls_days_delete AFTER DELETE ON calls BEGIN
    UPDATE call_days SET calls = calls - 1, answered = answered - (OLD.answered_at IS NOT NULL)
    WHERE day = substr(OLD.started_at, 1, 10) AND source = coalesce(OLD.source, '');
END;
