-- Where a call came from before a front proxy (Kamailio's X-Pbx-Received):
-- the carrier-side HOST:PORT, kept on the record (docs/scale-out.md).
ALTER TABLE calls ADD COLUMN received_from TEXT;
