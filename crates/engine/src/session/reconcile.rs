//! After a crash and at shutdown: no session is left live without a sandbox, no sandbox
//! without a session, and no tool call open.

use super::Sessions;
use crate::EngineError;
use berth_core::SessionId;
use berth_core::session::EndReason;

impl Sessions {
    /// At shutdown: every live session of this replica ends (`server_restart`) with its
    /// sandbox powered off, in parallel, so a clean stop leaves no agent running.
    pub(crate) async fn close_every_session(&self) {
        let sessions: Vec<SessionId> = self.owned_here();
        let closes = sessions.iter().map(|id| self.close_here(id, EndReason::ServerRestart));
        for (id, result) in sessions.iter().zip(futures::future::join_all(closes).await) {
            if let Err(error) = result {
                tracing::error!(session_id = %id, error = %error, "cannot close a session at shutdown");
            }
        }
    }

    /// This replica lost its lease: each session it owns is another replica's to end. Its
    /// owner task powers the sandbox off and stops, writing nothing.
    pub(crate) async fn abandon_every_session(&self) {
        for id in self.owned_here() {
            let _ = self.ask(&id, |reply| super::runtime::Command::Abandon { reply }).await;
        }
    }

    /// At start: every session an earlier run of this replica left live ends
    /// (`server_restart`) with its sandbox powered off and its open tool calls closed,
    /// every sandbox of this replica without a live session is powered off, and
    /// workspaces left `active` become `idle`. Other replicas' sessions are theirs.
    pub(crate) async fn reconcile(&self) -> Result<(), EngineError> {
        for session in self.store.claim_own_sessions().await? {
            self.end_unowned(&session, EndReason::ServerRestart).await;
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
