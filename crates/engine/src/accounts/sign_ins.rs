//! Browser sign-ins. A login link's token is traded for a sign-in of the browser's own: a
//! random secret in its cookie, stored hashed, listed on the account page with when and
//! from where, ended one by one. Signing out ends that sign-in only — never the token, so
//! the login link printed at the first start still works afterwards. A sign-in ends
//! with the token it was made from (revoked or expired) and with its user (disabled).

use super::Accounts;
use super::users::hash_token;
use crate::EngineError;
use berth_core::{Role, SignInId, SignInInfo, SignInVia, User, UserId};
use berth_store::PendingOidcLogin;
use chrono::Utc;
use rand::Rng;

/// How a sign-in's secret starts, so the cookie holds nothing a token could be.
pub const SIGN_IN_PREFIX: &str = "berth_signin_";
/// The most of a browser's name kept with its sign-in.
const MAX_USER_AGENT_CHARS: usize = 200;

/// Where a browser signs in from, as the request says.
#[derive(Debug, Clone, Copy, Default)]
pub struct Browser<'a> {
    pub user_agent: &'a str,
    pub address: &'a str,
}

/// A sign-in's secret, for the browser's cookie only, and how long it lasts.
#[derive(Debug)]
pub struct NewSignIn {
    pub secret: String,
    pub max_age: std::time::Duration,
}

/// A provider's display name made to fit berth's rules (no `<`, `>`, control characters;
/// at most 100 characters).
fn fitting_display_name(name: &str) -> String {
    let kept: String =
        name.chars().filter(|c| !c.is_control() && !matches!(c, '<' | '>')).take(100).collect();
    kept.trim().to_owned()
}

/// Whether a cookie's value is a sign-in's secret at all (a token never is).
pub fn is_sign_in_secret(value: &str) -> bool {
    value.starts_with(SIGN_IN_PREFIX)
}

/// What an OpenID Connect provider said of a person, once the ID token's signature,
/// issuer, audience, expiry and nonce were checked.
#[derive(Debug, Clone, Default)]
pub struct OidcIdentity {
    pub issuer: String,
    pub subject: String,
    /// The claim a new user's name is made from (`auth.oidc.username_claim`).
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
}

/// How an OpenID Connect sign-in ended.
#[derive(Debug)]
pub enum OidcSignIn {
    SignedIn(User, NewSignIn),
    /// The installation does not let this person in; the reason is for them to read.
    Refused(String),
}

/// How long a sign-in through a provider may take, from start to callback.
pub const OIDC_LOGIN_SECS: i64 = 600;

impl Accounts {
    /// Records an OpenID Connect sign-in under way (its `state`, the browser binding's
    /// hash, PKCE verifier, nonce and `next`).
    pub async fn begin_oidc_login(&self, login: &PendingOidcLogin) -> Result<(), EngineError> {
        Ok(self.store.insert_oidc_login(login).await?)
    }

    /// Takes the sign-in under way with `state`, once, if the browser that came back holds
    /// the binding secret of the one that started it.
    pub async fn take_oidc_login(
        &self,
        state: &str,
        binding: Option<&str>,
    ) -> Result<Option<PendingOidcLogin>, EngineError> {
        let Some(login) = self.store.take_oidc_login(state, Utc::now().timestamp()).await? else {
            return Ok(None);
        };
        Ok(binding.is_some_and(|binding| hash_token(binding) == login.binding_hash).then_some(login))
    }

    /// Signs a browser in as the person a provider vouched for: the same user as before
    /// for the same (issuer, subject) — name, email and role updated from the claims — or
    /// a new member (an administrator in `admin_groups`) with a name of their own.
    pub async fn sign_in_with_oidc(
        &self,
        identity: &OidcIdentity,
        browser: Browser<'_>,
    ) -> Result<OidcSignIn, EngineError> {
        let Some(settings) = &self.config.oidc else {
            return Ok(OidcSignIn::Refused("single sign-on is not configured".into()));
        };
        let policy = berth_core::oidc::Policy {
            allowed_groups: &settings.allowed_groups,
            allowed_email_domains: &settings.allowed_email_domains,
            admin_groups: &settings.admin_groups,
        };
        let role = match berth_core::oidc::admit(policy, identity.email.as_deref(), &identity.groups) {
            Ok(role) => role,
            Err(reason) => return Ok(OidcSignIn::Refused(reason)),
        };
        let display_name = fitting_display_name(identity.display_name.as_deref().unwrap_or_default());
        let email = identity
            .email
            .as_deref()
            .filter(|email| berth_core::validate::email(email).is_ok())
            .unwrap_or_default()
            .to_owned();
        let user = match self.store.user_by_oidc(&identity.issuer, &identity.subject).await? {
            Some((_, true)) => return Ok(OidcSignIn::Refused("your berth account is disabled".into())),
            Some((user, false)) => {
                // The groups decide the role only where the installation names admin
                // groups; otherwise the role an administrator gave stays.
                let role = if settings.admin_groups.is_empty() { user.role } else { role };
                self.store.update_oidc_user(&user.id, role, &display_name, &email).await?;
                self.access.tokens.forget_user(&user.id);
                User { role, ..user }
            }
            None => self.create_oidc_user(identity, role, &display_name, &email).await?,
        };
        let ends = Utc::now() + self.cookie_lifetime();
        let made = self.make_sign_in(&user, SignInVia::Oidc, ends, None, browser).await?;
        tracing::info!(user_id = %user.id, "signed in through OpenID Connect");
        Ok(OidcSignIn::SignedIn(user, made))
    }

