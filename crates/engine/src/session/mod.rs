//! [`Sessions`]: opening (new, resumed, replacing, refused), the task that owns each live
//! session and where it runs ([`Sessions::owner`]), what people do with a live session,
//! ending one or all, and the reconciliation at start. The decisions come from
//! `berth_core::session`; this module applies them so that limits hold under concurrency:
//!
//! - opens of one user are serialised by that user's lock, so two of them never both
//!   see room under the per-user limit;
//! - the installation's sandbox slots are counted in memory and taken atomically before
//!   a sandbox powers on, and given back exactly once, when its [`SlotGuard`] drops;
//! - everything that changes a live session goes through its owner task
//!   ([`runtime::SessionActor`]) as a command, so it is done once, in order.
//!
//! `open.rs` opens and powers on (all or nothing), `live.rs` is what people do with a
//! live session, `end.rs` closes, leaves and ends (one `finish`), `reconcile.rs` cleans
//! up after a crash and at shutdown, `conversation.rs` is the events' plain functions.

mod conversation;
mod end;
mod live;
mod open;
pub mod phases;
mod reconcile;
pub(crate) mod runtime;

use crate::replicas::Peer;
use crate::{EngineError, Services};
use berth_core::session::{CloseAllOutcome, Session};
use berth_core::{SessionId, User, UserId, WorkspaceId};
use runtime::{Command, SessionHandle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};

pub use conversation::LiveMessage;
pub use live::{LiveAttachment, LiveSubscription};
pub(crate) use open::{PowerOnGuard, install_hint};

crate::service!(Sessions);

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

/// Where a live session's owner task runs, seen from this replica.
pub enum Owner {
    /// Here: its task (`None` when it has none here: not live, or left by an earlier run
    /// of this replica).
    Here(Option<SessionHandle>),
    /// On another live replica.
    There(Peer),
}

/// A sandbox slot held by a live (or powering-on) session, and the way to its owner.
struct Slot {
    user_id: UserId,
    workspace_id: WorkspaceId,
    handle: SessionHandle,
}

/// The in-memory side of the sessions: slots, the users' open locks, and the feed of
/// session changes.
pub(crate) struct LiveRegistry {
    slots: Mutex<Slots>,
    changes: tokio::sync::broadcast::Sender<Session>,
}

#[derive(Default)]
struct Slots {
    live: HashMap<SessionId, Slot>,
    user_locks: HashMap<UserId, Arc<AsyncMutex<()>>>,
}

impl Default for LiveRegistry {
    fn default() -> LiveRegistry {
        LiveRegistry { slots: Mutex::default(), changes: tokio::sync::broadcast::channel(4096).0 }
    }
}

impl LiveRegistry {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        // Every critical section below leaves the registry consistent before anything can
        // panic, so a poisoned lock is used as it is.
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A sandbox slot taken for one session: given back when dropped — by whoever holds it
/// last (the power on that failed, or the session's owner task as it ends). The one
/// place a slot is given back.
pub(crate) struct SlotGuard {
    sessions: Sessions,
    id: SessionId,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.sessions.live.slots().live.remove(&self.id);
    }
}

impl Sessions {
    fn user_lock(&self, user: &UserId) -> Arc<AsyncMutex<()>> {
        Arc::clone(self.live.slots().user_locks.entry(user.clone()).or_default())
    }

    /// Sandboxes powered on or powering on now, each holding one slot.
    pub fn running_sandbox_count(&self) -> u32 {
        u32::try_from(self.live.slots().live.len()).unwrap_or(u32::MAX)
    }

    /// Takes a sandbox slot for `session` if one is free; the commands sent to it wait
    /// in the returned channel until its owner task runs.
    fn take_slot(&self, session: &Session) -> Option<(SlotGuard, mpsc::UnboundedReceiver<Command>)> {
        let mut slots = self.live.slots();
        if slots.live.len() >= self.config.limits.running_sandboxes as usize {
            return None;
        }
        let (commands, received) = mpsc::unbounded_channel();
        let slot = Slot {
            user_id: session.user_id.clone(),
            workspace_id: session.workspace_id.clone(),
            handle: SessionHandle { commands },
        };
        slots.live.insert(session.id.clone(), slot);
        Some((SlotGuard { sessions: self.clone(), id: session.id.clone() }, received))
    }

    fn handle(&self, session: &SessionId) -> Option<SessionHandle> {
        self.live.slots().live.get(session).map(|slot| slot.handle.clone())
    }

    /// Whether the owner task of session `id` runs here.
    pub(crate) fn runs_here(&self, id: &SessionId) -> bool {
        self.handle(id).is_some()
    }

    /// The live sessions whose owner task runs here.
    fn owned_here(&self) -> Vec<SessionId> {
        self.live.slots().live.keys().cloned().collect()
    }

    /// Where the owner of session `id` runs: here (with its task, if it has one here), or
    /// on another live replica.
    pub async fn owner(&self, id: &SessionId) -> Result<Owner, EngineError> {
        if let Some(handle) = self.handle(id) {
            return Ok(Owner::Here(Some(handle)));
        }
        Ok(match self.replicas().peer_owning(id).await? {
            Some(peer) => Owner::There(peer),
            None => Owner::Here(None),
        })
    }

    /// Where the owner of workspace `id`'s live session runs (here when it has none).
    pub async fn owner_of_workspace(&self, id: &WorkspaceId) -> Result<Owner, EngineError> {
        let here = self
            .live
            .slots()
            .live
            .values()
            .find(|slot| &slot.workspace_id == id)
            .map(|slot| slot.handle.clone());
        if let Some(handle) = here {
            return Ok(Owner::Here(Some(handle)));
        }
        if !self.replicas().has_peers() {
            return Ok(Owner::Here(None));
        }
        match self.store.live_session_of_workspace(id).await? {
            Some(session) => self.owner(&session.id).await,
            None => Ok(Owner::Here(None)),
        }
    }

    /// Tells the owner of the caller's live session on `workspace` that they are coming
    /// back, synchronously, before anything is awaited: a reconnect that has begun must
    /// not lose the race against the grace window's expiry.
    fn hold_grace_for_reconnect(&self, user: &UserId, workspace: &WorkspaceId) {
        let slots = self.live.slots();
        if let Some(slot) =
            slots.live.values().find(|slot| &slot.user_id == user && &slot.workspace_id == workspace)
        {
            let _ = slot.handle.commands.send(Command::Reconnecting);
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

    pub fn subscribe_session_changes(&self) -> tokio::sync::broadcast::Receiver<Session> {
        self.live.changes.subscribe()
    }

    /// Tells the dashboards and whoever follows sessions that `session` changed (its
    /// owner tells its live clients itself).
    pub(crate) fn publish(&self, session: &Session) {
        let _ = self.live.changes.send(session.clone());
        self.replicas().tell(berth_store::Change::Session(session.id.clone()));
        self.workspaces().changed(&session.workspace_id);
    }

    /// Another replica changed session `id`: this replica's followers hear of it.
    pub(crate) async fn heard_of(&self, id: &SessionId) {
        if let Ok(session) = self.load_session(id).await {
            let _ = self.live.changes.send(session.clone());
            self.workspaces().heard_of(session.workspace_id);
        }
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
