//! Users and bearer tokens. Tokens are random, shown once, and stored only as hashes;
//! they are named, may expire, are revoked one by one (at once: the cache of valid
//! tokens forgets them), and stop when an administrator disables their user.

use super::Accounts;
use crate::{EngineError, Services};
use berth_core::{Account, EndReason, Role, TokenId, TokenInfo, User, UserId, validate};
use chrono::{DateTime, Utc};
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

/// How much of a token its listing shows: `berth_` and six of its 64 hex digits.
const TOKEN_PREFIX_LEN: usize = 12;
/// The longest token name.
pub const MAX_TOKEN_NAME_LEN: usize = 64;
/// The longest lifetime a token may be given: ten years.
pub const MAX_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);

/// The record of a new token `secret` of `user_id`.
fn token_record(
    user_id: &UserId,
    name: &str,
    secret: &NewToken,
    expires_at: Option<DateTime<Utc>>,
) -> TokenInfo {
    TokenInfo {
        id: TokenId::generate(),
        user_id: user_id.clone(),
        name: name.to_owned(),
        prefix: secret.0.chars().take(TOKEN_PREFIX_LEN).collect(),
        created_at: Utc::now(),
        last_used_at: None,
        expires_at,
    }
}

/// How long a token seen to be valid is trusted without asking the store again.
const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// Beyond this many cached tokens the cache starts over (only valid tokens are cached,
/// so only real users fill it).
const TOKEN_CACHE_MAX: usize = 10_000;

/// A valid token: its user, when the store last confirmed it, when it expires.
type CachedToken = (User, std::time::Instant, Option<DateTime<Utc>>);

/// Valid tokens by hash. A revocation or a disabled user removes entries at once, so the
/// cache only saves queries and never keeps a token alive.
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: std::sync::Mutex<HashMap<String, CachedToken>>,
}

impl TokenCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedToken>> {
        // A map of cached answers stays consistent whatever panicked while holding it.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, hash: &str) -> Option<User> {
        let entries = self.lock();
        let (user, confirmed, expires_at) = entries.get(hash)?;
        let expired = expires_at.is_some_and(|expires_at| expires_at <= Utc::now());
        (confirmed.elapsed() < TOKEN_CACHE_TTL && !expired).then(|| user.clone())
    }

    fn put(&self, hash: String, user: User, expires_at: Option<DateTime<Utc>>) {
        let mut entries = self.lock();
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.clear();
        }
        entries.insert(hash, (user, std::time::Instant::now(), expires_at));
    }

    pub(crate) fn forget(&self, hash: &str) {
        self.lock().remove(hash);
    }

    pub(crate) fn forget_user(&self, user_id: &UserId) {
        self.lock().retain(|_, (user, _, _)| &user.id != user_id);
    }

    /// Another replica revoked a token or disabled a user: nothing cached is trusted.
    pub(crate) fn forget_all(&self) {
        self.lock().clear();
    }
}

