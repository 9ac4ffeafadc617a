//! Opening a workspace: resume its live session, or power a sandbox on — after closing
//! the oldest sessions under `replace` — all or nothing: a [`PowerOnGuard`] owns the slot
//! and the sandbox until the owner task has the session live.

use super::conversation::{agent_error, store_event};
use super::end::Sandbox;
use super::phases::{Phase, record_phase};
use super::runtime::{Command, SessionActor};
use super::{CONTROLLERS_BUSY_RETRY_AFTER, OpenOutcome, Owner, Sessions, SlotGuard};
use crate::{EngineError, Services};
use berth_core::event::{AgentErrorReason, EventKind};
use berth_core::session::{EndReason, LiveSessionSummary, OpenDecision, Session, SessionState, decide_open};
use berth_core::{SessionId, User, WorkspaceId};
use berth_sandbox::SandboxSpec;
use berth_store::SessionInsert;
use chrono::Utc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Owns a session's slot and, once it runs, its sandbox, until the session is live.
/// [`PowerOnGuard::fail`] undoes everything: the sandbox off, the session `failed` with
/// the reason in its history, the slot free.
pub(crate) struct PowerOnGuard {
    pub(crate) sessions: Sessions,
    pub(crate) session: Session,
    slot: SlotGuard,
    /// The values of the person's secrets in the agent's environment: what the agent's
    /// own words must not carry into the conversation.
    pub(crate) secrets: Vec<String>,
}

impl PowerOnGuard {
    /// The session is live: the guard lets go of the slot, which the owner task keeps.
    pub(crate) fn disarm(self) -> SlotGuard {
        self.slot
    }

    /// Undoes the power on after `error` (the sandbox as far as it got), and returns the
    /// error. The session ends `failed` with the reason in its history, by the one ending.
    pub(crate) async fn fail(self, error: EngineError, sandbox: Sandbox) -> EngineError {
        let sessions = &self.sessions;
        let session = &self.session;
        tracing::error!(session_id = %session.id, error = %error, "the session could not start");
        let failed = agent_error(
            AgentErrorReason::StartFailed,
            "The session could not start; open the workspace again.",
        );
        if let Err(error) = store_event(&sessions.store, session, EventKind::System, failed).await {
            tracing::error!(session_id = %session.id, error = %error, "cannot record a failed start");
        }
        if let Err(error) = sessions.end_without_owner(session, EndReason::Failed, sandbox).await {
            tracing::error!(session_id = %session.id, error = %error, "cannot end a session that failed to start");
        }
        // The slot goes with the guard.
        drop(self.slot);
        error
    }
}

