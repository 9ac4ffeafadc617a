-- berth's records on PostgreSQL: the same tables as on SQLite (whose migrations they
-- sum up), with PostgreSQL's types for times, flags and sealed bytes.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('member', 'admin')),
    created_at  TIMESTAMPTZ NOT NULL,
    disabled    BOOLEAN NOT NULL DEFAULT FALSE
);

-- Tokens are kept as SHA-256 hashes: a copy of the database does not let anyone log in.
CREATE TABLE tokens (
    hash          TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    TIMESTAMPTZ NOT NULL,
    id            TEXT,
    name          TEXT NOT NULL DEFAULT '',
    prefix        TEXT NOT NULL DEFAULT '',
    expires_at    TIMESTAMPTZ,
    last_used_at  TIMESTAMPTZ
);
CREATE INDEX tokens_by_user ON tokens (user_id);
CREATE UNIQUE INDEX tokens_by_id ON tokens (id);

CREATE TABLE workspaces (
    id                TEXT PRIMARY KEY,
    owner             TEXT NOT NULL REFERENCES users (id),
    name              TEXT NOT NULL,
    repo              TEXT NOT NULL,
    branch            TEXT,
    agent             TEXT,
    state             TEXT NOT NULL
                      CHECK (state IN ('initialising', 'ready', 'active', 'idle', 'error')),
    error             TEXT,
    init_log          TEXT NOT NULL DEFAULT '',
    created_at        TIMESTAMPTZ NOT NULL,
    last_opened_at    TIMESTAMPTZ,
    agent_session_id  TEXT,
    UNIQUE (owner, name)
);
CREATE INDEX workspaces_by_state ON workspaces (state);

CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id           TEXT NOT NULL REFERENCES users (id),
    state             TEXT NOT NULL
                      CHECK (state IN ('starting', 'active', 'disconnected', 'ended')),
    started_at        TIMESTAMPTZ NOT NULL,
    ended_at          TIMESTAMPTZ,
    end_reason        TEXT,
    grace_expires_at  TIMESTAMPTZ,
    agent_running     BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sessions_by_user ON sessions (user_id, started_at);
CREATE INDEX sessions_by_workspace ON sessions (workspace_id, started_at);
CREATE INDEX sessions_live ON sessions (state) WHERE state <> 'ended';

-- The history of every session, numbered per workspace. An event is written here before
-- any browser sees it.
CREATE TABLE events (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    session_id    TEXT NOT NULL,
    at            TIMESTAMPTZ NOT NULL,
    kind          TEXT NOT NULL,
    data          TEXT NOT NULL,
    PRIMARY KEY (workspace_id, seq)
);
CREATE INDEX events_by_session ON events (session_id, seq);

-- A user's git credentials (one per host) and secrets, sealed by the engine.
CREATE TABLE credentials (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    host           TEXT NOT NULL,
    username       TEXT NOT NULL,
    sealed_secret  BYTEA NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (user_id, host)
);

CREATE TABLE secrets (
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    sealed_value  BYTEA NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, name)
);

-- One SSH key pair per user (the private half sealed), and the SSH host keys this
-- installation has reached: recorded at first use, never replaced.
CREATE TABLE ssh_keys (
    user_id             TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    public_key          TEXT NOT NULL,
    sealed_private_key  BYTEA NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL
);

CREATE TABLE known_hosts (
    host           TEXT PRIMARY KEY,
    lines          TEXT NOT NULL,
    first_seen_at  TIMESTAMPTZ NOT NULL
);
