//! Users and their API tokens.

use crate::{Store, StoreError, is_unique_violation};
use berth_core::{Account, Role, TokenId, TokenInfo, User, UserId};
use chrono::{DateTime, Utc};

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct AuthenticatedRow {
    id: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    disabled: bool,
    from_provider: bool,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    user_id: String,
    name: String,
    prefix: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

impl From<TokenRow> for TokenInfo {
    fn from(row: TokenRow) -> TokenInfo {
        TokenInfo {
            id: TokenId::from_trusted(row.id),
            user_id: UserId::from_trusted(row.user_id),
            name: row.name,
            prefix: row.prefix,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
        }
    }
}

/// Records a token, on a pool or in a transaction of either database.
macro_rules! insert_token_row {
    ($executor:expr, $token:expr, $token_hash:expr) => {
        sqlx::query(
            "INSERT INTO tokens (hash, id, user_id, name, prefix, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (hash) DO NOTHING",
        )
        .bind($token_hash)
        .bind($token.id.as_str())
        .bind($token.user_id.as_str())
        .bind(&$token.name)
        .bind(&$token.prefix)
        .bind($token.created_at)
        .bind($token.expires_at)
        .execute($executor)
        .await
        .map(drop)
    };
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<User, StoreError> {
        let role = Role::parse(&row.role)
            .ok_or_else(|| StoreError::Corrupt { what: format!("role '{}' of user {}", row.role, row.id) })?;
        Ok(User { id: UserId::from_trusted(row.id), name: row.name, role, created_at: row.created_at })
    }
}

impl Store {
    pub async fn count_users(&self) -> Result<i64, StoreError> {
        with_pool!(&self.backend, |pool| {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await?)
        })
    }

    /// Creates `user` with one token (its record and hash), in one transaction.
    pub async fn insert_user(
        &self,
        user: &User,
        token: &TokenInfo,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        with_pool!(&self.backend, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO users (id, name, role, created_at) VALUES ($1, $2, $3, $4)")
                .bind(user.id.as_str())
                .bind(&user.name)
                .bind(user.role.as_str())
                .bind(user.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|error| {
                    if is_unique_violation(&error) {
                        StoreError::NameTaken { name: user.name.clone() }
                    } else {
                        error.into()
                    }
                })?;
            insert_token_row!(&mut *tx, token, token_hash)?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Adds a token to an existing user. Adding a token that already exists is a no-op.
    pub async fn insert_token(&self, token: &TokenInfo, token_hash: &str) -> Result<(), StoreError> {
        with_pool!(&self.backend, |pool| Ok(insert_token_row!(pool, token, token_hash)?))
    }

    /// The user a token (by hash) authenticates at `now`, and when the token expires: none
    /// for a token that is unknown, revoked, expired or of a disabled user. Marks the
    /// token used.
    pub async fn authenticate(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(User, Option<DateTime<Utc>>)>, StoreError> {
        with_pool!(&self.backend, |pool| {
            let row = sqlx::query_as::<_, AuthenticatedRow>(
                "SELECT users.id, users.name, users.role, users.created_at, tokens.expires_at
                     FROM tokens JOIN users ON users.id = tokens.user_id
                     WHERE tokens.hash = $1 AND users.disabled = FALSE
                       AND (tokens.expires_at IS NULL OR tokens.expires_at > $2)",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE hash = $2")
                .bind(now)
                .bind(token_hash)
                .execute(pool)
                .await?;
            let expires_at = row.expires_at;
            let user = UserRow { id: row.id, name: row.name, role: row.role, created_at: row.created_at };
            Ok(Some((User::try_from(user)?, expires_at)))
        })
    }

    /// Whether the token or browser sign-in with this hash is one of a disabled user's:
    /// what a refused credential is told.
    pub async fn is_disabled_users(&self, hash: &str) -> Result<bool, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM users WHERE disabled = TRUE AND id IN (
                 SELECT user_id FROM tokens WHERE hash = $1
                 UNION SELECT user_id FROM sign_ins WHERE secret_hash = $1)",
        )
        .bind(hash)
        .fetch_one(pool)
        .await?
            > 0))
    }

    /// A user's tokens, newest first; never their secrets.
    pub async fn tokens_of(&self, user_id: &UserId) -> Result<Vec<TokenInfo>, StoreError> {
        with_pool!(&self.backend, |pool| {
            let rows = sqlx::query_as::<_, TokenRow>(
                "SELECT id, user_id, name, prefix, created_at, last_used_at, expires_at
                     FROM tokens WHERE user_id = $1 AND id IS NOT NULL ORDER BY created_at DESC, id",
            )
            .bind(user_id.as_str())
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(TokenInfo::from).collect())
        })
    }

    /// Revokes a token of `user_id` by id; returns its hash (for caches), `None` when the
    /// user has no such token.
    pub async fn delete_token(&self, user_id: &UserId, id: &TokenId) -> Result<Option<String>, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query_scalar::<_, String>(
            "DELETE FROM tokens WHERE user_id = $1 AND id = $2 RETURNING hash",
        )
        .bind(user_id.as_str())
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?))
    }

    /// Revokes the token with this hash (a logout); whether there was one.
    pub async fn delete_token_by_hash(&self, token_hash: &str) -> Result<bool, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query("DELETE FROM tokens WHERE hash = $1")
            .bind(token_hash)
            .execute(pool)
            .await?
            .rows_affected()
            > 0))
    }

    /// Gives tokens made before token ids existed one each.
    pub(crate) async fn name_unnamed_tokens(&self) -> Result<(), StoreError> {
        with_pool!(&self.backend, |pool| {
            let hashes: Vec<String> =
                sqlx::query_scalar("SELECT hash FROM tokens WHERE id IS NULL").fetch_all(pool).await?;
            for hash in hashes {
                sqlx::query("UPDATE tokens SET id = $1, name = 'token' WHERE hash = $2")
                    .bind(TokenId::generate().as_str())
                    .bind(&hash)
                    .execute(pool)
                    .await?;
            }
            Ok(())
        })
    }

    /// Every user, oldest first, with whether they are disabled.
    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        with_pool!(&self.backend, |pool| {
            let rows = sqlx::query_as::<_, AccountRow>(
                "SELECT id, name, role, created_at, disabled, oidc_issuer IS NOT NULL AS from_provider
                     FROM users ORDER BY created_at, id",
            )
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|row| {
                    let (disabled, from_provider) = (row.disabled, row.from_provider);
                    let user =
                        UserRow { id: row.id, name: row.name, role: row.role, created_at: row.created_at };
                    Ok(Account { user: User::try_from(user)?, disabled, from_provider })
                })
                .collect()
        })
    }

    /// Changes a user's role and whether they are disabled; `false` when there is no such
    /// user.
    pub async fn update_account(&self, id: &UserId, role: Role, disabled: bool) -> Result<bool, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query(
            "UPDATE users SET role = $1, disabled = $2 WHERE id = $3"
        )
        .bind(role.as_str())
        .bind(disabled)
        .bind(id.as_str())
        .execute(pool)
        .await?
        .rows_affected()
            > 0))
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>, StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query_as::<_, UserRow>("SELECT id, name, role, created_at FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
                .map(User::try_from)
                .transpose()
        })
    }

    pub async fn user(&self, id: &berth_core::UserId) -> Result<Option<User>, StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query_as::<_, UserRow>("SELECT id, name, role, created_at FROM users WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
                .map(User::try_from)
                .transpose()
        })
    }

    /// The oldest administrator, if there is one.
    pub async fn first_admin(&self) -> Result<Option<User>, StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query_as::<_, UserRow>(
                "SELECT id, name, role, created_at FROM users WHERE role = 'admin' ORDER BY created_at, id LIMIT 1",
            )
            .fetch_optional(pool)
            .await?
            .map(User::try_from)
            .transpose()
        })
    }
}

#[derive(sqlx::FromRow)]
struct ProfileRow {
    display_name: String,
    email: String,
    oidc_issuer: Option<String>,
}

impl Store {
    /// What `user_id` is called and reached at; `None` for an unknown user.
    pub async fn profile(&self, user_id: &UserId) -> Result<Option<berth_core::Profile>, StoreError> {
        with_pool!(&self.backend, |pool| {
            let row = sqlx::query_as::<_, ProfileRow>(
                "SELECT display_name, email, oidc_issuer FROM users WHERE id = $1",
            )
            .bind(user_id.as_str())
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| berth_core::Profile {
                display_name: row.display_name,
                email: row.email,
                from_provider: row.oidc_issuer.is_some(),
            }))
        })
    }

    /// Sets what `user_id` is called and reached at; whether there is such a user.
    pub async fn update_profile(
        &self,
        user_id: &UserId,
        display_name: &str,
        email: &str,
    ) -> Result<bool, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query(
            "UPDATE users SET display_name = $1, email = $2 WHERE id = $3"
        )
        .bind(display_name)
        .bind(email)
        .bind(user_id.as_str())
        .execute(pool)
        .await?
        .rows_affected()
            > 0))
    }
}
