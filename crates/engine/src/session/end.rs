//! Ending sessions: closing one (the owner task does it), closing all in parallel with an
//! exact report, leaving, and [`Sessions::finish`] — the body of every ending.

use super::conversation::{close_open_tool_calls, system};
use super::runtime::Command;
use super::{CloseAllReport, CloseAllScope, CloseFailure, Owner, Sessions};
use crate::{EngineError, Services};
use berth_core::event::{EventKind, SystemCode};
use berth_core::session::{CloseAllOutcome, EndReason, Session};
use berth_core::{Event, SessionId, User};
use chrono::Utc;

/// How long a close waits for the sessions of a lost replica to be ended by whichever
/// replica sees the loss first (every replica looks each second).
const LOST_REPLICA_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Whether a session being ended has a sandbox to power off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sandbox {
    /// Its sandbox ran (or may run): it is powered off before the end is recorded.
    Started,
    /// The driver refused to start it: there is nothing to power off.
    NeverStarted,
}

impl Sessions {
    /// Powers the sandbox of `id` off and ends the session with `reason`, wherever its
    /// owner runs. Success when it had already ended. On a driver failure the session
    /// stays live and the failure is returned, so it can be retried.
    pub async fn close_session(&self, id: &SessionId, reason: EndReason) -> Result<Session, EngineError> {
        match self.owner(id).await? {
            Owner::There(peer) => {
                self.replicas().peers().close(&peer, id, reason).await?;
                self.load_session(id).await
            }
            Owner::Here(_) => self.close_here(id, reason).await,
        }
    }

    /// Closes `id` on this replica only: by its owner task; a session live in the store
    /// with no task here is ended here when it is this replica's (before the
    /// reconciliation at start), awaited when its replica is lost (whichever replica sees
    /// that first ends it), refused when another live replica owns it. Never asks another
    /// replica.
    pub async fn close_here(&self, id: &SessionId, reason: EndReason) -> Result<Session, EngineError> {
        if let Some(closed) = self.ask(id, |reply| Command::Close { reason, reply }).await {
            return closed;
        }
        let session = self.load_session(id).await?;
        if !session.state.is_live() {
            return Ok(session);
        }
        if let Some(owner) = self.store.session_owner(id).await?
            && owner.id != self.config.replica.id
        {
            if owner.is_alive(crate::replicas::now_ms()) {
                return Err(EngineError::CloseFailed {
                    session_id: id.clone(),
                    message: format!("replica '{}' owns it", owner.id),
                });
            }
            return self.await_lost_replicas_end(id, &owner.id).await;
        }
        self.end_without_owner(&session, reason, Sandbox::Started).await
    }

