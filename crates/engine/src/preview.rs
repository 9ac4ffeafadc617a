//! The live preview: a connection to a port inside the running sandbox of one of the
//! caller's workspaces. Only the owner gets one; the port must be a valid number in the
//! installation's allow-list; a workspace without a live session has no preview. And the
//! passes to a workspace's preview host ([`crate::preview_pass`]): a ticket handed out on
//! berth's origin, traded once on the preview host for that host's own cookie.

use crate::accounts::hash_token;
use crate::preview_pass::{COOKIE_LIFETIME_SECS, Pass, PassKey, PassKind, TICKET_LIFETIME_SECS};
use crate::session::Owner;
use crate::{EngineError, Services};
use berth_core::{User, WorkspaceId};
use berth_sandbox::SandboxError;

crate::service!(Previews);

/// The engine's preview passes: the signing key (the tickets already used are in the
/// store).
pub(crate) struct PreviewPasses {
    key: PassKey,
}

impl PreviewPasses {
    pub(crate) fn new(key: PassKey) -> PreviewPasses {
        PreviewPasses { key }
    }
}

const EXPIRED_TICKET: &str =
    "this preview link has expired or was used already; open the preview from berth again";
const NO_PREVIEW_PASS: &str =
    "this preview needs a pass from berth; open it from the workspace page (or sign in to berth again)";

impl Previews {
    /// The ports something listens on inside the caller's live session `session_id` that
    /// the preview may reach (the allow-list applied), for the preview pane to offer.
    pub async fn ports(&self, caller: &User, session_id: &str) -> Result<Vec<u16>, EngineError> {
        let session = self.sessions().own_session(caller, session_id).await?;
        if !session.state.is_live() {
            return Err(EngineError::NoLiveSession);
        }
        match self.driver.listening_ports(&session.id).await {
            Ok(ports) => {
                Ok(ports.into_iter().filter(|&port| self.config.preview_ports.allows(port)).collect())
            }
            Err(SandboxError::NotRunning { .. }) => Err(EngineError::NoLiveSession),
            Err(SandboxError::Unavailable { what }) => Err(EngineError::PortsUnavailable { what }),
            Err(source) => Err(EngineError::Sandbox { source }),
        }
    }

    /// A ticket to `workspace_id`'s preview host for the owner signed in with `token`:
    /// a minute long, good once, for that workspace only.
    pub async fn ticket(&self, token: &str, workspace_id: &str) -> Result<String, EngineError> {
        let user = self
            .accounts()
            .authenticate(token)
            .await?
            .ok_or(EngineError::Unauthorized { message: NO_PREVIEW_PASS })?;
        let workspace = self.workspaces().workspace(&user, workspace_id).await?;
        Ok(self.passes.key.seal(&Pass {
            kind: PassKind::Ticket,
            workspace: workspace.id.to_string(),
            expires_at: now() + TICKET_LIFETIME_SECS,
            nonce: hex::encode(rand::random::<[u8; 16]>()),
            token_hash: hash_token(token),
        }))
    }

    /// Trades a ticket, on the preview host of `workspace`, for that host's cookie and
    /// its lifetime in seconds.
    pub async fn redeem(&self, ticket: &str, workspace: &WorkspaceId) -> Result<(String, i64), EngineError> {
        let now = now();
        let expired = || EngineError::Unauthorized { message: EXPIRED_TICKET };
        let pass = self
            .passes
            .key
            .open(ticket, PassKind::Ticket, now)
            .filter(|pass| pass.workspace == workspace.as_str())
            .ok_or_else(expired)?;
        // Once for the whole installation: every replica records it in the store.
        if !self.store.redeem_ticket(&pass.nonce, pass.expires_at, now).await? {
            return Err(expired());
        }
        self.pass_holder(&pass).await?;
        let cookie = self.passes.key.seal(&Pass {
            kind: PassKind::Cookie,
            expires_at: now + COOKIE_LIFETIME_SECS,
            ..pass
        });
        Ok((cookie, COOKIE_LIFETIME_SECS))
    }

    /// The owner a preview cookie stands for on `workspace`'s preview host: the cookie
    /// must be this engine's, for this workspace, unexpired, and its login token still
    /// valid.
    pub async fn caller(&self, cookie: &str, workspace: &WorkspaceId) -> Result<User, EngineError> {
        let pass = self
            .passes
            .key
            .open(cookie, PassKind::Cookie, now())
            .filter(|pass| pass.workspace == workspace.as_str())
            .ok_or(EngineError::Unauthorized { message: NO_PREVIEW_PASS })?;
        self.pass_holder(&pass).await
    }

    /// The user whose login token a pass names, while that token is valid.
    async fn pass_holder(&self, pass: &Pass) -> Result<User, EngineError> {
        self.accounts()
            .authenticate_hash(&pass.token_hash)
            .await?
            .ok_or(EngineError::Unauthorized { message: NO_PREVIEW_PASS })
    }

    /// Connects to `port` (as written in the preview address) in the sandbox of the
    /// caller's workspace `workspace_id`.
    pub async fn connect(
        &self,
        caller: &User,
        workspace_id: &str,
        port: &str,
    ) -> Result<crate::PeerStream, EngineError> {
        let workspace = self.workspaces().workspace(caller, workspace_id).await?;
        let port = berth_core::preview::port(port)
            .ok_or_else(|| EngineError::InvalidPort { text: port.chars().take(16).collect() })?;
        if !self.config.preview_ports.allows(port) {
            return Err(EngineError::PortNotAllowed { port });
        }
        let session = self
            .sessions()
            .live_session_of_workspace(&workspace.id)
            .await?
            .ok_or(EngineError::NoLiveSession)?;
        match self.sessions().owner(&session.id).await? {
            Owner::There(peer) => self.replicas().peers().tunnel(&peer, &session.id, port).await,
            Owner::Here(_) => Ok(Box::new(self.connect_here(&session.id, port).await?)),
        }
    }

    /// Connects to `port` in the sandbox of live session `id`, which this replica owns.
    pub async fn connect_here(
        &self,
        id: &berth_core::SessionId,
        port: u16,
    ) -> Result<tokio::net::TcpStream, EngineError> {
        if !self.sessions().runs_here(id) {
            return Err(EngineError::NoLiveSession);
        }
        match self.driver.connect(id, port).await {
            Ok(stream) => Ok(stream),
            Err(SandboxError::NotRunning { .. }) => Err(EngineError::NoLiveSession),
            Err(SandboxError::Connect { source, .. }) => {
                Err(EngineError::PreviewUnreachable { port, message: source.to_string() })
            }
            Err(source) => Err(EngineError::Sandbox { source }),
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
