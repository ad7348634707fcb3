-- Which pbx node took each call ([node] id; one name on a single SQLite box).
ALTER TABLE calls ADD COLUMN node TEXT;
