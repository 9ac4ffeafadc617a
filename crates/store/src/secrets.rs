//! Users' git credentials and secrets. The store keeps their secret parts as the engine
//! sealed them and never sees them in the clear.

use crate::{Store, StoreError};
use berth_core::{CredentialId, CredentialInfo, SecretInfo, UserId};
use chrono::{DateTime, Utc};

#[derive(sqlx::FromRow)]
struct CredentialRow {
    id: String,
    host: String,
    username: String,
    created_at: DateTime<Utc>,
}

impl From<CredentialRow> for CredentialInfo {
    fn from(row: CredentialRow) -> CredentialInfo {
        CredentialInfo {
            id: CredentialId::from_trusted(row.id),
            host: row.host,
            username: row.username,
            created_at: row.created_at,
        }
    }
}

/// A credential with its sealed secret, for the engine to open when git needs it.
#[derive(Debug, Clone)]
pub struct SealedCredential {
    pub info: CredentialInfo,
    pub sealed_secret: Vec<u8>,
}

impl Store {
    /// Stores `user_id`'s credential for `info.host`, replacing the one they had for it.
    pub async fn put_credential(
        &self,
        user_id: &UserId,
        info: &CredentialInfo,
        sealed_secret: &[u8],
    ) -> Result<(), StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query(
                "INSERT INTO credentials (id, user_id, host, username, sealed_secret, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (user_id, host) DO UPDATE SET id = excluded.id,
                        username = excluded.username, sealed_secret = excluded.sealed_secret,
                        created_at = excluded.created_at",
            )
            .bind(info.id.as_str())
            .bind(user_id.as_str())
            .bind(&info.host)
            .bind(&info.username)
            .bind(sealed_secret)
            .bind(info.created_at)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    pub async fn credentials_of(&self, user_id: &UserId) -> Result<Vec<CredentialInfo>, StoreError> {
        with_pool!(&self.backend, |pool| {
            let rows = sqlx::query_as::<_, CredentialRow>(
                "SELECT id, host, username, created_at FROM credentials WHERE user_id = $1 ORDER BY host",
            )
            .bind(user_id.as_str())
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(CredentialInfo::from).collect())
        })
    }

    /// `user_id`'s credential for `host`, sealed.
    pub async fn credential_for(
        &self,
        user_id: &UserId,
        host: &str,
    ) -> Result<Option<SealedCredential>, StoreError> {
        with_pool!(&self.backend, |pool| {
            let row = sqlx::query_as::<_, (String, String, String, DateTime<Utc>, Vec<u8>)>(
                "SELECT id, host, username, created_at, sealed_secret FROM credentials
                     WHERE user_id = $1 AND host = $2",
            )
            .bind(user_id.as_str())
            .bind(host)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|(id, host, username, created_at, sealed_secret)| SealedCredential {
                info: CredentialInfo { id: CredentialId::from_trusted(id), host, username, created_at },
                sealed_secret,
            }))
        })
    }

    /// Whether `user_id` had the credential `id`.
    pub async fn delete_credential(&self, user_id: &UserId, id: &CredentialId) -> Result<bool, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query(
            "DELETE FROM credentials WHERE user_id = $1 AND id = $2"
        )
        .bind(user_id.as_str())
        .bind(id.as_str())
        .execute(pool)
        .await?
        .rows_affected()
            > 0))
    }

    pub async fn put_secret(
        &self,
        user_id: &UserId,
        name: &str,
        sealed_value: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query(
                "INSERT INTO secrets (user_id, name, sealed_value, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (user_id, name) DO UPDATE SET sealed_value = excluded.sealed_value,
                        updated_at = excluded.updated_at",
            )
            .bind(user_id.as_str())
            .bind(name)
            .bind(sealed_value)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    pub async fn secrets_of(&self, user_id: &UserId) -> Result<Vec<SecretInfo>, StoreError> {
        with_pool!(&self.backend, |pool| {
            let rows = sqlx::query_as::<_, (String, DateTime<Utc>)>(
                "SELECT name, updated_at FROM secrets WHERE user_id = $1 ORDER BY name",
            )
            .bind(user_id.as_str())
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(|(name, updated_at)| SecretInfo { name, updated_at }).collect())
        })
    }

    /// Every secret of `user_id`, sealed: name and value.
    pub async fn sealed_secrets_of(&self, user_id: &UserId) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query_as::<_, (String, Vec<u8>)>(
            "SELECT name, sealed_value FROM secrets WHERE user_id = $1 ORDER BY name",
        )
        .bind(user_id.as_str())
        .fetch_all(pool)
        .await?))
    }

    /// Whether `user_id` had the secret `name`.
    pub async fn delete_secret(&self, user_id: &UserId, name: &str) -> Result<bool, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query(
            "DELETE FROM secrets WHERE user_id = $1 AND name = $2"
        )
        .bind(user_id.as_str())
        .bind(name)
        .execute(pool)
        .await?
        .rows_affected()
            > 0))
    }
}

impl Store {
    /// `user_id`'s SSH key pair: the public key (OpenSSH format) and the sealed private key.
    pub async fn ssh_key_of(&self, user_id: &UserId) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query_as::<_, (String, Vec<u8>)>(
            "SELECT public_key, sealed_private_key FROM ssh_keys WHERE user_id = $1",
        )
        .bind(user_id.as_str())
        .fetch_optional(pool)
        .await?))
    }

    /// Records `user_id`'s key pair unless they have one already (two first uses at
    /// once keep the first).
    pub async fn insert_ssh_key(
        &self,
        user_id: &UserId,
        public_key: &str,
        sealed_private_key: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query(
                    "INSERT INTO ssh_keys (user_id, public_key, sealed_private_key, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(user_id.as_str())
                .bind(public_key)
                .bind(sealed_private_key)
                .bind(now)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// The `known_hosts` lines recorded for `host` (`name` or `[name]:port`).
    pub async fn known_host(&self, host: &str) -> Result<Option<String>, StoreError> {
        with_pool!(&self.backend, |pool| {
            Ok(sqlx::query_scalar::<_, String>("SELECT lines FROM known_hosts WHERE host = $1")
                .bind(host)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Records `host`'s keys at first use; keys recorded before are never replaced.
    pub async fn record_known_host(
        &self,
        host: &str,
        lines: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query(
                    "INSERT INTO known_hosts (host, lines, first_seen_at) VALUES ($1, $2, $3) ON CONFLICT (host) DO NOTHING",
                )
                .bind(host)
                .bind(lines)
                .bind(now)
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}
