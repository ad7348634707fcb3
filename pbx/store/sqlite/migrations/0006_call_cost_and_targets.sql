-- Issue 16 (hardening). Extensions: which digest algorithms the registrar
-- challenges with (`pbx extensions --digest`): both (SHA-256 first, then
-- MD5, RFC 7616 §3.7 order), or only one, for phones that give up on the
-- first challenge they cannot answer. Existing extensions keep both.
ALTER TABLE extensions ADD COLUMN digest TEXT NOT NULL DEFAULT 'both'
    CHECK (digest IN ('both', 'md5', 'sha-256'));

-- Calls: each record keeps the cost in force when it came in (written at
-- intake from now on). Records from before carry none: give them the
-- source's per-call cost as it is at this upgrade, the best figure there
-- is, so `pbx report roi` keeps its totals; blocked and rejected calls are
-- never priced. After this, changing a source's price reprices nothing.
UPDATE calls SET cost_cents = (
    SELECT s.cost_per_call_cents FROM sources s WHERE s.name = calls.source
) WHERE cost_cents IS NULL AND disposition NOT IN ('blocked', 'rejected');

-- Calls: when media last flowed on a live call (pbx.service.checkpoint
-- stamps it every 30 s), so the crash sweep can give an interrupted call
-- its talk time up to then. Not part of the call record's fields.
ALTER TABLE calls ADD COLUMN media_at TEXT;
