-- pbx: foreign_keys off
-- SIP over TLS to a trunk (issue 16): transport may be 'tls', and tls_ca holds
-- the PEM of a private CA the trunk's certificate must chain to ('' = the
-- system's CAs). SQLite cannot change a CHECK in place, so trunks is rebuilt
-- (https://www.sqlite.org/lang_altertable.html, "other kinds of table schema
-- changes"): the runner turns foreign keys off around this transaction (the
-- first line above) and checks them before COMMIT. trunk_allow and numbers
-- keep referring to "trunks" by name; the version triggers are recreated.
CREATE TABLE trunks_new (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    host        TEXT    NOT NULL,
    port        INTEGER NOT NULL DEFAULT 5060 CHECK (port BETWEEN 1 AND 65535),
    transport   TEXT    NOT NULL DEFAULT 'udp' CHECK (transport IN ('udp', 'tcp', 'tls')),
    username    TEXT,
    password    TEXT,
    realm       TEXT,
    register    INTEGER NOT NULL DEFAULT 0 CHECK (register IN (0, 1)),
    strip_plus  INTEGER NOT NULL DEFAULT 0 CHECK (strip_plus IN (0, 1)),
    prefix      TEXT    NOT NULL DEFAULT '',
    enabled     INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    tls_ca      TEXT    NOT NULL DEFAULT ''
);
INSERT INTO trunks_new (id, name, host, port, transport, username, password, realm, register,
                        strip_plus, prefix, enabled)
    SELECT id, name, host, port, transport, username, password, realm, register,
           strip_plus, prefix, enabled FROM trunks;
DROP TABLE trunks;
ALTER TABLE trunks_new RENAME TO trunks;
CREATE TRIGGER trunks_insert_version AFTER INSERT ON trunks BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER trunks_update_version AFTER UPDATE ON trunks BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER trunks_delete_version AFTER DELETE ON trunks BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
