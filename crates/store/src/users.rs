//! Users and their API tokens.

use crate::{Backend, Store, StoreError, is_unique_violation};
use berth_core::{Role, User, UserId};
use chrono::{DateTime, Utc};

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
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
        match &self.backend {
            Backend::Sqlite(pool) => {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await?)
            }
        }
    }

    /// Creates `user` with one token (given as its hash), in one transaction.
    pub async fn insert_user(&self, user: &User, token_hash: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("INSERT INTO users (id, name, role, created_at) VALUES (?, ?, ?, ?)")
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
                sqlx::query("INSERT INTO tokens (hash, user_id, created_at) VALUES (?, ?, ?)")
                    .bind(token_hash)
                    .bind(user.id.as_str())
                    .bind(user.created_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        }
    }

    /// Adds a token to an existing user. Adding a token that already exists is a no-op.
    pub async fn insert_token(
        &self,
        user_id: &UserId,
        token_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlx::query("INSERT INTO tokens (hash, user_id, created_at) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING")
                    .bind(token_hash)
                    .bind(user_id.as_str())
                    .bind(at)
                    .execute(pool)
                    .await?;
                Ok(())
            }
        }
    }

    pub async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<User>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlx::query_as::<_, UserRow>(
                "SELECT users.id, users.name, users.role, users.created_at
                 FROM tokens JOIN users ON users.id = tokens.user_id WHERE tokens.hash = ?",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await?
            .map(User::try_from)
            .transpose(),
        }
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlx::query_as::<_, UserRow>("SELECT id, name, role, created_at FROM users WHERE name = ?")
                    .bind(name)
                    .fetch_optional(pool)
                    .await?
                    .map(User::try_from)
                    .transpose()
            }
        }
    }

    pub async fn user(&self, id: &berth_core::UserId) -> Result<Option<User>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlx::query_as::<_, UserRow>("SELECT id, name, role, created_at FROM users WHERE id = ?")
                    .bind(id.as_str())
                    .fetch_optional(pool)
                    .await?
                    .map(User::try_from)
                    .transpose()
            }
        }
    }

    /// The oldest administrator, if there is one.
    pub async fn first_admin(&self) -> Result<Option<User>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlx::query_as::<_, UserRow>(
                "SELECT id, name, role, created_at FROM users WHERE role = 'admin' ORDER BY created_at, id LIMIT 1",
            )
            .fetch_optional(pool)
            .await?
            .map(User::try_from)
            .transpose(),
        }
    }
}
