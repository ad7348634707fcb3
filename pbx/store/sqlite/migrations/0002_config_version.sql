-- Provisioning change counter for the daemon's provisioning cache
-- (pbx/store/sqlite/cache.py): every change to a table that routing reads
-- bumps config_version.version, whichever connection commits it (the
-- daemon, the CLI, or a sqlite3 shell), so cached routes are never stale.
-- numbers' rr_cursor (advanced per call) does not count as a change.
CREATE TABLE config_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
INSERT OR IGNORE INTO config_version (id, version) VALUES (1, 0);
CREATE TRIGGER trunks_insert_version AFTER INSERT ON trunks BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER trunks_update_version AFTER UPDATE ON trunks BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER trunks_delete_version AFTER DELETE ON trunks BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER trunk_allow_insert_version AFTER INSERT ON trunk_allow BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER trunk_allow_update_version AFTER UPDATE ON trunk_allow BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER trunk_allow_delete_version AFTER DELETE ON trunk_allow BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER destinations_insert_version AFTER INSERT ON destinations BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER destinations_update_version AFTER UPDATE ON destinations BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER destinations_delete_version AFTER DELETE ON destinations BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER sources_insert_version AFTER INSERT ON sources BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER sources_update_version AFTER UPDATE ON sources BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER sources_delete_version AFTER DELETE ON sources BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER number_destinations_insert_version AFTER INSERT ON number_destinations BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER number_destinations_update_version AFTER UPDATE ON number_destinations BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER number_destinations_delete_version AFTER DELETE ON number_destinations BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER blocks_insert_version AFTER INSERT ON blocks BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER blocks_update_version AFTER UPDATE ON blocks BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER blocks_delete_version AFTER DELETE ON blocks BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER numbers_insert_version AFTER INSERT ON numbers BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER numbers_update_version AFTER UPDATE OF id, number, source_id, strategy, ring_timeout, trunk_id, enabled, present_tracking_number, hours, region, location, area_code ON numbers BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER numbers_delete_version AFTER DELETE ON numbers BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
