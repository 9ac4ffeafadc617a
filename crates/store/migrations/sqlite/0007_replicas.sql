-- The replicas serving this database, each with a lease it renews and an epoch that
-- grows every time it starts or loses its lease. A session belongs to the replica (and
-- epoch) that started it; only that owner may change it (fencing).
CREATE TABLE replicas (
    id                TEXT PRIMARY KEY,
    url               TEXT NOT NULL,
    epoch             INTEGER NOT NULL,
    -- Unix milliseconds; 0 once another replica took over what it left.
    lease_expires_ms  INTEGER NOT NULL
);
ALTER TABLE sessions ADD COLUMN replica_id TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
-- Which replica clones an initialising workspace (a lost one's clones start again).
ALTER TABLE workspaces ADD COLUMN cloner TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_live_by_replica ON sessions (replica_id) WHERE state <> 'ended';
