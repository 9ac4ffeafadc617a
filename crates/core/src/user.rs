//! People who use berth and what they may do.

use crate::ids::{CredentialId, SignInId, TokenId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// What a person is called and reached at: what their commits carry. A person who signs
/// in through an OpenID Connect provider gets both from it (`from_provider`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub display_name: String,
    pub email: String,
    /// Set by an OpenID Connect provider at each sign-in; not the person's to change here.
    pub from_provider: bool,
}

impl Profile {
    /// The name and email berth's commits and the agent's carry: the display name, else
    /// the user name; the email, else an address under `users.berth.invalid` that says
    /// which user it was (and reaches nobody).
    pub fn git_identity(&self, user: &User) -> (String, String) {
        let name = if self.display_name.is_empty() { user.name.clone() } else { self.display_name.clone() };
        let email = if self.email.is_empty() {
            format!("{}@users.berth.invalid", user.name)
        } else {
            self.email.clone()
        };
        (name, email)
    }
}

/// A user as an administrator sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: User,
    /// A disabled user's tokens do not authenticate.
    pub disabled: bool,
    /// They sign in through the OpenID Connect provider (else with login links and tokens).
    pub from_provider: bool,
}

/// How a browser signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInVia {
    /// A login link's token (the sign-in ends with the token).
    Token,
    /// An OpenID Connect provider.
    Oidc,
}

impl SignInVia {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInVia::Token => "token",
            SignInVia::Oidc => "oidc",
        }
    }

    pub fn parse(value: &str) -> Option<SignInVia> {
        match value {
            "token" => Some(SignInVia::Token),
            "oidc" => Some(SignInVia::Oidc),
            _ => None,
        }
    }
}

/// A browser's sign-in: its own secret (in the cookie, stored hashed), never a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInInfo {
    pub id: SignInId,
    pub user_id: UserId,
    pub via: SignInVia,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// It ends then at the latest (and earlier with the token it was made from).
    pub expires_at: DateTime<Utc>,
    /// The browser, as it named itself (cut short).
    pub user_agent: String,
    /// Where it signed in from.
    pub address: String,
}

/// What is known of a token besides its secret, which is never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: TokenId,
    pub user_id: UserId,
    pub name: String,
    /// The token's first characters, so its owner can tell which one it is.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl TokenInfo {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|expires_at| expires_at <= now)
    }
}

/// A git credential of a user for one host, as it is shown: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialInfo {
    pub id: CredentialId,
    /// `github.com`, `127.0.0.1:8080`.
    pub host: String,
    pub username: String,
    pub created_at: DateTime<Utc>,
}

/// A secret of a user, as it is shown: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    pub updated_at: DateTime<Utc>,
}
