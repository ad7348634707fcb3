-- pbx SQLite schema 3 (issue 13, audio): per-number recording / prompt settings,
-- the prompts table (converted 8 kHz mono 16-bit PCM as a blob), the call
-- record's recording fields and the 'voicemail' disposition. SQLite cannot
-- change a CHECK constraint in place, so `calls` is rebuilt (same columns in
-- the same order, plus the new ones at the end; indexes recreated).
ALTER TABLE numbers ADD COLUMN record INTEGER NOT NULL DEFAULT 0;
ALTER TABLE numbers ADD COLUMN disclosure TEXT;
ALTER TABLE numbers ADD COLUMN whisper TEXT;
ALTER TABLE numbers ADD COLUMN whisper_text TEXT;
ALTER TABLE numbers ADD COLUMN screen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE numbers ADD COLUMN screen_seconds INTEGER NOT NULL DEFAULT 5 CHECK (screen_seconds > 0);
ALTER TABLE numbers ADD COLUMN voicemail TEXT;
ALTER TABLE numbers ADD COLUMN voicemail_seconds INTEGER NOT NULL DEFAULT 120 CHECK (voicemail_seconds > 0);

DROP TRIGGER numbers_update_version;
CREATE TRIGGER numbers_update_version AFTER UPDATE OF id, number, source_id, strategy, ring_timeout, trunk_id, enabled, present_tracking_number, hours, region, location, area_code, record, disclosure, whisper, whisper_text, screen, screen_seconds, voicemail, voicemail_seconds ON numbers BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;

CREATE TABLE prompts (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    pcm         BLOB    NOT NULL,
    seconds     REAL    NOT NULL DEFAULT 0,
    origin      TEXT    NOT NULL DEFAULT '',
    text        TEXT,
    created_at  TEXT    NOT NULL DEFAULT ''
);
CREATE TRIGGER prompts_insert_version AFTER INSERT ON prompts BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER prompts_update_version AFTER UPDATE ON prompts BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER prompts_delete_version AFTER DELETE ON prompts BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;

CREATE TABLE calls_new (
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
                              'interrupted', 'voicemail')),
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
    visitor_ip        TEXT,
    recording         TEXT,
    recording_seconds REAL    NOT NULL DEFAULT 0,
    recording_bytes   INTEGER NOT NULL DEFAULT 0,
    media_note        TEXT
);
INSERT INTO calls_new SELECT *, NULL, 0, 0, NULL FROM calls;
DROP TABLE calls;
ALTER TABLE calls_new RENAME TO calls;
CREATE INDEX calls_started ON calls (started_at);
CREATE INDEX calls_number ON calls (tracking_number, started_at);
CREATE INDEX calls_source ON calls (source, started_at);
CREATE INDEX calls_live ON calls (disposition) WHERE disposition IN ('ringing', 'answered');

ALTER TABLE sources ADD COLUMN record INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sources ADD COLUMN disclosure TEXT;
