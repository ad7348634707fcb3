-- Issue 16 (hardening). Extensions: which digest algorithms the registrar
-- challenges with (`pbx extensions --digest`): both (SHA-256 first, then
-- MD5, RFC 7616 §3.7 order), or only one, for phones that give up on the
-- first challenge they cannot answer. Existing extensions keep both.
ALTER TABLE extensions ADD COLUMN digest TEXT NOT NULL DEFAULT 'both'
    CHECK (digest IN ('both', 'md5', 'sha-256'));
