CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('member', 'admin')),
    created_at  TEXT NOT NULL
);

-- Tokens are kept as SHA-256 hashes: a copy of the database does not let anyone log in.
CREATE TABLE tokens (
    hash        TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL
);
CREATE INDEX tokens_by_user ON tokens (user_id);

CREATE TABLE workspaces (
    id              TEXT PRIMARY KEY,
    owner           TEXT NOT NULL REFERENCES users (id),
    name            TEXT NOT NULL,
    repo            TEXT NOT NULL,
    branch          TEXT,
    agent           TEXT,
    state           TEXT NOT NULL
                    CHECK (state IN ('initialising', 'ready', 'active', 'idle', 'error')),
    error           TEXT,
    init_log        TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    last_opened_at  TEXT,
    UNIQUE (owner, name)
);
CREATE INDEX workspaces_by_state ON workspaces (state);
