-- pbx PostgreSQL schema 5 (issue 16, hardening), the same change as SQLite's
-- 0006_call_cost_and_targets, so a dump stays the same JSON on both backends.

-- Extensions: which digest algorithms the registrar challenges with
-- (`pbx extensions --digest`): both (SHA-256 first, then MD5, RFC 7616 §3.7
-- order), or only one. Existing extensions keep both.
ALTER TABLE extensions ADD COLUMN digest ctext NOT NULL DEFAULT 'both'
    CHECK (digest IN ('both', 'md5', 'sha-256'));

-- Calls: each record keeps the cost in force when it came in. Records from
-- before carry none: give them the source's per-call cost as it is at this
-- upgrade; blocked and rejected calls are never priced. (A join instead of
-- SQLite's correlated sub-select: same rows, same values, since source names
-- are unique and a call without a matching source keeps NULL either way.)
UPDATE calls c SET cost_cents = s.cost_per_call_cents
    FROM sources s
    WHERE s.name = c.source AND c.cost_cents IS NULL
      AND c.disposition NOT IN ('blocked', 'rejected');

-- Calls: when media last flowed on a live call (pbx.service.checkpoint), so
-- the crash sweeps (calls.mark_interrupted, nodes.sweep_expired) can give an
-- interrupted call its talk time up to then. ISO text like the other times.
ALTER TABLE calls ADD COLUMN media_at ctext;

-- The talk time the crash sweeps give an interrupted call: from answered_at
-- to its last media_at, never less than written; else the seconds as
-- written. The same figures as SQLite's julianday() arithmetic, which keeps
-- each time to the millisecond (rounded) before subtracting. A time not in
-- the records' ISO form (or one PostgreSQL cannot read) leaves the seconds
-- as written rather than failing the whole sweep.
CREATE FUNCTION pbx_talk_to_media(answered text, media text, talk double precision)
RETURNS double precision LANGUAGE plpgsql STABLE AS $$
DECLARE
    iso constant text := '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$';
BEGIN
    IF answered IS NULL OR media IS NULL OR media COLLATE "C" <= answered COLLATE "C"
       OR answered !~ iso OR media !~ iso THEN
        RETURN talk;
    END IF;
    RETURN greatest(talk,
        ((round(extract(epoch FROM media::timestamptz) * 1000)
          - round(extract(epoch FROM answered::timestamptz) * 1000)) / 1000)::double precision);
EXCEPTION WHEN data_exception THEN
    RETURN talk;
END $$;
