//! The session manager: opening (new, resumed, replacing, refused), closing one or all,
//! leaving with a reconnect grace window, sandboxes that die on their own, and the
//! reconciliation at start. The decisions come from `berth_core::session`; this file
//! applies them so that limits hold under concurrency:
//!
//! - opens of one user are serialised by that user's lock, so two of them never both
//!   see room under the per-user limit;
//! - the installation's sandbox slots are counted in memory and taken atomically before
//!   a sandbox powers on, and given back exactly once, when its session ends;
//! - every change to one session (close, leave, expiry, crash) holds that session's
//!   operation lock, so a sandbox is powered off and its session ended once.

use crate::{Engine, EngineError};
use berth_core::session::{
    CloseAllOutcome, EndReason, LeaveOutcome, LiveSessionSummary, OpenDecision, Session, SessionState,
    decide_leave, decide_open,
};
use berth_core::{SessionId, User, UserId, WorkspaceId};
use berth_sandbox::{AgentIo, SandboxSpec};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::AbortHandle;

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

/// What the manager keeps in memory about a live session.
pub(crate) struct LiveRuntime {
    user_id: UserId,
    workspace_id: WorkspaceId,
    /// Held by whoever changes this session's state or powers its sandbox.
    op: Arc<AsyncMutex<()>>,
    grace_timer: Option<AbortHandle>,
    /// The agent protocol connection, once the sandbox runs.
    pub(crate) agent: Option<Arc<berth_agent::client::AgentConnection>>,
    /// Everything live-channel clients should see, as it happens.
    /// Made when the first live-channel connection attaches and dropped with the last
    /// one: a session nobody watches keeps no buffer. Messages are shared, not copied.
    pub(crate) live: Option<tokio::sync::broadcast::Sender<Arc<crate::conversation::LiveMessage>>>,
    /// Questions the agent waits on, by question id.
    pub(crate) questions: HashMap<String, crate::conversation::PendingQuestion>,
    /// Live-channel connections attached now; the last one to go counts as leaving.
    pub(crate) connections: usize,
    /// A prompt was sent and its turn has not ended.
    pub(crate) turn_active: bool,
    /// The prompts of the last second, for `limits.prompts_per_second`.
    pub(crate) prompts: berth_core::PromptWindow,
}

/// The in-memory side of the manager.
#[derive(Default)]
pub(crate) struct SessionRegistry {
    pub(crate) live: HashMap<SessionId, LiveRuntime>,
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

    pub(crate) fn op_lock(&self, session: &SessionId) -> Option<Arc<AsyncMutex<()>>> {
        self.registry().live.get(session).map(|runtime| Arc::clone(&runtime.op))
    }

    /// Sandboxes powered on or powering on now, each holding one slot.
    pub fn running_sandbox_count(&self) -> u32 {
        u32::try_from(self.registry().live.len()).unwrap_or(u32::MAX)
    }

    /// Takes a sandbox slot for `session` if one is free.
    fn take_slot(&self, session: &Session) -> bool {
        let mut registry = self.registry();
        if registry.live.len() >= self.config.limits.running_sandboxes as usize {
            return false;
        }
        registry.live.insert(
            session.id.clone(),
            LiveRuntime {
                user_id: session.user_id.clone(),
                workspace_id: session.workspace_id.clone(),
                op: Arc::new(AsyncMutex::new(())),
                grace_timer: None,
                agent: None,
                live: None,
                questions: HashMap::new(),
                connections: 0,
                turn_active: false,
                prompts: berth_core::PromptWindow::default(),
            },
        );
        true
    }

    /// Gives the slot of `session` back and stops its grace timer; a no-op the second time.
    fn release_slot(&self, session: &SessionId) {
        if let Some(runtime) = self.registry().live.remove(session)
            && let Some(timer) = runtime.grace_timer
        {
            timer.abort();
        }
    }

    /// Stops the grace timer of the caller's live session on `workspace`, synchronously,
    /// before anything is awaited: a reconnect that has begun must not lose the race
    /// against the expiry.
    pub(crate) fn hold_grace_for_reconnect(&self, user: &UserId, workspace: &WorkspaceId) {
        let mut registry = self.registry();
        let runtime = registry.live.values_mut().find(|r| &r.user_id == user && &r.workspace_id == workspace);
        if let Some(timer) = runtime.and_then(|runtime| runtime.grace_timer.take()) {
            timer.abort();
        }
    }