impl Accounts {
    /// Creates a user with one fresh token.
    pub async fn create_user(&self, name: &str, role: Role) -> Result<(User, NewToken), EngineError> {
        validate::name(name)?;
        let user = User { id: UserId::generate(), name: name.to_owned(), role, created_at: Utc::now() };
        let token = generate_token();
        let record = token_record(&user.id, "first token", &token, None);
        self.store.insert_user(&user, &record, &hash_token(&token.0)).await?;
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

    /// A new token of `user`, named (`token` when no name is given) and expiring after
    /// `lifetime` if one is given.
    pub async fn create_token(
        &self,
        user: &User,
        name: Option<&str>,
        lifetime: Option<std::time::Duration>,
    ) -> Result<(TokenInfo, NewToken), EngineError> {
        let name = name.map(str::trim).filter(|name| !name.is_empty()).unwrap_or("token");
        if name.chars().count() > MAX_TOKEN_NAME_LEN || name.chars().any(char::is_control) {
            return Err(EngineError::InvalidTokenName { max_chars: MAX_TOKEN_NAME_LEN });
        }
        let expires_at = match lifetime {
            Some(lifetime) if lifetime.is_zero() || lifetime > MAX_TOKEN_LIFETIME => {
                return Err(EngineError::InvalidExpiry { max_days: MAX_TOKEN_LIFETIME.as_secs() / 86_400 });
            }
            Some(lifetime) => chrono::Duration::from_std(lifetime).ok().map(|lifetime| Utc::now() + lifetime),
            None => None,
        };
        let token = generate_token();
        let record = token_record(&user.id, name, &token, expires_at);
        self.store.insert_token(&record, &hash_token(&token.0)).await?;
        tracing::info!(user_id = %user.id, token_id = %record.id, "token created");
        Ok((record, token))
    }

    /// The caller's tokens, never their secrets.
    pub async fn tokens(&self, user: &User) -> Result<Vec<TokenInfo>, EngineError> {
        Ok(self.store.tokens_of(&user.id).await?)
    }

    /// Revokes one of the caller's tokens; it stops working at once.
    pub async fn revoke_token(&self, user: &User, id: &str) -> Result<(), EngineError> {
        let not_found = || EngineError::NotFound { what: "token" };
        let id = TokenId::parse(id).ok_or_else(not_found)?;
        self.store.delete_token(&user.id, &id).await?.ok_or_else(not_found)?;
        // The browser sign-ins made from it end with it: nothing cached is trusted.
        self.access_changed(|tokens| tokens.forget_all());
        tracing::info!(user_id = %user.id, token_id = %id, "token revoked");
        Ok(())
    }

    /// What the caller is called and reached at.
    pub async fn profile(&self, user: &User) -> Result<berth_core::Profile, EngineError> {
        self.store.profile(&user.id).await?.ok_or(EngineError::NotFound { what: "user" })
    }

    /// Changes the caller's display name or email (`None` keeps it, empty clears it). A
    /// person whose provider sets them cannot (`managed_by_provider`).
    pub async fn update_profile(
        &self,
        user: &User,
        display_name: Option<&str>,
        email: Option<&str>,
    ) -> Result<berth_core::Profile, EngineError> {
        let current = self.profile(user).await?;
        if current.from_provider {
            if let Some(field) = [(display_name, "display name"), (email, "email")]
                .into_iter()
                .find_map(|(given, field)| given.is_some().then_some(field))
            {
                return Err(EngineError::ManagedByProvider { field });
            }
            return Ok(current);
        }
        let display_name = display_name.unwrap_or(&current.display_name);
        let email = email.unwrap_or(&current.email);
        validate::display_name(display_name)?;
        validate::email(email)?;
        self.store.update_profile(&user.id, display_name, email).await?;
        tracing::info!(user_id = %user.id, "profile changed");
        self.profile(user).await
    }

    /// Every user of the installation (administrators only).
    pub async fn accounts(&self, caller: &User) -> Result<Vec<Account>, EngineError> {
        if !caller.is_admin() {
            return Err(EngineError::Forbidden { action: "list users" });
        }
        Ok(self.store.accounts().await?)
    }

    /// Changes another user's role or disables them (administrators only). A disabled
    /// user's tokens stop at once and their live sessions close (`admin`).
    pub async fn update_account(
        &self,
        caller: &User,
        id: &str,
        disabled: Option<bool>,
        role: Option<Role>,
    ) -> Result<Account, EngineError> {
        if !caller.is_admin() {
            return Err(EngineError::Forbidden { action: "change users" });
        }
        let not_found = || EngineError::NotFound { what: "user" };
        let id = UserId::parse(id).ok_or_else(not_found)?;
        if id == caller.id {
            return Err(EngineError::CannotChangeYourself);
        }
        let accounts = self.store.accounts().await?;
        let current = accounts.into_iter().find(|account| account.user.id == id).ok_or_else(not_found)?;
        let disabled = disabled.unwrap_or(current.disabled);
        let role = role.unwrap_or(current.user.role);
        if !self.store.update_account(&id, role, disabled).await? {
            return Err(not_found());
        }
        self.access_changed(|tokens| tokens.forget_user(&id));
        if disabled {
            for session in self.store.live_sessions_of(&id).await? {
                if let Err(error) = self.sessions().close_session(&session.id, EndReason::Admin).await {
                    tracing::warn!(session_id = %session.id, error = %error, "a disabled user's session did not close");
                }
            }
        }
        tracing::info!(user_id = %id, disabled, role = role.as_str(), "user changed");
        Ok(Account { user: User { role, ..current.user }, disabled, ..current })
    }

    /// The user a bearer token or a browser sign-in's secret belongs to, if it is valid
    /// now.
    pub async fn authenticate(&self, token: &str) -> Result<Option<User>, EngineError> {
        if token.is_empty() || token.len() > 256 {
            return Ok(None);
        }
        self.authenticate_hash(&hash_token(token)).await
    }

    /// Whether `token` (or a browser sign-in's secret) is refused because its user is
    /// disabled: asked only once it was refused.
    pub async fn is_disabled(&self, token: &str) -> Result<bool, EngineError> {
        Ok(token.len() <= 256 && self.store.is_disabled_users(&hash_token(token)).await?)
    }

    /// [`Accounts::authenticate`] for a token or sign-in known by its hash (a preview pass
    /// names the credential it came from that way).
    pub(crate) async fn authenticate_hash(&self, hash: &str) -> Result<Option<User>, EngineError> {
        if let Some(user) = self.access.tokens.get(hash) {
            return Ok(Some(user));
        }
        let now = Utc::now();
        let found = match self.store.authenticate(hash, now).await? {
            Some(found) => Some(found),
            None => self.store.authenticate_sign_in(hash, now).await?.map(|(user, ends)| (user, Some(ends))),
        };
        let Some((user, expires_at)) = found else { return Ok(None) };
        self.access.tokens.put(hash.to_owned(), user.clone(), expires_at);
        Ok(Some(user))
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
            let record = token_record(&user.id, "first token", &token, None);
            self.store.insert_user(&user, &record, &hash_token(&token.0)).await?;
            tracing::info!(user_id = %user.id, "first administrator created");
            return Ok(Some((user, token)));
        }
        if let Some(token) = configured
            && self.authenticate(&token).await?.is_none()
            && let Some(admin) = self.store.first_admin().await?
        {
            let token = NewToken(token);
            let record = token_record(&admin.id, "configured admin token", &token, None);
            self.store.insert_token(&record, &hash_token(&token.0)).await?;
        }
        Ok(None)
    }
}
