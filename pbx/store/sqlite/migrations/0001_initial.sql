-- pbx schema 1: configuration (trunks, destinations, sources, numbers, blocks,
-- extensions) and activity (calls, visits, outbox).
-- Applied by pbx/store/sqlite.py inside one transaction; PRAGMA user_version
-- is set by the runner, not here.

CREATE TABLE trunks (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    host        TEXT    NOT NULL,
    port        INTEGER NOT NULL DEFAULT 5060 CHECK (port BETWEEN 1 AND 65535),
    transport   TEXT    NOT NULL DEFAULT 'udp' CHECK (transport IN ('udp', 'tcp')),
    username    TEXT,
    password    TEXT,
    realm       TEXT,
    register    INTEGER NOT NULL DEFAULT 0 CHECK (register IN (0, 1)),
    strip_plus  INTEGER NOT NULL DEFAULT 0 CHECK (strip_plus IN (0, 1)),
    prefix      TEXT    NOT NULL DEFAULT '',
    enabled     INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1))
);

-- Addresses allowed to send calls in as this trunk, in the order given.
CREATE TABLE trunk_allow (
    trunk_id    INTEGER NOT NULL REFERENCES trunks (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    cidr        TEXT    NOT NULL,
    PRIMARY KEY (trunk_id, position)
) WITHOUT ROWID;

CREATE TABLE destinations (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    target      TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('number', 'sip', 'extension'))
);

CREATE TABLE sources (
    id                    INTEGER PRIMARY KEY,
    name                  TEXT    NOT NULL UNIQUE,
    preset                TEXT,
    description           TEXT    NOT NULL DEFAULT '',
    onsite                INTEGER NOT NULL DEFAULT 0 CHECK (onsite IN (0, 1)),
    referrer              TEXT,
    landing               TEXT,
    position              INTEGER NOT NULL DEFAULT 0,
    last_touch            INTEGER NOT NULL DEFAULT 0 CHECK (last_touch IN (0, 1)),
    tag                   TEXT,
    cost_per_call_cents   INTEGER CHECK (cost_per_call_cents >= 0),
    monthly_budget_cents  INTEGER CHECK (monthly_budget_cents >= 0),
    ga_measurement_id     TEXT,
    ga_api_secret         TEXT,
    ga_source             TEXT,
    ga_medium             TEXT,
    ga_campaign           TEXT,
    geo                   INTEGER NOT NULL DEFAULT 0 CHECK (geo IN (0, 1)),
    fallback_number       TEXT,
    enabled               INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1))
);