    pub fn subscribe_session_changes(&self) -> tokio::sync::broadcast::Receiver<Session> {
        self.session_changes.subscribe()
    }

    pub(crate) fn publish_session(&self, session: &Session) {
        let _ = self.session_changes.send(session.clone());
        self.broadcast_live(&session.id, crate::conversation::LiveMessage::Session(session.clone()));
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
        let mut names: std::collections::HashMap<_, _> = self
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

    /// Opens the caller's workspace: resumes its live session if there is one, else
    /// powers a sandbox on (after powering the oldest sessions off under `replace`).
    pub async fn open(
        self: &Arc<Self>,
        caller: &User,
        workspace_id: &str,
    ) -> Result<OpenOutcome, EngineError> {
        let started = Instant::now();
        if let Some(id) = WorkspaceId::parse(workspace_id) {
            self.hold_grace_for_reconnect(&caller.id, &id);
        }
        let outcome = self.open_serialised(caller, workspace_id).await;
        let label = match &outcome {
            Ok(OpenOutcome::Opened { .. }) => "new",
            Ok(OpenOutcome::Resumed { .. }) => "resumed",
            Err(error) => error.code(),
        };
        metrics::counter!("berth_session_opens_total", "outcome" => label).increment(1);
        if matches!(outcome, Ok(OpenOutcome::Opened { .. })) {
            metrics::histogram!("berth_session_open_seconds").record(started.elapsed().as_secs_f64());
        }
        outcome
    }

    async fn open_serialised(
        self: &Arc<Self>,
        caller: &User,
        workspace_id: &str,
    ) -> Result<OpenOutcome, EngineError> {
        let user_lock = self.user_lock(&caller.id);
        let _one_open_per_user_at_a_time = user_lock.lock().await;
        let workspace = self.workspace(caller, workspace_id).await?;
        let users_live = self.store.live_sessions_of(&caller.id).await?;
        let summaries: Vec<LiveSessionSummary> = users_live
            .iter()
            .map(|s| LiveSessionSummary {
                id: s.id.clone(),
                workspace_id: s.workspace_id.clone(),
                started_at: s.started_at,
            })
            .collect();
        let decision = decide_open(
            &workspace.id,
            workspace.state,
            &summaries,
            self.running_sandbox_count(),
            &self.config.limits,
        );
        match decision {
            OpenDecision::Resume(id) => self.resume(&id).await,
            OpenDecision::NotReady(state) => Err(EngineError::WrongState { id: workspace.id, state }),
            OpenDecision::UserLimitReached { .. } => Err(EngineError::SessionLimit {
                limit: self.config.limits.sessions_per_user,
                active_sessions: users_live,
            }),
            OpenDecision::ControllersBusy => {
                Err(EngineError::ControllersBusy { retry_after: CONTROLLERS_BUSY_RETRY_AFTER })
            }
            OpenDecision::Open { replace } => {
                for id in &replace {
                    self.close_session(id, EndReason::Replaced).await.map_err(|error| {
                        EngineError::ReplaceFailed { session_id: id.clone(), message: error.to_string() }
                    })?;
                }
                let session = self.power_on(caller, &workspace).await?;
                Ok(OpenOutcome::Opened { session, replaced: replace })
            }
        }
    }

    /// Attaches to a live session; a disconnected one becomes active again.
    pub(crate) async fn resume(self: &Arc<Self>, id: &SessionId) -> Result<OpenOutcome, EngineError> {
        let Some(op) = self.op_lock(id) else {
            // It ended between the decision and now.
            return Err(EngineError::NotFound { what: "session" });
        };
        let _guard = op.lock().await;
        let session = self.load_session(id).await?;
        if session.state == SessionState::Disconnected {
            self.store.update_live_session(id, SessionState::Active, None).await?;
            let session = self.load_session(id).await?;
            self.record_event(&session, "system", serde_json::json!({ "code": "session_resumed" })).await?;
            tracing::info!(session_id = %id, "reconnected within the grace window");
            self.publish_session(&session);
            return Ok(OpenOutcome::Resumed { session });
        }
        Ok(OpenOutcome::Resumed { session })
    }

    async fn power_on(
        self: &Arc<Self>,
        caller: &User,
        workspace: &berth_core::Workspace,
    ) -> Result<Session, EngineError> {
        let session = Session {
            id: SessionId::generate(),
            workspace_id: workspace.id.clone(),
            user_id: caller.id.clone(),
            state: SessionState::Starting,
            started_at: Utc::now(),
            ended_at: None,
            end_reason: None,
            grace_expires_at: None,
            agent_running: false,
        };
        // Read before anything is taken: the caller's secrets and git credential.
        let secret_env = self.agent_private_env(&caller.id, workspace).await?;
        if !self.take_slot(&session) {
            return Err(EngineError::ControllersBusy { retry_after: CONTROLLERS_BUSY_RETRY_AFTER });
        }
        match self.store.insert_session(&session, workspace.state).await {
            Ok(true) => {}
            Ok(false) => {
                self.release_slot(&session.id);
                let state = self.workspace(caller, workspace.id.as_str()).await?.state;
                return Err(EngineError::WrongState { id: workspace.id.clone(), state });
            }
            Err(error) => {
                self.release_slot(&session.id);
                return Err(error.into());
            }
        }
        let spec = SandboxSpec {
            session_id: session.id.clone(),
            workspace_id: workspace.id.clone(),
            workspace_dir: self.paths.workspace(&workspace.id),
            agent_command: self.agent_command_for(workspace),
            secret_env,
        };
        let io = match self.driver.power_on(spec).await {
            Ok(io) => io,
            Err(error) => {
                metrics::counter!("berth_sandbox_failures_total", "operation" => "power_on").increment(1);
                tracing::error!(session_id = %session.id, error = %error, "sandbox failed to power on");
                // Whatever half-started goes too; its failure is already the story.
                let _ = self.driver.power_off(&session.id).await;
                self.store.end_session(&session.id, EndReason::Failed, Utc::now()).await?;
                self.release_slot(&session.id);
                if let Ok(ended) = self.load_session(&session.id).await {
                    self.publish_session(&ended);
                }
                return Err(EngineError::SandboxFailed { message: error.to_string() });
            }
        };
        // All or nothing from here: the sandbox runs and the slot is taken, so a failure
        // before the session is fully live powers it off, frees the slot and ends it
        // `failed`, instead of leaving a live session nobody watches.
        let made_live = async {
            self.store.update_live_session(&session.id, SessionState::Active, None).await?;
            let resume = match self.config.resume_context {
                crate::config::ResumeContext::Auto => self.store.agent_session_id(&workspace.id).await?,
                crate::config::ResumeContext::Never => None,
            };
            self.record_event(&session, "system", serde_json::json!({ "code": "session_started" })).await?;
            Ok::<_, EngineError>(resume)
        };
        let resume = match made_live.await {
            Ok(resume) => resume,
            Err(error) => {
                tracing::error!(session_id = %session.id, error = %error, "the session could not be made live");
                let _ = self.driver.power_off(&session.id).await;
                let _ = self.store.end_session(&session.id, EndReason::Failed, Utc::now()).await;
                let failed = serde_json::json!({ "code": "agent_error", "reason": "start_failed",
                    "message": "The session could not start; open the workspace again." });
                let _ = self.record_event(&session, "system", failed).await;
                self.release_slot(&session.id);
                if let Ok(ended) = self.load_session(&session.id).await {
                    self.publish_session(&ended);
                }
                return Err(error);
            }
        };
        self.watch_sandbox(&session, io, resume);
        let session = self.load_session(&session.id).await?;
        tracing::info!(session_id = %session.id, workspace_id = %session.workspace_id, "session opened");
        self.publish_session(&session);
        Ok(session)
    }

    /// The agent command of a workspace: the catalogue's agent it names, or its own
    /// command line, else the installation's; the built-in agent of this very binary when
    /// it names that or nothing says otherwise.
    fn agent_command_for(&self, workspace: &berth_core::Workspace) -> String {
        let command = match workspace.agent.as_deref() {
            Some(crate::BUILTIN_AGENT) => None,
            Some(name) => {
                Some(self.config.agent(name).map_or(name, |entry| entry.command.as_str()).to_owned())
            }
            None => self.config.agent_command.clone(),
        };
        command.unwrap_or_else(|| {
            let binary = std::env::current_exe()
                .map(|path| path.to_string_lossy().into_owned())
                .unwrap_or("berth".into());
            format!("'{}' agent", binary.replace('\'', r"'\''"))
        })
    }

    /// Speaks the agent protocol over the sandbox's stdio, and ends the session as
    /// `failed` (with the tail of the agent's error output) when the sandbox ends on its own.
    fn watch_sandbox(self: &Arc<Self>, session: &Session, io: AgentIo, resume: Option<String>) {
        let AgentIo { stdin, stdout, mut stderr, mut exited, workspace_path, notices } = io;
        let roots = berth_agent::client::WorkspaceRoots {
            host: self.paths.workspace(&session.workspace_id),
            agent: workspace_path,
        };
        let (connection, agent_events) = berth_agent::client::connect(stdin, stdout, roots, resume);
        if let Some(runtime) = self.registry().live.get_mut(&session.id) {
            runtime.agent = Some(Arc::new(connection));
        }
        self.pump_agent_events(session, agent_events);
        self.report_limits(session, notices);
        let engine = Arc::clone(self);
        let id = session.id.clone();
        self.tasks.spawn(async move {
            let keep_stderr_tail = async {
                let mut tail = Vec::new();
                let _ = stderr.read_to_end(&mut tail).await;
                String::from_utf8_lossy(&tail[tail.len().saturating_sub(2048)..]).into_owned()
            };
            let ended = async {
                tokio::join!(keep_stderr_tail, async {
                    exited.wait_for(Option::is_some).await.ok().and_then(|exit| *exit)
                })
            };
            tokio::select! {
                (stderr_tail, exit) = ended => {
                    let exit = exit.map_or_else(|| "ended".to_owned(), |exit| exit.to_string());
                    engine.on_sandbox_ended(&id, &exit, &stderr_tail).await;
                }
                // Shutdown powers sandboxes off itself; nothing to watch any more.
                () = engine.shutdown.cancelled() => {}
            }
        });
    }

    async fn on_sandbox_ended(&self, id: &SessionId, exit: &str, stderr_tail: &str) {
        let Some(op) = self.op_lock(id) else { return };
        let _guard = op.lock().await;
        match self.store.session(id).await {
            Ok(Some(session)) if session.state.is_live() => {
                tracing::warn!(session_id = %id, exit, stderr = stderr_tail.trim_end(), "the agent ended on its own");
                let data = serde_json::json!({ "code": "agent_error", "reason": "agent_exited",
                    "message": format!("The agent stopped ({exit}). Reopen the workspace to start it again."),
                    "stderr_tail": stderr_tail });
                if let Err(error) = self.record_event(&session, "system", data).await {
                    tracing::error!(session_id = %id, error = %error, "cannot record the agent's failure");
                }
                if let Err(error) = self.end_locked(&session, EndReason::Failed).await {
                    tracing::error!(session_id = %id, error = %error, "cannot end the session of a dead sandbox");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::error!(session_id = %id, error = %error, "cannot read a session"),
        }
    }

    /// Powers the sandbox of `id` off and ends the session with `reason`. Success when it
    /// had already ended. On a driver failure the session stays live and the failure is
    /// returned, so it can be retried.
    pub async fn close_session(&self, id: &SessionId, reason: EndReason) -> Result<Session, EngineError> {
        let Some(op) = self.op_lock(id) else {
            let session = self.load_session(id).await?;
            if !session.state.is_live() {
                return Ok(session);
            }
            // Live in the store but unknown here: only possible before reconciliation.
            return self.end_locked(&session, reason).await;
        };
        let _guard = op.lock().await;
        let session = self.load_session(id).await?;
        if !session.state.is_live() {
            return Ok(session);
        }
        self.end_locked(&session, reason).await
    }

    /// The body of every ending; the caller holds the session's operation lock.
    pub(crate) async fn end_locked(
        &self,
        session: &Session,
        reason: EndReason,
    ) -> Result<Session, EngineError> {
        self.cancel_questions(session).await?;
        if let Err(error) = self.driver.power_off(&session.id).await {
            metrics::counter!("berth_sandbox_failures_total", "operation" => "power_off").increment(1);
            metrics::counter!("berth_session_closes_total", "outcome" => "failed").increment(1);
            tracing::error!(session_id = %session.id, error = %error, "sandbox failed to power off");
            return Err(EngineError::CloseFailed {
                session_id: session.id.clone(),
                message: error.to_string(),
            });
        }
        // Before the end is recorded: a crash in between leaves a live session, which the
        // next start reconciles (closing what is still open), never an ended one with a
        // tool call left running.
        self.close_open_tool_calls(session).await?;
        self.store.end_session(&session.id, reason, Utc::now()).await?;
        let closed = serde_json::json!({ "code": "session_closed", "reason": reason.as_str() });
        self.record_event(session, "system", closed).await?;
        let ended = self.load_session(&session.id).await?;
        // Live clients hear of the end before the session's channel goes with its slot.
        self.broadcast_live(&session.id, crate::conversation::LiveMessage::Session(ended.clone()));
        self.release_slot(&session.id);
        metrics::counter!("berth_session_closes_total", "outcome" => "closed", "reason" => reason.as_str())
            .increment(1);
        tracing::info!(session_id = %session.id, reason = reason.as_str(), "session ended");
        self.publish_session(&ended);
        Ok(ended)
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
        self: &Arc<Self>,
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

    /// The person left (leave signal, dropped connection). No run in progress: the
    /// session ends (`left`). A run in progress: it waits `reconnect_grace` for them.
    pub async fn leave(self: &Arc<Self>, caller: &User, id: &str) -> Result<Session, EngineError> {
        let session = self.own_session(caller, id).await?;
        let Some(op) = self.op_lock(&session.id) else { return Ok(session) };
        let _guard = op.lock().await;
        let session = self.load_session(&session.id).await?;
        if session.state != SessionState::Active {
            return Ok(session);
        }
        match decide_leave(session.agent_running, self.config.reconnect_grace) {
            LeaveOutcome::End => self.end_locked(&session, EndReason::Left).await,
            LeaveOutcome::Disconnect { grace } => {
                let expires = Utc::now() + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
                self.store
                    .update_live_session(&session.id, SessionState::Disconnected, Some(expires))
                    .await?;
                self.arm_grace_timer(&session.id, grace);
                let session = self.load_session(&session.id).await?;
                tracing::info!(session_id = %session.id, grace_s = grace.as_secs(), "left during a run; grace window open");
                self.publish_session(&session);
                Ok(session)
            }
        }
    }

    fn arm_grace_timer(self: &Arc<Self>, id: &SessionId, grace: Duration) {
        let engine = Arc::clone(self);
        let session_id = id.clone();
        // The deadline is fixed now, not when the task first runs.
        let deadline = tokio::time::Instant::now() + grace;
        let timer = self.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => engine.expire_grace(&session_id).await,
                () = engine.shutdown.cancelled() => {}
            }
        });
        match self.registry().live.get_mut(id) {
            Some(runtime) => {
                if let Some(previous) = runtime.grace_timer.replace(timer.abort_handle()) {
                    previous.abort();
                }
            }
            None => timer.abort(),
        }
    }

    async fn expire_grace(&self, id: &SessionId) {
        // This runs in the timer's own task: forget its abort handle first, or ending the
        // session (which stops the timer) would cancel the ending half-way.
        if let Some(runtime) = self.registry().live.get_mut(id) {
            runtime.grace_timer = None;
        }
        let Some(op) = self.op_lock(id) else { return };
        let _guard = op.lock().await;
        let ended = match self.store.session(id).await {
            Ok(Some(session)) if session.state == SessionState::Disconnected => {
                self.end_locked(&session, EndReason::GraceExpired).await.map(drop)
            }
            Ok(_) => Ok(()),
            Err(error) => Err(error.into()),
        };
        if let Err(error) = ended {
            tracing::error!(session_id = %id, error = %error, "cannot end a session whose grace expired");
        }
    }

    /// Marks whether the agent is working; the leave decision keys off it.
    pub async fn set_agent_running(&self, id: &SessionId, running: bool) -> Result<(), EngineError> {
        if self.store.set_agent_running(id, running).await? {
            self.publish_session(&self.load_session(id).await?);
        }
        Ok(())
    }

    /// At shutdown: every live session ends (`server_restart`) with its sandbox powered
    /// off, in parallel, so a clean stop leaves no agent running.
    pub(crate) async fn close_every_session(&self) {
        let sessions = match self.store.live_sessions().await {
            Ok(sessions) => sessions,
            Err(error) => {
                tracing::error!(error = %error, "cannot list the sessions to close at shutdown");
                return;
            }
        };
        let closes = sessions.iter().map(|session| self.close_session(&session.id, EndReason::ServerRestart));
        for (session, result) in sessions.iter().zip(futures::future::join_all(closes).await) {
            if let Err(error) = result {
                tracing::error!(session_id = %session.id, error = %error, "cannot close a session at shutdown");
            }
        }
    }

    /// At start: every session the previous run left live ends (`server_restart`) with
    /// its sandbox powered off, every sandbox without a live session is powered off, and
    /// workspaces left `active` become `idle`.
    pub(crate) async fn reconcile_sessions(&self) -> Result<(), EngineError> {
        for session in self.store.live_sessions().await? {
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