    /// A new user for a provider's person: the first free name made from the claims.
    async fn create_oidc_user(
        &self,
        identity: &OidcIdentity,
        role: Role,
        display_name: &str,
        email: &str,
    ) -> Result<User, EngineError> {
        let claim =
            identity.username.as_deref().or(identity.email.as_deref()).unwrap_or(identity.subject.as_str());
        for name in berth_core::oidc::username_candidates(claim).take(100) {
            let user = User { id: UserId::generate(), name, role, created_at: Utc::now() };
            match self
                .store
                .insert_oidc_user(&user, &identity.issuer, &identity.subject, display_name, email)
                .await
            {
                Ok(()) => {
                    tracing::info!(user_id = %user.id, name = %user.name, role = role.as_str(), "user created by single sign-on");
                    return Ok(user);
                }
                Err(berth_store::StoreError::NameTaken { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(EngineError::NameTaken { name: claim.chars().take(64).collect() })
    }

    /// Trades a login link's `token` for a browser sign-in of its user; `None` when the
    /// token is not valid now. The sign-in lasts `auth.cookie_ttl`, and never beyond the
    /// token's own expiry.
    pub async fn sign_in_with_token(
        &self,
        token: &str,
        browser: Browser<'_>,
    ) -> Result<Option<(User, NewSignIn)>, EngineError> {
        if token.is_empty() || token.len() > 256 || is_sign_in_secret(token) {
            return Ok(None);
        }
        let token_hash = hash_token(token);
        let now = Utc::now();
        let Some((user, token_expires_at)) = self.store.authenticate(&token_hash, now).await? else {
            return Ok(None);
        };
        let longest = now + self.cookie_lifetime();
        let expires_at = token_expires_at.map_or(longest, |token_expiry| token_expiry.min(longest));
        let made = self.make_sign_in(&user, SignInVia::Token, expires_at, Some(&token_hash), browser).await?;
        tracing::info!(user_id = %user.id, "signed in with a token");
        Ok(Some((user, made)))
    }

    /// How long a sign-in lasts at most (`auth.cookie_ttl`).
    fn cookie_lifetime(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.cookie_ttl).unwrap_or(chrono::Duration::days(30))
    }

    /// Records a new sign-in of `user` until `ends` (made from the token hashing to
    /// `token_hash`, if any) and returns its secret, for the browser's cookie only.
    async fn make_sign_in(
        &self,
        user: &User,
        via: SignInVia,
        ends: chrono::DateTime<Utc>,
        token_hash: Option<&str>,
        browser: Browser<'_>,
    ) -> Result<NewSignIn, EngineError> {
        let now = Utc::now();
        let secret = format!("{SIGN_IN_PREFIX}{}", hex::encode(rand::rng().random::<[u8; 32]>()));
        let sign_in = SignInInfo {
            id: SignInId::generate(),
            user_id: user.id.clone(),
            via,
            created_at: now,
            last_seen_at: now,
            expires_at: ends,
            user_agent: browser
                .user_agent
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_USER_AGENT_CHARS)
                .collect(),
            address: browser.address.chars().take(64).collect(),
        };
        self.store.insert_sign_in(&sign_in, &hash_token(&secret), token_hash).await?;
        tracing::debug!(user_id = %user.id, sign_in_id = %sign_in.id, via = via.as_str(), "sign-in made");
        // Whole seconds, rounded up: the cookie lives as long as the sign-in.
        let seconds = ((ends - now).num_milliseconds().max(0) as u64).div_ceil(1000);
        Ok(NewSignIn { secret, max_age: std::time::Duration::from_secs(seconds) })
    }

    /// The user a login link's token belongs to, if it is a valid token (a sign-in's
    /// secret is not one).
    pub async fn token_user(&self, token: &str) -> Result<Option<User>, EngineError> {
        if is_sign_in_secret(token) {
            return Ok(None);
        }
        self.authenticate(token).await
    }

    /// Ends the sign-in whose secret the browser holds (signing out); its token stays.
    pub async fn sign_out(&self, secret: &str) -> Result<(), EngineError> {
        if !is_sign_in_secret(secret) {
            return Ok(());
        }
        let hash = hash_token(secret);
        self.store.delete_sign_in_by_hash(&hash).await?;
        self.access_changed(|tokens| tokens.forget(&hash));
        Ok(())
    }

    /// The caller's sign-ins, each with whether it is the one `current` (a cookie's
    /// secret) names.
    pub async fn sign_ins(
        &self,
        user: &User,
        current: Option<&str>,
    ) -> Result<Vec<(SignInInfo, bool)>, EngineError> {
        let current = current.filter(|secret| is_sign_in_secret(secret)).map(hash_token);
        let sign_ins = self.store.sign_ins_of(&user.id, Utc::now()).await?;
        Ok(sign_ins
            .into_iter()
            .map(|(info, hash)| (info, current.as_deref() == Some(hash.as_str())))
            .collect())
    }

    /// Ends one of the caller's sign-ins; it stops working at once.
    pub async fn end_sign_in(&self, user: &User, id: &str) -> Result<(), EngineError> {
        let not_found = || EngineError::NotFound { what: "sign-in" };
        let id = SignInId::parse(id).ok_or_else(not_found)?;
        let hash = self.store.delete_sign_in(&user.id, &id).await?.ok_or_else(not_found)?;
        self.access_changed(|tokens| tokens.forget(&hash));
        tracing::info!(user_id = %user.id, sign_in_id = %id, "sign-in ended");
        Ok(())
    }
}
