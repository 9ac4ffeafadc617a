//! Browser sign-ins and the preview tickets already used.

use crate::{Store, StoreError};
use berth_core::{SignInId, SignInInfo, SignInVia, User, UserId};
use chrono::{DateTime, Utc};

#[derive(sqlx::FromRow)]
struct SignInRow {
    id: String,
    user_id: String,
    via: String,
    created_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    user_agent: String,
    address: String,
    secret_hash: String,
}

impl SignInRow {
    fn into_info(self) -> Result<(SignInInfo, String), StoreError> {
        let via = SignInVia::parse(&self.via).ok_or_else(|| StoreError::Corrupt {
            what: format!("sign-in {} made via '{}'", self.id, self.via),
        })?;
        let info = SignInInfo {
            id: SignInId::from_trusted(self.id),
            user_id: UserId::from_trusted(self.user_id),
            via,
            created_at: self.created_at,
            last_seen_at: self.last_seen_at,
            expires_at: self.expires_at,
            user_agent: self.user_agent,
            address: self.address,
        };
        Ok((info, self.secret_hash))
    }
}

#[derive(sqlx::FromRow)]
struct SignedInRow {
    id: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl Store {
    /// Records a sign-in whose secret hashes to `secret_hash`; `token_hash` is the token it
    /// was made from, whose revocation ends it.
    pub async fn insert_sign_in(
        &self,
        sign_in: &SignInInfo,
        secret_hash: &str,
        token_hash: Option<&str>,
    ) -> Result<(), StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query(
                "INSERT INTO sign_ins (id, secret_hash, user_id, token_hash, via, created_at, last_seen_at,
                                       expires_at, user_agent, address)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(sign_in.id.as_str())
            .bind(secret_hash)
            .bind(sign_in.user_id.as_str())
            .bind(token_hash)
            .bind(sign_in.via.as_str())
            .bind(sign_in.created_at)
            .bind(sign_in.last_seen_at)
            .bind(sign_in.expires_at)
            .bind(&sign_in.user_agent)
            .bind(&sign_in.address)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The user a sign-in (by its secret's hash) stands for at `now`, and when it ends:
    /// none for one that is unknown, ended, expired, made from a token since revoked, or
    /// of a disabled user. Marks it seen.
    pub async fn authenticate_sign_in(
        &self,
        secret_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(User, DateTime<Utc>)>, StoreError> {
        with_pool!(&self.backend, |pool| {
            let row = sqlx::query_as::<_, SignedInRow>(
                "SELECT users.id, users.name, users.role, users.created_at, sign_ins.expires_at
                     FROM sign_ins JOIN users ON users.id = sign_ins.user_id
                     LEFT JOIN tokens ON tokens.hash = sign_ins.token_hash
                     WHERE sign_ins.secret_hash = $1 AND users.disabled = FALSE AND sign_ins.expires_at > $2
                       AND (sign_ins.token_hash IS NULL OR tokens.hash IS NOT NULL)",
            )
            .bind(secret_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            sqlx::query("UPDATE sign_ins SET last_seen_at = $1 WHERE secret_hash = $2")
                .bind(now)
                .bind(secret_hash)
                .execute(pool)
                .await?;
            let user = User {
                id: UserId::from_trusted(row.id),
                role: berth_core::Role::parse(&row.role)
                    .ok_or_else(|| StoreError::Corrupt { what: format!("role '{}'", row.role) })?,
                name: row.name,
                created_at: row.created_at,
            };
            Ok(Some((user, row.expires_at)))
        })
    }

    /// A user's sign-ins still in force, newest first, each with its secret's hash (to
    /// tell the caller's own); never a secret.
    pub async fn sign_ins_of(
        &self,
        user_id: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<(SignInInfo, String)>, StoreError> {
        with_pool!(&self.backend, |pool| {
            let rows = sqlx::query_as::<_, SignInRow>(
                "SELECT sign_ins.id, sign_ins.user_id, sign_ins.via, sign_ins.created_at, sign_ins.last_seen_at,
                        sign_ins.expires_at, sign_ins.user_agent, sign_ins.address, sign_ins.secret_hash
                     FROM sign_ins LEFT JOIN tokens ON tokens.hash = sign_ins.token_hash
                     WHERE sign_ins.user_id = $1 AND sign_ins.expires_at > $2
                       AND (sign_ins.token_hash IS NULL OR tokens.hash IS NOT NULL)
                     ORDER BY sign_ins.created_at DESC, sign_ins.id",
            )
            .bind(user_id.as_str())
            .bind(now)
            .fetch_all(pool)
            .await?;
            rows.into_iter().map(SignInRow::into_info).collect()
        })
    }

    /// Ends one of `user_id`'s sign-ins; its secret's hash (for caches), `None` when the
    /// user has no such sign-in.
    pub async fn delete_sign_in(
        &self,
        user_id: &UserId,
        id: &SignInId,
    ) -> Result<Option<String>, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query_scalar::<_, String>(
            "DELETE FROM sign_ins WHERE user_id = $1 AND id = $2 RETURNING secret_hash",
        )
        .bind(user_id.as_str())
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?))
    }

    /// Ends the sign-in whose secret hashes to `secret_hash` (a browser signing out).
    pub async fn delete_sign_in_by_hash(&self, secret_hash: &str) -> Result<bool, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query("DELETE FROM sign_ins WHERE secret_hash = $1")
            .bind(secret_hash)
            .execute(pool)
            .await?
            .rows_affected()
            > 0))
    }

    /// Records that the preview ticket `nonce` (good until `expires_at`, Unix seconds) is
    /// used; whether it was not already — once for the whole installation. Tickets past
    /// their time are forgotten on the way.
    pub async fn redeem_ticket(&self, nonce: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query("DELETE FROM redeemed_tickets WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?;
            Ok(sqlx::query(
                "INSERT INTO redeemed_tickets (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
            )
            .bind(nonce)
            .bind(expires_at)
            .execute(pool)
            .await?
            .rows_affected()
                == 1)
        })
    }
}

