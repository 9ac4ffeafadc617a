-- Named tokens that expire and can be revoked one by one; users an administrator can
-- disable. Tokens made before this have no id yet: the store gives them one at open.
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN id TEXT;
ALTER TABLE tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
ALTER TABLE tokens ADD COLUMN last_used_at TEXT;
CREATE UNIQUE INDEX tokens_by_id ON tokens (id);
