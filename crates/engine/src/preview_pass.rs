//! Passes to a workspace's preview host. berth's login token never reaches a preview host:
//! berth's origin hands its signed-in owner a **ticket** (a minute, one use) in a redirect
//! to the preview host, which trades it for a **cookie** of its own (an hour), scoped to
//! that host. Both are signed by the engine (HMAC-SHA256) and name the workspace, so a
//! pass for one workspace opens no other; both name the login token they came from (its
//! hash), so revoking that token, signing out or disabling the user ends them at once.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a ticket may wait in its redirect.
pub const TICKET_LIFETIME_SECS: i64 = 60;
/// How long a preview cookie lasts before the preview is opened from berth again.
pub const COOKIE_LIFETIME_SECS: i64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    Ticket,
    Cookie,
}

impl PassKind {
    fn tag(self) -> &'static str {
        match self {
            PassKind::Ticket => "t",
            PassKind::Cookie => "c",
        }
    }
}

/// What a pass says once its signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub kind: PassKind,
    pub workspace: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Random, so a ticket is used once.
    pub nonce: String,
    /// The hash of the login token the pass was made from.
    pub token_hash: String,
}

/// The engine's signing key, derived from `secrets.key` (so every replica checks the
/// passes any of them made).
pub struct PassKey([u8; 32]);

impl PassKey {
    #[cfg(test)]
    fn generate() -> PassKey {
        PassKey(rand::random())
    }

    /// A key every replica sharing `secrets.key` makes alike, so a pass made by one
    /// opens on all.
    pub fn from_bytes(key: [u8; 32]) -> PassKey {
        PassKey(key)
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(payload.as_bytes());
        mac
    }

    /// `kind.workspace.expires.nonce.token_hash.signature`: only characters a cookie value
    /// and a query string carry as they are.
    pub fn seal(&self, pass: &Pass) -> String {
        let payload = format!(
            "{}.{}.{}.{}.{}",
            pass.kind.tag(),
            pass.workspace,
            pass.expires_at,
            pass.nonce,
            pass.token_hash
        );
        let signature = hex::encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// The pass in `text` if this key signed it, it is of `kind`, and it has not expired
    /// at `now` (Unix seconds).
    pub fn open(&self, text: &str, kind: PassKind, now: i64) -> Option<Pass> {
        if text.len() > 512 {
            return None;
        }
        let (payload, signature) = text.rsplit_once('.')?;
        let signature = hex::decode(signature).ok()?;
        self.mac(payload).verify_slice(&signature).ok()?;
        let mut parts = payload.split('.');
        let (tag, workspace, expires_at, nonce, token_hash) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || tag != kind.tag() {
            return None;
        }
        let expires_at: i64 = expires_at.parse().ok()?;
        (now < expires_at).then(|| Pass {
            kind,
            workspace: workspace.to_owned(),
            expires_at,
            nonce: nonce.to_owned(),
            token_hash: token_hash.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(kind: PassKind) -> Pass {
        Pass {
            kind,
            workspace: "w_0123456789abcdefghjk".into(),
            expires_at: 1000,
            nonce: "00ff".into(),
            token_hash: "ab".repeat(32),
        }
    }

    #[test]
    fn a_pass_opens_with_its_key_until_it_expires() {
        let key = PassKey::generate();
        let sealed = key.seal(&pass(PassKind::Ticket));
        assert_eq!(key.open(&sealed, PassKind::Ticket, 999), Some(pass(PassKind::Ticket)));
        assert_eq!(key.open(&sealed, PassKind::Ticket, 1000), None, "expired");
        assert_eq!(key.open(&sealed, PassKind::Cookie, 999), None, "a ticket is no cookie");
        assert_eq!(PassKey::generate().open(&sealed, PassKind::Ticket, 999), None, "another key");
    }

    #[test]
    fn a_changed_pass_does_not_open() {
        let key = PassKey::generate();
        let sealed = key.seal(&pass(PassKind::Cookie));
        let other_workspace = sealed.replacen("w_0123456789abcdefghjk", "w_0123456789abcdefghjm", 1);
        let later = sealed.replacen(".1000.", ".9999.", 1);
        for forged in [other_workspace, later, format!("{sealed}0"), String::new(), "c.x".into()] {
            assert_eq!(key.open(&forged, PassKind::Cookie, 0), None, "{forged}");
        }
    }
}
