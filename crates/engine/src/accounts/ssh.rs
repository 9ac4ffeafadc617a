//! SSH for git: one key pair per user, made by berth on first use (Ed25519, the private
//! half sealed like a secret), and the host keys of the servers this installation reached,
//! recorded at first use and never replaced — a server whose key changed is refused.

use super::Accounts;
use crate::EngineError;
use berth_core::{User, UserId, WorkspaceId};
use berth_git::{SshCredential, SshTarget};
use chrono::Utc;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};
use std::path::Path;

/// A user's public key, as they add it to GitHub or GitLab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshPublicKey {
    /// OpenSSH format: `ssh-ed25519 AAAA… berth:<user>`.
    pub public_key: String,
    /// `SHA256:…`.
    pub fingerprint: String,
}

fn private_key_context(owner: &UserId) -> String {
    format!("ssh-key:{owner}")
}

fn key_error(error: ssh_key::Error) -> EngineError {
    EngineError::Io { path: "ssh-key".into(), source: std::io::Error::other(error.to_string()) }
}

impl Accounts {
    /// The caller's SSH public key, made on first use.
    pub async fn ssh_public_key(&self, caller: &User) -> Result<SshPublicKey, EngineError> {
        let (public_key, _) = self.ssh_key_pair(&caller.id, &caller.name).await?;
        let parsed = PublicKey::from_openssh(&public_key).map_err(key_error)?;
        Ok(SshPublicKey { fingerprint: parsed.fingerprint(HashAlg::Sha256).to_string(), public_key })
    }

    /// `owner`'s key pair (public, private in OpenSSH format), made when they have none.
    async fn ssh_key_pair(&self, owner: &UserId, name: &str) -> Result<(String, String), EngineError> {
        if self.store.ssh_key_of(owner).await?.is_none() {
            let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(key_error)?;
            key.set_comment(format!("berth:{name}"));
            let private = key.to_openssh(LineEnding::LF).map_err(key_error)?;
            let public = key.public_key().to_openssh().map_err(key_error)?;
            let sealed = self.access.sealer.seal(&private_key_context(owner), private.as_bytes());
            self.store.insert_ssh_key(owner, &public, &sealed, Utc::now()).await?;
            tracing::info!(user_id = %owner, "SSH key made");
        }
        let (public, sealed) =
            self.store.ssh_key_of(owner).await?.ok_or(EngineError::NotFound { what: "SSH key" })?;
        let private = self.access.sealer.open(&private_key_context(owner), &sealed).map_err(|error| {
            EngineError::Io { path: "ssh-key".into(), source: std::io::Error::other(error.to_string()) }
        })?;
        Ok((public, String::from_utf8_lossy(&private).into_owned()))
    }

    /// What ssh inside a sandbox needs for `owner`'s SSH repository `repo`: their key and
    /// the server's recorded host keys. With `first_use` (a clone: a job there may ask
    /// the server, from an empty checkout), an unknown server's keys are recorded first.
    pub(crate) async fn ssh_credential(
        &self,
        owner: &UserId,
        repo: &str,
        first_use: Option<(&WorkspaceId, &Path)>,
    ) -> Result<Option<SshCredential>, EngineError> {
        let Some(target) = berth_git::ssh_target(repo) else { return Ok(None) };
        let user = self.store.user(owner).await?.ok_or(EngineError::NotFound { what: "user" })?;
        let (_, private_key) = self.ssh_key_pair(owner, &user.name).await?;
        let known_hosts = self.known_hosts(&target, first_use).await?;
        Ok(Some(SshCredential { private_key, known_hosts }))
    }

    async fn known_hosts(
        &self,
        target: &SshTarget,
        first_use: Option<(&WorkspaceId, &Path)>,
    ) -> Result<String, EngineError> {
        let name = target.known_hosts_name();
        if let Some(lines) = self.store.known_host(&name).await? {
            return Ok(lines);
        }
        let Some((workspace_id, dir)) = first_use else { return Ok(String::new()) };
        let scanned = berth_git::keyscan(&*self.driver, workspace_id, dir, target, self.config.clone_timeout)
            .await
            .map_err(|source| EngineError::Git { id: workspace_id.clone(), source })?;
        self.store.record_known_host(&name, &scanned, Utc::now()).await?;
        tracing::info!(host = %name, "SSH host keys recorded at first use");
        // Whoever recorded first wins: read back what is kept.
        Ok(self.store.known_host(&name).await?.unwrap_or(scanned))
    }
}
