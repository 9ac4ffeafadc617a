//! Sessions: opening (new, resumed, replacing, refused), the task that owns each live
//! session, ending one or all, and the reconciliation at start. The decisions come from
//! `berth_core::session`; this module applies them so that limits hold under concurrency:
//!
//! - opens of one user are serialised by that user's lock, so two of them never both
//!   see room under the per-user limit;
//! - the installation's sandbox slots are counted in memory and taken atomically before
//!   a sandbox powers on, and given back exactly once, when its session ends;
//! - everything that changes a live session goes through its owner task
//!   ([`runtime::SessionActor`]) as a command, so it is done once, in order.
//!
//! `open.rs` opens and powers on (all or nothing), `end.rs` closes, leaves and ends,
//! `reconcile.rs` cleans up after a crash and at shutdown.

mod end;
mod open;
mod reconcile;
pub(crate) mod runtime;

use crate::{Engine, EngineError};
use berth_core::session::{CloseAllOutcome, Session};
use berth_core::{SessionId, User, UserId, WorkspaceId};
use runtime::{Command, SessionHandle};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};

pub(crate) use open::PowerOnGuard;

/// The hint given with `controllers_busy`: sessions end at human pace, so a few seconds.
pub const CONTROLLERS_BUSY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What an open did.
#[derive(Debug, Clone)]
pub enum OpenOutcome {
    Opened { session: Session, replaced: Vec<SessionId> },
    Resumed { session: Session },
}

impl OpenOutcome {
    pub fn session(&self) -> &Session {
        match self {
            OpenOutcome::Opened { session, .. } | OpenOutcome::Resumed { session } => session,
        }
    }
}

/// One session that a close-all could not close, and why.
#[derive(Debug, Clone)]
pub struct CloseFailure {
    pub session_id: SessionId,
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug)]
pub struct CloseAllReport {
    pub outcome: CloseAllOutcome,
    pub closed: Vec<SessionId>,
    pub failed: Vec<CloseFailure>,
    /// Present when a relaunch was asked for: how it went.
    pub retried_open: Option<Result<OpenOutcome, EngineError>>,
}

/// Whose sessions a close-all closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAllScope {
    /// The caller's own live sessions.
    Own,
    /// Every live session of the installation (administrators).
    Installation,
}

/// A sandbox slot held by a live (or powering-on) session, and the way to its owner.
pub(crate) struct Slot {
    user_id: UserId,
    workspace_id: WorkspaceId,
    handle: SessionHandle,
}

/// The in-memory side of the sessions: slots and the users' open locks.
#[derive(Default)]
pub(crate) struct SessionRegistry {
    pub(crate) live: HashMap<SessionId, Slot>,
    user_locks: HashMap<UserId, Arc<AsyncMutex<()>>>,
}

impl Engine {
    pub(crate) fn registry(&self) -> std::sync::MutexGuard<'_, SessionRegistry> {
        // Every critical section below leaves the registry consistent before anything can
        // panic, so a poisoned lock is used as it is.
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn user_lock(&self, user: &UserId) -> Arc<AsyncMutex<()>> {
        Arc::clone(self.registry().user_locks.entry(user.clone()).or_default())
    }

    /// Sandboxes powered on or powering on now, each holding one slot.
    pub fn running_sandbox_count(&self) -> u32 {
        u32::try_from(self.registry().live.len()).unwrap_or(u32::MAX)
    }

    /// Takes a sandbox slot for `session` if one is free; the commands sent to it wait
    /// in the returned channel until its owner task runs.
    fn take_slot(&self, session: &Session) -> Option<mpsc::UnboundedReceiver<Command>> {
        let mut registry = self.registry();
        if registry.live.len() >= self.config.limits.running_sandboxes as usize {
            return None;
        }
        let (commands, received) = mpsc::unbounded_channel();
        let handle = SessionHandle { commands, reconnecting: Arc::new(AtomicBool::new(false)) };
        let slot =
            Slot { user_id: session.user_id.clone(), workspace_id: session.workspace_id.clone(), handle };
        registry.live.insert(session.id.clone(), slot);
        Some(received)
    }

    /// Gives the slot of `session` back; a no-op the second time.
    pub(crate) fn release_slot(&self, session: &SessionId) {
        self.registry().live.remove(session);
    }

    pub(crate) fn handle(&self, session: &SessionId) -> Option<SessionHandle> {
        self.registry().live.get(session).map(|slot| slot.handle.clone())
    }