    /// A lost replica's session: the first replica to see the loss ends its sessions,
    /// within a second of the lease's expiry.
    async fn await_lost_replicas_end(&self, id: &SessionId, replica: &str) -> Result<Session, EngineError> {
        let mut changes = self.subscribe_session_changes();
        let ended = async {
            loop {
                let session = self.load_session(id).await?;
                if !session.state.is_live() {
                    return Ok::<_, EngineError>(session);
                }
                // Until this session changes (or too much changed to tell).
                loop {
                    match changes.recv().await {
                        Ok(changed) if &changed.id == id => break,
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await;
                        }
                    }
                }
            }
        };
        match tokio::time::timeout(LOST_REPLICA_WAIT, ended).await {
            Ok(ended) => ended,
            Err(_) => Err(EngineError::CloseFailed {
                session_id: id.clone(),
                message: format!("replica '{replica}' stopped answering; its sessions end shortly"),
            }),
        }
    }

    /// Ends a live session this replica holds no task for (taken over, left by an
    /// earlier run): [`Sessions::finish`], then told.
    pub(crate) async fn end_without_owner(
        &self,
        session: &Session,
        reason: EndReason,
        sandbox: Sandbox,
    ) -> Result<Session, EngineError> {
        let ended = self.finish(session, reason, sandbox, |_| {}).await?;
        self.publish(&ended);
        Ok(ended)
    }

    /// [`Sessions::end_without_owner`] for background work, which can only log a failure:
    /// the session then stays live, for a close, a close-all or the next start to retry.
    pub(crate) async fn end_unowned(&self, session: &Session, reason: EndReason) {
        if let Err(error) = self.end_without_owner(session, reason, Sandbox::Started).await {
            tracing::error!(session_id = %session.id, error = %error, "cannot end a session without its owner");
        }
    }

    /// The body of every ending — a close, the owner's own end, a power on that failed,
    /// a take-over, the reconciliation at start. One rule: the end is recorded only once
    /// the sandbox is off. When powering it off fails, the session stays live and the
    /// failure is returned, so it can be retried (nothing is marked ended while its agent
    /// may still run). Then every open tool call is closed (each closing event handed to
    /// `told`), and the end stored. The caller tells the world.
    pub(crate) async fn finish(
        &self,
        session: &Session,
        reason: EndReason,
        sandbox: Sandbox,
        told: impl Fn(Event),
    ) -> Result<Session, EngineError> {
        if sandbox == Sandbox::Started
            && let Err(error) = self.driver.power_off(&session.id).await
        {
            metrics::counter!("berth_sandbox_failures_total", "operation" => "power_off").increment(1);
            metrics::counter!("berth_session_closes_total", "outcome" => "failed").increment(1);
            tracing::error!(session_id = %session.id, error = %error, "sandbox failed to power off");
            return Err(EngineError::CloseFailed {
                session_id: session.id.clone(),
                message: error.to_string(),
            });
        }
        // The sandbox is off, and the shells of its terminals with it.
        self.terminals().end_session(&session.id);
        // Before the end is recorded: a crash in between leaves a live session, which the
        // next start reconciles (closing what is still open), never an ended one with a
        // tool call left running.
        for event in close_open_tool_calls(&self.store, session).await? {
            told(event);
        }
        // The end and `session_closed`: one commit (none when it had ended already).
        let closed =
            system(SystemCode::SessionClosed, serde_json::json!({ "reason": reason.as_str() })).to_string();
        let ended = self.store.end_session_with_event(
            &session.workspace_id,
            &session.id,
            reason,
            Utc::now(),
            (EventKind::System.as_str(), &closed),
        );
        if let Some(event) = ended.await? {
            told(event);
        }
        metrics::counter!("berth_session_closes_total", "outcome" => "closed", "reason" => reason.as_str())
            .increment(1);
        tracing::info!(session_id = %session.id, reason = reason.as_str(), "session ended");
        self.load_session(&session.id).await
    }

    /// Closes one session: the caller's own (`closed`), or anyone's for an administrator
    /// (`admin`). Idempotent on an ended session.
    pub async fn close(&self, caller: &User, id: &str) -> Result<Session, EngineError> {
        let session = self.session(caller, id).await?;
        let reason = if session.user_id == caller.id { EndReason::Closed } else { EndReason::Admin };
        self.close_session(&session.id, reason).await
    }

    /// Closes every live session in `scope` in parallel and says exactly which closed and
    /// which failed; then, when asked, opens `retry_open` again.
    pub async fn close_all(
        &self,
        caller: &User,
        scope: CloseAllScope,
        retry_open: Option<&str>,
    ) -> Result<CloseAllReport, EngineError> {
        let (sessions, reason) = match scope {
            CloseAllScope::Own => (self.store.live_sessions_of(&caller.id).await?, EndReason::ClosedAll),
            CloseAllScope::Installation => (self.all_live_sessions(caller).await?, EndReason::Admin),
        };
        let attempts = sessions.iter().map(|session| async move {
            let reason = if session.user_id == caller.id { EndReason::ClosedAll } else { reason };
            (session.id.clone(), self.close_session(&session.id, reason).await)
        });
        let mut closed = Vec::new();
        let mut failed = Vec::new();
        for (id, result) in futures::future::join_all(attempts).await {
            match result {
                Ok(_) => closed.push(id),
                Err(error) => failed.push(CloseFailure {
                    session_id: id,
                    code: error.code(),
                    message: error.to_string(),
                }),
            }
        }
        let outcome = CloseAllOutcome::from_counts(closed.len(), failed.len());
        let retried_open = match retry_open {
            Some(workspace) => Some(self.open(caller, workspace).await),
            None => None,
        };
        tracing::info!(closed = closed.len(), failed = failed.len(), outcome = outcome.as_str(), "close-all");
        Ok(CloseAllReport { outcome, closed, failed, retried_open })
    }

    /// The person left (the leave signal). No run in progress: the session ends
    /// (`left`). A run in progress: it waits `reconnect_grace` for them.
    pub async fn leave(&self, caller: &User, id: &str) -> Result<Session, EngineError> {
        let session = self.own_session(caller, id).await?;
        match self.ask(&session.id, |reply| Command::Leave { reply }).await {
            Some(left) => left,
            None => self.load_session(&session.id).await,
        }
    }
}
