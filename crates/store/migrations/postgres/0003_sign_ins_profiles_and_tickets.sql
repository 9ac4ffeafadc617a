-- Browser sign-ins: a random secret of their own in the browser's cookie (stored as its
-- hash), never the token they were made from. A sign-in made from a token goes with it
-- (revoked: the row is deleted, and so are its sign-ins).
CREATE TABLE sign_ins (
    id            TEXT PRIMARY KEY,
    secret_hash   TEXT NOT NULL UNIQUE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    TEXT REFERENCES tokens (hash) ON DELETE CASCADE,
    via           TEXT NOT NULL CHECK (via IN ('token', 'oidc')),
    created_at    TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    user_agent    TEXT NOT NULL DEFAULT '',
    address       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sign_ins_by_user ON sign_ins (user_id);
CREATE INDEX sign_ins_by_token ON sign_ins (token_hash);

-- Preview tickets already traded for a preview cookie, kept until they expire, so a
-- ticket is good once for the whole installation (every replica looks here).
CREATE TABLE redeemed_tickets (
    nonce       TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);

-- What a person is called and reached at (their commits carry it), and, for a person who
-- signs in through an OpenID Connect provider, who they are there: the pair (issuer,
-- subject), which stays when their name or email change.
ALTER TABLE users ADD COLUMN display_name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN oidc_issuer TEXT;
ALTER TABLE users ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX users_by_oidc ON users (oidc_issuer, oidc_subject);

-- OpenID Connect sign-ins under way: the `state` sent to the provider, the hash of the
-- browser's binding cookie (the callback must come back to the browser that started),
-- the PKCE verifier and nonce, and where to go after. Taken once, then gone.
CREATE TABLE oidc_logins (
    state         TEXT PRIMARY KEY,
    binding_hash  TEXT NOT NULL,
    verifier      TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    next          TEXT NOT NULL,
    expires_at    BIGINT NOT NULL
);
