-- SIP over TLS to a trunk (issue 16): transport may be 'tls', and tls_ca holds
-- the PEM of a private CA the trunk's certificate must chain to ('' = the
-- system's CAs).
ALTER TABLE trunks DROP CONSTRAINT trunks_transport_check;
ALTER TABLE trunks ADD CONSTRAINT trunks_transport_check CHECK (transport IN ('udp', 'tcp', 'tls'));
ALTER TABLE trunks ADD COLUMN tls_ca ctext NOT NULL DEFAULT '';
