-- pbx PostgreSQL schema 2 (PostgreSQL only, not in the SQLite schema): the
-- nodes sharing this store and their leases (pbx/store/postgres/nodes.py),
-- and which node's runner owns each call. Both are left out of dump().
CREATE TABLE nodes (
    name              ctext PRIMARY KEY,
    token             ctext NOT NULL,  -- the incarnation (one store open) holding the lease
    lease_expires_at  ctext NOT NULL   -- ISO UTC (`...ffffffZ`), on the database's clock
);
CREATE INDEX nodes_expiry ON nodes (lease_expires_at);

ALTER TABLE calls ADD COLUMN node ctext;
CREATE INDEX calls_node_live ON calls (node)
    WHERE ended_at IS NULL AND disposition IN ('ringing', 'answered');