impl Sessions {
    /// Opens the caller's workspace: resumes its live session if there is one, else
    /// powers a sandbox on (after powering the oldest sessions off under `replace`).
    pub async fn open(&self, caller: &User, workspace_id: &str) -> Result<OpenOutcome, EngineError> {
        let started = Instant::now();
        if let Some(id) = WorkspaceId::parse(workspace_id) {
            self.hold_grace_for_reconnect(&caller.id, &id);
        }
        let outcome = self.open_serialised(caller, workspace_id, started).await;
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
        &self,
        caller: &User,
        workspace_id: &str,
        started: Instant,
    ) -> Result<OpenOutcome, EngineError> {
        let user_lock = self.user_lock(&caller.id);
        let _one_open_per_user_at_a_time = user_lock.lock().await;
        // The same across replicas: the database's lock of this user's opens, and their
        // live sessions as the database has them now.
        let _one_open_per_user_on_every_replica = self.store.lock_user_opens(&caller.id).await?;
        // Three reads at once: the workspace, the user's live sessions and every
        // replica's sandboxes (the insert checks the count again in the same step).
        let workspaces = self.workspaces();
        let (workspace, users_live, running) = tokio::try_join!(
            async { workspaces.workspace(caller, workspace_id).await },
            async { Ok(self.store.live_sessions_of_now(&caller.id).await?) },
            async { Ok::<_, EngineError>(self.store.live_session_count().await?) },
        )?;
        let summaries: Vec<LiveSessionSummary> = users_live
            .iter()
            .map(|s| LiveSessionSummary {
                id: s.id.clone(),
                workspace_id: s.workspace_id.clone(),
                started_at: s.started_at,
            })
            .collect();
        let running = u32::try_from(running).unwrap_or(u32::MAX);
        let decision = decide_open(&workspace.id, workspace.state, &summaries, running, &self.config.limits);
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
                // An agent that cannot start is said before anything is closed for it.
                let command = self.agent_command_for(caller, &workspace).await?;
                for id in &replace {
                    self.close_session(id, EndReason::Replaced).await.map_err(|error| {
                        EngineError::ReplaceFailed { session_id: id.clone(), message: error.to_string() }
                    })?;
                }
                record_phase(Phase::Checks, started.elapsed());
                let session = self.power_on(caller, &workspace, command).await?;
                Ok(OpenOutcome::Opened { session, replaced: replace })
            }
        }
    }

    /// Attaches to a live session; a disconnected one becomes active again.
    pub(crate) async fn resume(&self, id: &SessionId) -> Result<OpenOutcome, EngineError> {
        match self.ask(id, |reply| Command::Resume { reply }).await {
            Some(resumed) => Ok(OpenOutcome::Resumed { session: resumed? }),
            None => match self.owner(id).await? {
                Owner::There(peer) => Err(EngineError::SessionElsewhere { peer }),
                // It ended between the decision and now.
                Owner::Here(_) => Err(EngineError::NotFound { what: "session" }),
            },
        }
    }

    /// Powers a sandbox on for a new session of `workspace`. The work runs in a task of
    /// its own, so a caller that goes away (a dropped request) cannot stop it half-way.
    async fn power_on(
        &self,
        caller: &User,
        workspace: &berth_core::Workspace,
        agent_command: String,
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
        // Read before anything is taken: the caller's secrets and git credential, and who
        // the agent's own commits are by.
        let reads_started = Instant::now();
        let accounts = self.accounts();
        let (secret_env, profile) =
            tokio::try_join!(accounts.agent_private_env(&caller.id, workspace), accounts.profile(caller))?;
        let (author, email) = profile.git_identity(caller);
        record_phase(Phase::Reads, reads_started.elapsed());
        // Given back when dropped, on any way out below until the owner task has it.
        let Some((slot, commands)) = self.take_slot(&session) else {
            return Err(EngineError::ControllersBusy { retry_after: CONTROLLERS_BUSY_RETRY_AFTER });
        };
        let insert_started = Instant::now();
        match self
            .store
            .insert_session(&session, workspace.state, self.config.limits.running_sandboxes)
            .await?
        {
            SessionInsert::Inserted => record_phase(Phase::StoreInsert, insert_started.elapsed()),
            SessionInsert::NoSandboxSlot => {
                return Err(EngineError::ControllersBusy { retry_after: CONTROLLERS_BUSY_RETRY_AFTER });
            }
            SessionInsert::WorkspaceNotReady => {
                let state = self.workspaces().workspace(caller, workspace.id.as_str()).await?.state;
                return Err(EngineError::WrongState { id: workspace.id.clone(), state });
            }
        }
        let spec = SandboxSpec {
            session_id: session.id.clone(),
            workspace_id: workspace.id.clone(),
            workspace_dir: self.paths.workspace(&workspace.id),
            agent_command,
            env: berth_core::agent_env::environment(
                std::env::vars_os()
                    .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?))),
                &self.config.agent_pass_env,
                self.catalogue_entry(workspace).map_or(&[][..], |entry| &entry.env),
            )
            .into_iter()
            .chain(berth_core::agent_env::git_identity(&author, &email))
            .collect(),
            secret_env,
        };
        let secrets = spec.secret_env.iter().map(|(_, value)| value.clone()).collect();
        let guard = PowerOnGuard { sessions: self.clone(), session, slot, secrets };
        let (opened, answer) = oneshot::channel();
        self.tasks.spawn(async move {
            let sandbox_started = Instant::now();
            match guard.sessions.driver.power_on(spec).await {
                Ok(io) => {
                    record_phase(Phase::Sandbox, sandbox_started.elapsed());
                    SessionActor::start(guard, io, commands, opened).await;
                }
                Err(error) => {
                    metrics::counter!("berth_sandbox_failures_total", "operation" => "power_on").increment(1);
                    let error = EngineError::SandboxFailed { message: error.to_string() };
                    let _ = opened.send(Err(guard.fail(error, Sandbox::NeverStarted).await));
                    // Commands that waited for the session are answered by their channel
                    // closing.
                    drop(commands);
                }
            }
        });
        answer.await.unwrap_or(Err(EngineError::SessionNotActive))
    }

    /// The catalogue's agent a workspace names, if it names one.
    fn catalogue_entry(&self, workspace: &berth_core::Workspace) -> Option<&crate::config::AgentEntry> {
        workspace.agent.as_deref().and_then(|name| self.config.agent(name))
    }

    /// The agent command of a workspace: the catalogue's agent it names, or its own
    /// command line, else the installation's; the built-in agent of this very binary when
    /// it names that or nothing says otherwise. A catalogue agent that is not installed,
    /// or whose secrets the caller has not set, is refused with what to do.
    async fn agent_command_for(
        &self,
        caller: &User,
        workspace: &berth_core::Workspace,
    ) -> Result<String, EngineError> {
        let command = match workspace.agent.as_deref() {
            Some(crate::BUILTIN_AGENT) => None,
            Some(name) => match self.config.agent(name) {
                Some(entry) => {
                    let have = self.accounts().secret_names(&caller.id).await?;
                    let missing: Vec<String> =
                        entry.needs.iter().filter(|needed| !have.contains(needed)).cloned().collect();
                    if !missing.is_empty() {
                        return Err(EngineError::AgentNeedsSecrets { agent: entry.name.clone(), missing });
                    }
                    let command = entry.command_line(&self.config.agents_dir());
                    Some(command.ok_or_else(|| EngineError::AgentNotInstalled {
                        agent: entry.name.clone(),
                        install: install_hint(entry),
                    })?)
                }
                None => Some(name.to_owned()),
            },
            None => self.config.agent_command.clone(),
        };
        Ok(command.unwrap_or_else(|| {
            let binary = std::env::current_exe()
                .map(|path| path.to_string_lossy().into_owned())
                .unwrap_or("berth".into());
            format!("'{}' agent", binary.replace('\'', r"'\''"))
        }))
    }
}

/// How an agent of the catalogue gets installed, for a person to read.
pub(crate) fn install_hint(entry: &crate::config::AgentEntry) -> String {
    match &entry.package {
        Some(package) => format!(
            "an administrator installs it with `berth agents install {}` ({} from npm), or puts `{}` on the server's PATH",
            entry.name, package.spec, package.bin
        ),
        None => format!("the command of `[agents.{}]` is not found", entry.name),
    }
}
