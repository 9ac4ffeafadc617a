//! The live preview: a connection to a port inside the running sandbox of one of the
//! caller's workspaces. Only the owner gets one; the port must be a valid number in the
//! installation's allow-list; a workspace without a live session has no preview.

use crate::{Engine, EngineError};
use berth_core::User;
use berth_sandbox::SandboxError;

impl Engine {
    /// Connects to `port` (as written in the preview address) in the sandbox of the
    /// caller's workspace `workspace_id`.
    pub async fn preview_connect(
        &self,
        caller: &User,
        workspace_id: &str,
        port: &str,
    ) -> Result<tokio::net::TcpStream, EngineError> {
        let workspace = self.workspace(caller, workspace_id).await?;
        let port = berth_core::preview::port(port)
            .ok_or_else(|| EngineError::InvalidPort { text: port.chars().take(16).collect() })?;
        if !self.config.preview_ports.allows(port) {
            return Err(EngineError::PortNotAllowed { port });
        }
        let session =
            self.live_session_of_workspace(&workspace.id).await?.ok_or(EngineError::NoLiveSession)?;
        match self.driver.connect(&session.id, port).await {
            Ok(stream) => Ok(stream),
            Err(SandboxError::NotRunning { .. }) => Err(EngineError::NoLiveSession),
            Err(SandboxError::Connect { source, .. }) => {
                Err(EngineError::PreviewUnreachable { port, message: source.to_string() })
            }
            Err(source) => Err(EngineError::Sandbox { source }),
        }
    }
}
