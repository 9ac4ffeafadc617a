//! Users and bearer tokens. Tokens are random, shown once, and stored only as hashes.

use crate::{Engine, EngineError};
use berth_core::{Role, User, UserId, validate};
use chrono::Utc;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// A token as handed to its owner; it is never stored in this form.
#[derive(Debug, Clone)]
pub struct NewToken(pub String);

fn generate_token() -> NewToken {
    let bytes: [u8; 32] = rand::rng().random();
    NewToken(format!("berth_{}", hex::encode(bytes)))
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// How long a token seen to be valid is trusted without asking the store again.
const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// Beyond this many cached tokens the cache starts over (only valid tokens are cached,
/// so only real users fill it).
const TOKEN_CACHE_MAX: usize = 10_000;

/// Valid tokens by hash, with the user and when the store last confirmed them.
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: std::sync::Mutex<HashMap<String, (User, std::time::Instant)>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<User> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (user, confirmed) = entries.get(hash)?;
        (confirmed.elapsed() < TOKEN_CACHE_TTL).then(|| user.clone())
    }

    fn put(&self, hash: String, user: User) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.clear();
        }
        entries.insert(hash, (user, std::time::Instant::now()));
    }
}

impl Engine {
    /// Creates a user with one fresh token.
    pub async fn create_user(&self, name: &str, role: Role) -> Result<(User, NewToken), EngineError> {
        validate::name(name)?;
        let user = User { id: UserId::generate(), name: name.to_owned(), role, created_at: Utc::now() };
        let token = generate_token();
        self.store.insert_user(&user, &hash_token(&token.0)).await?;
        tracing::info!(user_id = %user.id, name = %user.name, role = role.as_str(), "user created");
        Ok((user, token))
    }

    /// `create_user` for an administrator calling it on another's behalf.
    pub async fn create_user_as(
        &self,
        caller: &User,
        name: &str,
        role: Role,
    ) -> Result<(User, NewToken), EngineError> {
        if !caller.is_admin() {
            return Err(EngineError::Forbidden { action: "create users" });
        }
        self.create_user(name, role).await
    }

    pub async fn create_token(&self, user: &User) -> Result<NewToken, EngineError> {
        let token = generate_token();
        self.store.insert_token(&user.id, &hash_token(&token.0), Utc::now()).await?;
        Ok(token)
    }

    /// The user a bearer token belongs to, if any.
    pub async fn authenticate(&self, token: &str) -> Result<Option<User>, EngineError> {
        if token.is_empty() || token.len() > 256 {
            return Ok(None);
        }
        let hash = hash_token(token);
        if let Some(user) = self.tokens.get(&hash) {
            return Ok(Some(user));
        }
        let user = self.store.user_by_token_hash(&hash).await?;
        if let Some(user) = &user {
            self.tokens.put(hash, user.clone());
        }
        Ok(user)
    }

    /// Makes sure someone can administer this installation. On an empty store it creates
    /// the admin `admin` — with the configured `admin_token` if there is one, else a fresh
    /// token, which is returned so it can be printed once. With an `admin_token`
    /// configured and a store that already has users, that token is attached to the first
    /// administrator, so automation can always use the token it set.
    pub async fn ensure_admin(&self) -> Result<Option<(User, NewToken)>, EngineError> {
        let configured = self.config.admin_token.clone();
        if self.store.count_users().await? == 0 {
            let token = configured.map(NewToken).unwrap_or_else(generate_token);
            let user = User {
                id: UserId::generate(),
                name: "admin".into(),
                role: Role::Admin,
                created_at: Utc::now(),
            };
            self.store.insert_user(&user, &hash_token(&token.0)).await?;
            tracing::info!(user_id = %user.id, "first administrator created");
            return Ok(Some((user, token)));
        }
        if let Some(token) = configured
            && self.authenticate(&token).await?.is_none()
            && let Some(admin) = self.store.first_admin().await?
        {
            self.store.insert_token(&admin.id, &hash_token(&token), Utc::now()).await?;
        }
        Ok(None)
    }
}
