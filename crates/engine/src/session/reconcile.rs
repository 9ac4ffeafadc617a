//! After a crash and at shutdown: no session is left live without a sandbox, no sandbox
//! without a session, and no tool call open.

use crate::{Engine, EngineError};
use berth_core::SessionId;
use berth_core::session::EndReason;
use chrono::Utc;

impl Engine {
    /// At shutdown: every live session of this replica ends (`server_restart`) with its
    /// sandbox powered off, in parallel, so a clean stop leaves no agent running.
    pub(crate) async fn close_every_session(&self) {
        let sessions: Vec<SessionId> = self.registry().live.keys().cloned().collect();
        let closes = sessions.iter().map(|id| self.close_session(id, EndReason::ServerRestart));
        for (id, result) in sessions.iter().zip(futures::future::join_all(closes).await) {
            if let Err(error) = result {
                tracing::error!(session_id = %id, error = %error, "cannot close a session at shutdown");
            }
        }
    }

    /// At start: every session an earlier run of this replica left live ends
    /// (`server_restart`) with its sandbox powered off and its open tool calls closed,
    /// every sandbox of this replica without a live session is powered off, and
    /// workspaces left `active` become `idle`. Other replicas' sessions are theirs.
    pub(crate) async fn reconcile_sessions(&self) -> Result<(), EngineError> {
        for session in self.store.claim_own_sessions().await? {
            if let Err(error) = self.driver.power_off(&session.id).await {
                tracing::error!(session_id = %session.id, error = %error, "cannot power off a sandbox left running");
            }
            self.close_open_tool_calls(&session).await?;
            self.store.end_session(&session.id, EndReason::ServerRestart, Utc::now()).await?;
            tracing::warn!(session_id = %session.id, "session ended by the server restart");
        }
        for sandbox in self.driver.running().await.map_err(|e| EngineError::Sandbox { source: e })? {
            tracing::warn!(session_id = %sandbox.session_id, "powering off a sandbox with no session");
            if let Err(error) = self.driver.power_off(&sandbox.session_id).await {
                tracing::error!(session_id = %sandbox.session_id, error = %error, "cannot power off an orphan sandbox");
            }
        }
        self.store.idle_workspaces_without_sessions().await?;
        Ok(())
    }
}
