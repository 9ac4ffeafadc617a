//! Users' git credentials and secrets: set, listed (never their secret parts), removed;
//! sealed at rest ([`crate::sealing`]); opened only to hand them to that user's own git
//! jobs and agents, privately ([`berth_sandbox::SandboxSpec::secret_env`]).

use super::Accounts;
use crate::EngineError;
use berth_core::validate;
use berth_core::{CredentialId, CredentialInfo, SecretInfo, User, UserId, Workspace};
use berth_git::GitCredential;
use chrono::Utc;

fn secret_context(owner: &UserId, name: &str) -> String {
    format!("secret:{owner}:{name}")
}

fn credential_context(owner: &UserId, host: &str) -> String {
    format!("credential:{owner}:{host}")
}

impl Accounts {
    /// Stores the caller's credential for `host`, replacing the one they had for it.
    pub async fn add_credential(
        &self,
        caller: &User,
        host: &str,
        username: &str,
        secret: &str,
    ) -> Result<CredentialInfo, EngineError> {
        validate::credential_host(host)?;
        validate::credential_part("username", username)?;
        validate::credential_part("secret", secret)?;
        let info = CredentialInfo {
            id: CredentialId::generate(),
            host: host.to_owned(),
            username: username.to_owned(),
            created_at: Utc::now(),
        };
        let sealed = self.access.sealer.seal(&credential_context(&caller.id, host), secret.as_bytes());
        self.store.put_credential(&caller.id, &info, &sealed).await?;
        tracing::info!(user_id = %caller.id, host, credential_id = %info.id, "credential stored");
        Ok(info)
    }

    pub async fn credentials(&self, caller: &User) -> Result<Vec<CredentialInfo>, EngineError> {
        Ok(self.store.credentials_of(&caller.id).await?)
    }

    pub async fn remove_credential(&self, caller: &User, id: &str) -> Result<(), EngineError> {
        let not_found = EngineError::NotFound { what: "credential" };
        let id = CredentialId::parse(id).ok_or(EngineError::NotFound { what: "credential" })?;
        if !self.store.delete_credential(&caller.id, &id).await? {
            return Err(not_found);
        }
        Ok(())
    }

    /// Sets the caller's secret `name`; their agents have it from their next power on.
    pub async fn set_secret(&self, caller: &User, name: &str, value: &str) -> Result<(), EngineError> {
        validate::secret_name(name)?;
        validate::secret_value(value)?;
        let sealed = self.access.sealer.seal(&secret_context(&caller.id, name), value.as_bytes());
        self.store.put_secret(&caller.id, name, &sealed, Utc::now()).await?;
        tracing::info!(user_id = %caller.id, name, "secret set");
        Ok(())
    }

    pub async fn secrets(&self, caller: &User) -> Result<Vec<SecretInfo>, EngineError> {
        Ok(self.store.secrets_of(&caller.id).await?)
    }

    pub async fn remove_secret(&self, caller: &User, name: &str) -> Result<(), EngineError> {
        if validate::secret_name(name).is_err() || !self.store.delete_secret(&caller.id, name).await? {
            return Err(EngineError::NotFound { what: "secret" });
        }
        Ok(())
    }

    /// `owner`'s credential for the host of `repo`, when it is an `http(s)://` URL and
    /// they have one.
    pub(crate) async fn git_credential(
        &self,
        owner: &UserId,
        repo: &str,
    ) -> Result<Option<GitCredential>, EngineError> {
        let Some(origin) = berth_git::http_origin(repo) else { return Ok(None) };
        let host = origin.host.as_str();
        let Some(sealed) = self.store.credential_for(owner, host).await? else { return Ok(None) };
        match self.access.sealer.open(&credential_context(owner, host), &sealed.sealed_secret) {
            Ok(secret) => Ok(Some(GitCredential {
                origin: origin.url(),
                username: sealed.info.username,
                secret: String::from_utf8_lossy(&secret).into_owned(),
            })),
            Err(error) => {
                tracing::warn!(user_id = %owner, host, error = %error, "a stored credential does not open; skipped");
                Ok(None)
            }
        }
    }

    /// What `owner`'s agent in `workspace` gets privately: their secrets, then what lets
    /// git use their credential for the workspace's repository.
    pub(crate) async fn agent_private_env(
        &self,
        owner: &UserId,
        workspace: &Workspace,
    ) -> Result<Vec<(String, String)>, EngineError> {
        let mut env = Vec::new();
        for (name, sealed) in self.store.sealed_secrets_of(owner).await? {
            match self.access.sealer.open(&secret_context(owner, &name), &sealed) {
                Ok(value) => env.push((name, String::from_utf8_lossy(&value).into_owned())),
                Err(error) => {
                    tracing::warn!(user_id = %owner, name, error = %error, "a stored secret does not open; skipped");
                }
            }
        }
        if let Some(credential) = self.git_credential(owner, &workspace.repo).await? {
            env.extend(credential.agent_environment());
        }
        if let Some(ssh) = self.ssh_credential(owner, &workspace.repo, None).await? {
            env.extend(ssh.agent_environment());
        }
        Ok(env)
    }

    /// The names of the secrets `owner` has set.
    pub(crate) async fn secret_names(&self, owner: &UserId) -> Result<Vec<String>, EngineError> {
        Ok(self.store.secrets_of(owner).await?.into_iter().map(|secret| secret.name).collect())
    }

    /// The agents this installation offers — the built-in one first — each with the
    /// secrets it needs that the caller has not set.
    pub async fn agents(&self, caller: &User) -> Result<Vec<OfferedAgent>, EngineError> {
        let have = self.secret_names(&caller.id).await?;
        let builtin = OfferedAgent {
            name: crate::BUILTIN_AGENT.to_owned(),
            description: "berth's own agent: runs the commands you approve, offline".to_owned(),
            needs: Vec::new(),
            missing: Vec::new(),
            settings: Vec::new(),
            installed: true,
            install: None,
        };
        let agents_dir = self.config.agents_dir();
        let offered = self.config.agents.iter().map(|entry| {
            let installed = entry.command_line(&agents_dir).is_some();
            OfferedAgent {
                name: entry.name.clone(),
                description: entry.description.clone(),
                needs: entry.needs.clone(),
                missing: entry.needs.iter().filter(|needed| !have.contains(needed)).cloned().collect(),
                settings: entry.settings.clone(),
                installed,
                install: (!installed).then(|| crate::session::install_hint(entry)),
            }
        });
        Ok(std::iter::once(builtin).chain(offered).collect())
    }
}

/// An agent of the catalogue as a user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedAgent {
    pub name: String,
    pub description: String,
    pub needs: Vec<String>,
    /// What of `needs` the user has not set.
    pub missing: Vec<String>,
    /// The settings it reads from its environment (its provider's address, its model).
    pub settings: Vec<String>,
    /// Whether it can start on this server.
    pub installed: bool,
    /// How it gets installed, when it is not.
    pub install: Option<String>,
}