/// An OpenID Connect sign-in under way, as the browser's start left it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingOidcLogin {
    pub state: String,
    /// The hash of the secret of the browser's binding cookie.
    pub binding_hash: String,
    pub verifier: String,
    pub nonce: String,
    pub next: String,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(sqlx::FromRow)]
struct OidcUserRow {
    id: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    disabled: bool,
}

impl Store {
    pub async fn insert_oidc_login(&self, login: &PendingOidcLogin) -> Result<(), StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query(
                "INSERT INTO oidc_logins (state, binding_hash, verifier, nonce, next, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&login.state)
            .bind(&login.binding_hash)
            .bind(&login.verifier)
            .bind(&login.nonce)
            .bind(&login.next)
            .bind(login.expires_at)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Takes the sign-in under way with `state` (once: it is gone after), unless it has
    /// expired; expired ones are forgotten on the way.
    pub async fn take_oidc_login(
        &self,
        state: &str,
        now: i64,
    ) -> Result<Option<PendingOidcLogin>, StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query("DELETE FROM oidc_logins WHERE expires_at <= $1").bind(now).execute(pool).await?;
            Ok(sqlx::query_as::<_, PendingOidcLogin>(
                "DELETE FROM oidc_logins WHERE state = $1
                 RETURNING state, binding_hash, verifier, nonce, next, expires_at",
            )
            .bind(state)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// The user a provider's person (issuer, subject) is, and whether they are disabled.
    pub async fn user_by_oidc(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<(User, bool)>, StoreError> {
        with_pool!(&self.backend, |pool| {
            let row = sqlx::query_as::<_, OidcUserRow>(
                "SELECT id, name, role, created_at, disabled FROM users WHERE oidc_issuer = $1 AND oidc_subject = $2",
            )
            .bind(issuer)
            .bind(subject)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let role = berth_core::Role::parse(&row.role)
                .ok_or_else(|| StoreError::Corrupt { what: format!("role '{}'", row.role) })?;
            let user =
                User { id: UserId::from_trusted(row.id), name: row.name, role, created_at: row.created_at };
            Ok(Some((user, row.disabled)))
        })
    }

    /// Makes the user a provider's person (issuer, subject) is, with what the provider
    /// says of them. A name another user has is `NameTaken`.
    pub async fn insert_oidc_user(
        &self,
        user: &User,
        issuer: &str,
        subject: &str,
        display_name: &str,
        email: &str,
    ) -> Result<(), StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query(
                "INSERT INTO users (id, name, role, created_at, display_name, email, oidc_issuer, oidc_subject)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(user.id.as_str())
            .bind(&user.name)
            .bind(user.role.as_str())
            .bind(user.created_at)
            .bind(display_name)
            .bind(email)
            .bind(issuer)
            .bind(subject)
            .execute(pool)
            .await
            .map_err(|error| {
                if crate::is_unique_violation(&error) {
                    StoreError::NameTaken { name: user.name.clone() }
                } else {
                    error.into()
                }
            })?;
            Ok(())
        })
    }

    /// What the provider says of a person at a later sign-in: name, email and role.
    pub async fn update_oidc_user(
        &self,
        id: &UserId,
        role: berth_core::Role,
        display_name: &str,
        email: &str,
    ) -> Result<(), StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query("UPDATE users SET role = $1, display_name = $2, email = $3 WHERE id = $4")
                .bind(role.as_str())
                .bind(display_name)
                .bind(email)
                .bind(id.as_str())
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}
