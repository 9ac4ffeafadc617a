//! Accounts: users and their tokens, browser sign-ins (tokens and OpenID Connect),
//! profiles, git credentials, secrets and SSH keys. Secrets and credentials are sealed at
//! rest ([`crate::sealing`]) and opened only for their owner's own git jobs and agents.

mod credentials;
mod sign_ins;
mod ssh;
mod users;

use crate::{Services, sealing};

pub use credentials::OfferedAgent;
pub use sign_ins::{Browser, NewSignIn, OIDC_LOGIN_SECS, OidcIdentity, OidcSignIn, is_sign_in_secret};
pub use ssh::SshPublicKey;
pub use users::{NewToken, hash_token};

crate::service!(Accounts);

/// What the accounts keep in memory: the tokens recently seen valid (by hash), so reads
/// do not each cost a query, and the sealer of secrets at rest.
pub(crate) struct Access {
    tokens: users::TokenCache,
    sealer: sealing::Sealer,
}

impl Access {
    pub(crate) fn new(key: &sealing::SecretKey) -> Access {
        Access { tokens: users::TokenCache::default(), sealer: sealing::Sealer::new(key) }
    }
}

impl Accounts {
    /// Another replica revoked a token or disabled a user: nothing cached is trusted.
    pub(crate) fn forget_cached_access(&self) {
        self.access.tokens.forget_all();
    }

    /// A token revoked or a user disabled: this replica's cache forgets `what` at once,
    /// and the other replicas forget everything they cached.
    fn access_changed(&self, what: impl FnOnce(&users::TokenCache)) {
        what(&self.access.tokens);
        self.replicas().tell(berth_store::Change::Access);
    }
}
