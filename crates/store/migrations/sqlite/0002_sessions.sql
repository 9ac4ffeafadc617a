CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id           TEXT NOT NULL REFERENCES users (id),
    state             TEXT NOT NULL
                      CHECK (state IN ('starting', 'active', 'disconnected', 'ended')),
    started_at        TEXT NOT NULL,
    ended_at          TEXT,
    end_reason        TEXT,
    grace_expires_at  TEXT,
    agent_running     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_by_user ON sessions (user_id, started_at);
CREATE INDEX sessions_by_workspace ON sessions (workspace_id, started_at);
CREATE INDEX sessions_live ON sessions (state) WHERE state <> 'ended';
