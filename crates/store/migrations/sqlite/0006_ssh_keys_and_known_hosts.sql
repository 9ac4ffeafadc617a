-- One SSH key pair per user, made by berth (the private half sealed), and the host keys
-- of the SSH servers this installation has reached: recorded at first use, never
-- replaced (a changed key is refused).
CREATE TABLE ssh_keys (
    user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    public_key TEXT NOT NULL,
    sealed_private_key BLOB NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE known_hosts (
    host TEXT PRIMARY KEY,
    lines TEXT NOT NULL,
    first_seen_at TEXT NOT NULL
);