    /// Marks the caller's live session on `workspace` as being reconnected to,
    /// synchronously, before anything is awaited: a reconnect that has begun must not
    /// lose the race against the grace window's expiry.
    pub(crate) fn hold_grace_for_reconnect(&self, user: &UserId, workspace: &WorkspaceId) {
        let registry = self.registry();
        if let Some(slot) =
            registry.live.values().find(|slot| &slot.user_id == user && &slot.workspace_id == workspace)
        {
            slot.handle.reconnecting.store(true, Ordering::SeqCst);
        }
    }

    /// Sends a command to the owner of live session `id` and awaits its reply. `None`
    /// when the session has no owner (it ended, or never was live here).
    pub(crate) async fn ask<T>(
        &self,
        id: &SessionId,
        command: impl FnOnce(oneshot::Sender<Result<T, EngineError>>) -> Command,
    ) -> Option<Result<T, EngineError>> {
        let handle = self.handle(id)?;
        let (reply, answer) = oneshot::channel();
        handle.commands.send(command(reply)).ok()?;
        // No answer: the task ended (the session ended, or never got live).
        answer.await.ok()
    }

    /// Attaches a live-channel connection to the owner of `id`.
    pub(crate) async fn attach(&self, id: &SessionId) -> Option<Result<runtime::Attached, EngineError>> {
        let commands = self.handle(id)?.commands;
        self.ask(id, |reply| Command::Attach { commands, reply }).await
    }

    pub fn subscribe_session_changes(&self) -> tokio::sync::broadcast::Receiver<Session> {
        self.session_changes.subscribe()
    }

    /// Tells the dashboards and whoever follows sessions that `session` changed (its
    /// owner tells its live clients itself).
    pub(crate) fn publish_session(&self, session: &Session) {
        let _ = self.session_changes.send(session.clone());
        self.tell_replicas(berth_store::Change::Session(session.id.clone()));
        self.notify_workspace_changed(&session.workspace_id);
    }

    pub(crate) async fn load_session(&self, id: &SessionId) -> Result<Session, EngineError> {
        self.store.session(id).await?.ok_or(EngineError::NotFound { what: "session" })
    }

    /// One session the caller may see: their own, or any for an administrator.
    pub async fn session(&self, caller: &User, id: &str) -> Result<Session, EngineError> {
        let id = SessionId::parse(id).ok_or(EngineError::NotFound { what: "session" })?;
        match self.store.session(&id).await? {
            Some(session) if session.user_id == caller.id || caller.is_admin() => Ok(session),
            _ => Err(EngineError::NotFound { what: "session" }),
        }
    }

    /// One of the caller's own sessions (leave, reconnect: never someone else's).
    pub(crate) async fn own_session(&self, caller: &User, id: &str) -> Result<Session, EngineError> {
        let session = self.session(caller, id).await?;
        if session.user_id != caller.id {
            return Err(EngineError::NotFound { what: "session" });
        }
        Ok(session)
    }

    pub async fn live_sessions(&self, caller: &User) -> Result<Vec<Session>, EngineError> {
        Ok(self.store.live_sessions_of(&caller.id).await?)
    }

    pub async fn all_live_sessions(&self, caller: &User) -> Result<Vec<Session>, EngineError> {
        if !caller.is_admin() {
            return Err(EngineError::Forbidden { action: "see every session" });
        }
        Ok(self.store.live_sessions().await?)
    }

    /// Every live session of the installation with its user's and workspace's names
    /// (administrators only).
    pub async fn all_live_sessions_named(
        &self,
        caller: &User,
    ) -> Result<Vec<(Session, Option<(String, String)>)>, EngineError> {
        let sessions = self.all_live_sessions(caller).await?;
        let mut names: HashMap<_, _> = self
            .store
            .live_session_names()
            .await?
            .into_iter()
            .map(|(id, user, workspace)| (id, (user, workspace)))
            .collect();
        Ok(sessions
            .into_iter()
            .map(|session| {
                let named = names.remove(&session.id);
                (session, named)
            })
            .collect())
    }

    /// The live session of a workspace, for showing on the workspace.
    pub async fn live_session_of_workspace(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<Option<Session>, EngineError> {
        Ok(self.store.live_session_of_workspace(workspace).await?)
    }

    /// Marks whether the agent of live session `id` is working; leaving keys off it.
    pub async fn set_agent_running(&self, id: &SessionId, running: bool) -> Result<(), EngineError> {
        match self.ask(id, |reply| Command::MarkRunning { running, reply }).await {
            Some(result) => result,
            None => Err(EngineError::SessionNotActive),
        }
    }
}