CREATE TABLE numbers (
    id                       INTEGER PRIMARY KEY,
    number                   TEXT    NOT NULL UNIQUE,
    source_id                INTEGER NOT NULL REFERENCES sources (id) ON DELETE RESTRICT,
    strategy                 TEXT    NOT NULL DEFAULT 'sequential'
                             CHECK (strategy IN ('sequential', 'simultaneous', 'round-robin')),
    ring_timeout             INTEGER NOT NULL DEFAULT 20 CHECK (ring_timeout > 0),
    trunk_id                 INTEGER REFERENCES trunks (id) ON DELETE RESTRICT,
    enabled                  INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    present_tracking_number  INTEGER NOT NULL DEFAULT 0 CHECK (present_tracking_number IN (0, 1)),
    hours                    TEXT,
    region                   TEXT,
    location                 TEXT,
    area_code                TEXT,
    rr_cursor                INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX numbers_source ON numbers (source_id);
CREATE INDEX numbers_trunk ON numbers (trunk_id);

-- Ordered destination lists of a number: business hours (after_hours = 0)
-- and after hours (after_hours = 1). weight is kept for weighted strategies.
CREATE TABLE number_destinations (
    number_id       INTEGER NOT NULL REFERENCES numbers (id) ON DELETE CASCADE,
    after_hours     INTEGER NOT NULL DEFAULT 0 CHECK (after_hours IN (0, 1)),
    position        INTEGER NOT NULL,
    destination_id  INTEGER NOT NULL REFERENCES destinations (id) ON DELETE RESTRICT,
    weight          INTEGER NOT NULL DEFAULT 1 CHECK (weight > 0),
    PRIMARY KEY (number_id, after_hours, position),
    UNIQUE (number_id, after_hours, destination_id)
) WITHOUT ROWID;
CREATE INDEX number_destinations_destination ON number_destinations (destination_id);

-- Blocked callers: pattern is an exact number or a prefix; number NULL = global.
CREATE TABLE blocks (
    id       INTEGER PRIMARY KEY,
    pattern  TEXT NOT NULL,
    number   TEXT REFERENCES numbers (number) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE UNIQUE INDEX blocks_unique ON blocks (pattern, coalesce(number, ''));
CREATE INDEX blocks_number ON blocks (number);

CREATE TABLE extensions (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    ha1_md5       TEXT    NOT NULL,
    ha1_sha256    TEXT    NOT NULL,
    realm         TEXT    NOT NULL,
    max_contacts  INTEGER NOT NULL DEFAULT 1 CHECK (max_contacts >= 1)
);

CREATE TABLE extension_bindings (
    extension_id  INTEGER NOT NULL REFERENCES extensions (id) ON DELETE CASCADE,
    contact       TEXT    NOT NULL,
    expires_at    TEXT    NOT NULL,
    call_id       TEXT,
    cseq          INTEGER,
    received      TEXT,
    PRIMARY KEY (extension_id, contact)
) WITHOUT ROWID;

-- One row per inbound call. Names (tracking_number, source, trunk...) are
-- copied, not referenced: history survives configuration changes.
CREATE TABLE calls (
    id                TEXT    PRIMARY KEY,
    inbound_call_id   TEXT    NOT NULL,
    outbound_call_id  TEXT,
    started_at        TEXT    NOT NULL,
    answered_at       TEXT,
    ended_at          TEXT,
    caller            TEXT    NOT NULL,
    caller_name       TEXT,
    caller_region     TEXT,
    caller_location   TEXT,
    tracking_number   TEXT    NOT NULL,
    source            TEXT,
    tag               TEXT,
    destination       TEXT,
    trunk             TEXT,
    attempts          TEXT    NOT NULL DEFAULT '[]',  -- JSON list of attempts
    disposition       TEXT    NOT NULL CHECK (disposition IN ('ringing', 'answered', 'busy',
                              'no-answer', 'failed', 'cancelled', 'rejected', 'blocked',
                              'interrupted')),
    sip_status        INTEGER,
    sip_reason        TEXT,
    hangup_by         TEXT CHECK (hangup_by IN ('caller', 'callee', 'system')),
    ring_seconds      REAL    NOT NULL DEFAULT 0,
    talk_seconds      REAL    NOT NULL DEFAULT 0,
    packets_in_out    INTEGER NOT NULL DEFAULT 0,
    packets_out_in    INTEGER NOT NULL DEFAULT 0,
    bytes_in_out      INTEGER NOT NULL DEFAULT 0,
    bytes_out_in      INTEGER NOT NULL DEFAULT 0,
    cost_cents        INTEGER,
    visit_id          TEXT,
    landing_url       TEXT,
    referrer          TEXT,
    utm_source        TEXT,
    utm_medium        TEXT,
    utm_campaign      TEXT,
    utm_term          TEXT,
    utm_content       TEXT,
    gclid             TEXT,
    ga_client_id      TEXT,
    visitor_ip        TEXT
);
CREATE INDEX calls_started ON calls (started_at);
CREATE INDEX calls_number ON calls (tracking_number, started_at);
CREATE INDEX calls_source ON calls (source, started_at);
CREATE INDEX calls_live ON calls (disposition) WHERE disposition IN ('ringing', 'answered');

CREATE TABLE visits (
    id            TEXT    PRIMARY KEY,
    visitor_id    TEXT    NOT NULL,
    source        TEXT,
    number        TEXT,
    landing_url   TEXT,
    referrer      TEXT,
    utm_source    TEXT,
    utm_medium    TEXT,
    utm_campaign  TEXT,
    utm_term      TEXT,
    utm_content   TEXT,
    gclid         TEXT,
    ga_client_id  TEXT,
    ip            TEXT,
    country       TEXT,
    city          TEXT,
    lat           REAL,
    lon           REAL,
    started_at    TEXT    NOT NULL,
    last_seen_at  TEXT    NOT NULL,
    expires_at    TEXT    NOT NULL,
    fallback      INTEGER NOT NULL DEFAULT 0 CHECK (fallback IN (0, 1))
);
CREATE INDEX visits_number ON visits (number, expires_at);
CREATE INDEX visits_visitor ON visits (visitor_id, last_seen_at);
CREATE INDEX visits_started ON visits (started_at);

-- Integration deliveries, queued in the same transaction as the call row.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    kind             TEXT    NOT NULL CHECK (kind IN ('ga4', 'webhook')),
    payload          TEXT    NOT NULL,
    target_url       TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    delivered_at     TEXT,
    last_error       TEXT,
    created_at       TEXT,
    gave_up          INTEGER NOT NULL DEFAULT 0 CHECK (gave_up IN (0, 1))
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND gave_up = 0;
