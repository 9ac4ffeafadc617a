-- The history of every session, numbered per workspace. An event is written here before
-- any browser sees it.
CREATE TABLE events (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    session_id    TEXT NOT NULL,
    at            TEXT NOT NULL,
    kind          TEXT NOT NULL,
    data          TEXT NOT NULL,
    PRIMARY KEY (workspace_id, seq)
);
CREATE INDEX events_by_session ON events (session_id, seq);

-- The agent's own session id, for `session/load` when the workspace opens again.
ALTER TABLE workspaces ADD COLUMN agent_session_id TEXT;
