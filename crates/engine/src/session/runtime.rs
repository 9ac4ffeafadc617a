//! One task owns each live session (mini-redis style): the agent connection, the turn,
//! the waiting questions, the grace deadline, the live broadcast and the attached
//! clients. Everything else sends it a [`Command`] and awaits the reply. Its loop selects
//! over commands, the agent's events, the sandbox's exit, its limit notices, the grace
//! deadline and the turn's time-out: every trigger of a session's work is in
//! [`SessionActor::run`], and one turn at a time follows from there being one loop.

use super::conversation::{
    LiveMessage, PendingQuestion, agent_error, needs_credentials, question_body, store_event, store_text,
    system, turn_failure,
};
use super::end::Sandbox;
use super::phases::{Phase, record_phase};
use super::{PowerOnGuard, Sessions, SlotGuard};
use crate::{EngineError, Services};
use berth_agent::client::{AgentConnection, AgentEvent};
use berth_core::event::{AgentErrorReason, EventKind, SystemCode};
use berth_core::session::{EndReason, LeaveOutcome, SessionEvent, SessionState, decide_leave};
use berth_core::{Event, PromptWindow, Session, SessionId};
use berth_sandbox::{AgentIo, SandboxNotice};
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

/// How many live messages a slow client may fall behind before it is cut off (it then
/// reconnects with `after=` and loses nothing: the history is stored).
pub const LIVE_BUFFER: usize = 1024;

/// The most text a prompt may carry.
pub const MAX_PROMPT_BYTES: usize = 100 * 1024;

/// How long a session whose agent connection closed waits for its sandbox to end, which
/// says more (the exit and the error output); then the session ends all the same.
const AGENT_GONE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// What a client gets when it attaches: the session, a subscription taken before it
/// reads the history (so nothing falls between the two), the questions waiting now, and
/// the connection's place in the count.
pub(crate) struct Attached {
    pub(crate) session: Session,
    pub(crate) messages: broadcast::Receiver<Arc<LiveMessage>>,
    pub(crate) pending_questions: Vec<Value>,
    pub(crate) counted: Detacher,
}

/// One counted live-channel connection: dropping it — however the connection went, or
/// if the attach's answer never reached anyone — tells the owner it went.
pub(crate) struct Detacher {
    commands: mpsc::UnboundedSender<Command>,
}

impl Drop for Detacher {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Detach);
    }
}

/// What the owner task of a session is asked to do.
pub(crate) enum Command {
    Prompt {
        text: String,
        reply: Reply<Event>,
    },
    Answer {
        question_id: String,
        option_id: String,
        reply: Reply<Event>,
    },
    Cancel {
        reply: Reply<()>,
    },
    /// A live-channel client attaches (a disconnected session becomes active again).
    Attach {
        commands: mpsc::UnboundedSender<Command>,
        reply: Reply<Attached>,
    },
    /// A live-channel client went, for whatever reason; the last one going is a leave.
    Detach,
    /// The person left (the leave signal).
    Leave {
        reply: Reply<Session>,
    },
    /// The person came back by opening the workspace again.
    Resume {
        reply: Reply<Session>,
    },
    /// Mark the agent working or not (what a turn does; tests set it directly).
    MarkRunning {
        running: bool,
        reply: Reply<()>,
    },
    Close {
        reason: EndReason,
        reply: Reply<Session>,
    },
    /// This replica lost its lease: the session is another replica's to end. Its sandbox
    /// is powered off and the task stops, writing nothing.
    Abandon {
        reply: Reply<()>,
    },
    /// A reconnect has begun (sent synchronously, before it awaits anything): the grace
    /// deadline then waits for it instead of ending the session under it.
    Reconnecting,
}

/// How the rest of the engine reaches a live session's owner task.
#[derive(Clone)]
pub struct SessionHandle {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
}

/// Whether the loop goes on after a trigger.
enum Flow {
    Continue,
    Ended,
}

/// The owner of one live session.
pub(crate) struct SessionActor {
    sessions: Sessions,
    session: Session,
    /// The sandbox slot this session holds, given back as it ends.
    slot: Option<SlotGuard>,
    agent: AgentConnection,
    /// The live broadcast: made when the first client attaches, dropped with the last.
    live: Option<broadcast::Sender<Arc<LiveMessage>>>,
    connections: usize,
    questions: HashMap<String, PendingQuestion>,
    /// A prompt was sent and its turn has not ended.
    turn_active: bool,
    /// The agent is working (a turn, or a question waits): what leaving decides on.
    running: bool,
    /// Until the agent is ready it may replay an earlier session (`session/load`): those
    /// updates are already in the history.
    ready: bool,
    prompts: PromptWindow,
    grace_deadline: Option<Instant>,
    /// While a turn runs, the agent must say something before this.
    turn_deadline: Option<Instant>,
    /// The agent connection closed: the session ends at this time if the sandbox has not.
    agent_gone_deadline: Option<Instant>,
    /// Why the agent closed its connection, in its own words, when it said (an agent that
    /// could not start its session says why here).
    agent_close_error: Option<String>,
    /// The values of the person's secrets in the agent's environment, hidden from what
    /// the agent says as it fails.
    secrets: Vec<String>,
    /// A reconnect has begun and not arrived yet.
    reconnecting: bool,
}

impl SessionActor {
    /// Takes the powered-on sandbox from `guard` and runs the session until it ends. The
    /// session is made live first; a failure there powers the sandbox off, frees the slot
    /// and ends the session `failed`, and is returned to whoever opened it.
    pub(crate) async fn start(
        mut guard: PowerOnGuard,
        io: AgentIo,
        commands: mpsc::UnboundedReceiver<Command>,
        opened: oneshot::Sender<Result<Session, EngineError>>,
    ) {
        let sessions = guard.sessions.clone();
        let made_live_started = std::time::Instant::now();
        // The agent's earlier session, which it resumes (read before its connection starts).
        let resume = match sessions.config.resume_context {
            crate::config::ResumeContext::Auto => {
                match sessions.store.agent_session_id(&guard.session.workspace_id).await {
                    Ok(resume) => resume,
                    Err(error) => {
                        let _ = opened.send(Err(guard.fail(error.into(), Sandbox::Started).await));
                        return;
                    }
                }
            }
            crate::config::ResumeContext::Never => None,
        };
        let AgentIo { stdin, stdout, mut stderr, exited, workspace_path, mut notices } = io;
        let roots = berth_agent::client::WorkspaceRoots {
            host: sessions.paths.workspace(&guard.session.workspace_id),
            agent: workspace_path,
        };
        // The handshake runs while the session is made live: what the agent says waits in
        // the channel until this task reads it, after the session is live. Should that
        // fail, the connection goes with the sandbox.
        let (agent, mut agent_events) = berth_agent::client::connect(stdin, stdout, roots, resume);
        let made_live = async {
            let session = &guard.session;
            let to = session.state.on(SessionEvent::SandboxRunning).map_err(EngineError::from)?;
            // Made live and `session_started`: one durable commit.
            let started = system(SystemCode::SessionStarted, json!({})).to_string();
            let made_live = sessions.store.update_live_session_with_event(
                &session.workspace_id,
                &session.id,
                (session.state, to),
                Utc::now(),
                EventKind::System.as_str(),
                &started,
            );
            if made_live.await?.is_none() {
                return Err(EngineError::SessionNotActive);
            }
            sessions.load_session(&session.id).await
        };
        let session = match made_live.await {
            Ok(session) => {
                record_phase(Phase::MadeLive, made_live_started.elapsed());
                session
            }
            Err(error) => {
                drop(agent);
                let _ = opened.send(Err(guard.fail(error, Sandbox::Started).await));
                return;
            }
        };
        let secrets = std::mem::take(&mut guard.secrets);
        let slot = guard.disarm();
        tracing::info!(session_id = %session.id, workspace_id = %session.workspace_id, "session opened");
        sessions.publish(&session);
        let _ = opened.send(Ok(session.clone()));
        let mut actor = SessionActor {
            sessions,
            session,
            slot: Some(slot),
            agent,
            live: None,
            connections: 0,
            questions: HashMap::new(),
            turn_active: false,
            running: false,
            ready: false,
            prompts: PromptWindow::default(),
            grace_deadline: None,
            turn_deadline: None,
            agent_gone_deadline: None,
            agent_close_error: None,
            secrets,
            reconnecting: false,
        };
        // The sandbox's end, with the tail of what the agent wrote to its error output.
        let mut exited = exited;
        let sandbox_ended = async move {
            let tail = async {
                let mut tail = Vec::new();
                let _ = stderr.read_to_end(&mut tail).await;
                String::from_utf8_lossy(&tail[tail.len().saturating_sub(2048)..]).into_owned()
            };
            let exit = async { exited.wait_for(Option::is_some).await.ok().and_then(|exit| *exit) };
            let (tail, exit) = tokio::join!(tail, exit);
            (exit.map_or_else(|| "ended".to_owned(), |exit| exit.to_string()), tail)
        };
        actor.run(commands, &mut agent_events, &mut notices, sandbox_ended).await;
    }

    async fn run(
        &mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        agent_events: &mut mpsc::UnboundedReceiver<AgentEvent>,
        notices: &mut mpsc::UnboundedReceiver<SandboxNotice>,
        sandbox_ended: impl std::future::Future<Output = (String, String)>,
    ) {
        tokio::pin!(sandbox_ended);
        let shutdown = self.sessions.shutdown.clone();
        let mut agent_open = true;
        let mut notices_open = true;
        // A finished future is not polled again.
        let mut sandbox_running = true;
        loop {
            let grace = self.grace_deadline;
            let turn = self.turn_deadline;
            let agent_gone = self.agent_gone_deadline;
            let flow = tokio::select! {
                // A person's command first: a reconnect that has begun wins over the expiry.
                biased;
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command).await,
                    None => Flow::Continue,
                },
                event = agent_events.recv(), if agent_open => match event {
                    Some(event) => self.on_agent_event(event).await,
                    None => {
                        agent_open = false;
                        self.agent_gone_deadline.get_or_insert(Instant::now() + AGENT_GONE_WAIT);
                        Flow::Continue
                    }
                },
                notice = notices.recv(), if notices_open => match notice {
                    Some(notice) => { self.on_limit(notice).await; Flow::Continue }
                    None => { notices_open = false; Flow::Continue }
                },
                (exit, stderr_tail) = &mut sandbox_ended, if sandbox_running => {
                    sandbox_running = false;
                    self.on_sandbox_exited(&exit, &stderr_tail).await
                }
                () = sleep_until(grace), if grace.is_some() => self.on_grace_expired().await,
                () = sleep_until(turn), if turn.is_some() => { self.on_turn_timeout().await; Flow::Continue }
                () = sleep_until(agent_gone), if agent_gone.is_some() => self.on_agent_gone().await,
                // Shutdown closes every session first; nothing is left to own.
                () = shutdown.cancelled() => Flow::Ended,
            };
            if matches!(flow, Flow::Ended) {
                break;
            }
        }
    }

    // ---- commands

    async fn on_command(&mut self, command: Command) -> Flow {
        match command {
            Command::Prompt { text, reply } => {
                let _ = reply.send(self.prompt(text).await);
            }
            Command::Answer { question_id, option_id, reply } => {
                let _ = reply.send(self.answer(&question_id, &option_id).await);
            }
            Command::Cancel { reply } => {
                let cancelled = self.cancel_questions().await;
                self.agent.cancel();
                let _ = reply.send(cancelled);
            }
            Command::Attach { commands, reply } => {
                let _ = reply.send(self.attach(commands).await);
            }
            Command::Detach => {
                self.connections = self.connections.saturating_sub(1);
                if self.connections == 0 {
                    // Nobody listens: the channel's buffer goes until someone attaches.
                    self.live = None;
                    return match self.leave().await {
                        Ok(session) if !session.state.is_live() => Flow::Ended,
                        Ok(_) => Flow::Continue,
                        Err(error) => {
                            tracing::warn!(session_id = %self.session.id, error = %error, "leave after the last connection closed failed");
                            Flow::Continue
                        }
                    };
                }
            }
            Command::Leave { reply } => {
                let left = self.leave().await;
                let ended = matches!(&left, Ok(session) if !session.state.is_live());
                let _ = reply.send(left);
                if ended {
                    return Flow::Ended;
                }
            }
            Command::Resume { reply } => {
                let _ = reply.send(self.resume().await);
            }
            Command::MarkRunning { running, reply } => {
                let _ = reply.send(self.set_running(running).await);
            }
            Command::Abandon { reply } => {
                if let Err(error) = self.sessions.driver.power_off(&self.session.id).await {
                    tracing::error!(session_id = %self.session.id, error = %error, "cannot power off an abandoned session's sandbox");
                }
                self.slot = None;
                let _ = reply.send(Ok(()));
                return Flow::Ended;
            }
            Command::Reconnecting => self.reconnecting = true,
            Command::Close { reason, reply } => {
                let closed = self.end(reason).await;
                let ended = closed.is_ok();
                let _ = reply.send(closed);
                if ended {
                    return Flow::Ended;
                }
            }
        }
        Flow::Continue
    }

    async fn prompt(&mut self, text: String) -> Result<Event, EngineError> {
        if text.trim().is_empty() || text.len() > MAX_PROMPT_BYTES {
            return Err(EngineError::InvalidPrompt { max_bytes: MAX_PROMPT_BYTES });
        }
        if self.session.state != SessionState::Active {
            return Err(EngineError::SessionNotActive);
        }
        if self.turn_active {
            return Err(EngineError::TurnInProgress);
        }
        let per_second = self.sessions.config.prompts_per_second;
        if !self.prompts.admit(Instant::now().into_std(), per_second) {
            return Err(EngineError::RateLimited { per_second });
        }
        self.set_running(true).await?;
        let event = self.record(EventKind::UserMessage, json!({ "text": text })).await?;
        self.turn_active = true;
        self.turn_deadline = Some(Instant::now() + self.sessions.config.turn_timeout);
        self.agent.prompt(text);
        Ok(event)
    }

    async fn answer(&mut self, question_id: &str, option_id: &str) -> Result<Event, EngineError> {
        let Some(pending) = self.questions.get(question_id) else {
            return Err(EngineError::QuestionNotPending);
        };
        let valid = pending.body["options"]
            .as_array()
            .is_some_and(|options| options.iter().any(|option| option["id"] == option_id));
        if !valid {
            return Err(EngineError::InvalidOption { option: option_id.to_owned() });
        }
        if let Some(pending) = self.questions.remove(question_id) {
            let _ = pending.answer.send(Some(option_id.to_owned()));
        }
        self.record(EventKind::Answer, json!({ "question_id": question_id, "option_id": option_id })).await
    }

    async fn attach(&mut self, commands: mpsc::UnboundedSender<Command>) -> Result<Attached, EngineError> {
        let sender = self.live.get_or_insert_with(|| broadcast::channel(LIVE_BUFFER).0);
        let messages = sender.subscribe();
        let pending_questions = self.questions.values().map(|question| question.body.clone()).collect();
        if self.session.state == SessionState::Disconnected {
            self.resume().await?;
        }
        self.reconnecting = false;
        // Counted once attached: a refused attach leaves no connection to wait for.
        self.connections += 1;
        let counted = Detacher { commands };
        Ok(Attached { session: self.session.clone(), messages, pending_questions, counted })
    }

    /// No run in progress: the session ends (`left`). A run in progress: it waits
    /// `reconnect_grace` for the person.
    async fn leave(&mut self) -> Result<Session, EngineError> {
        if self.session.state != SessionState::Active {
            return Ok(self.session.clone());
        }
        // A terminal left open is work under way, as a run is: a reload comes back to it.
        let busy = self.running || self.sessions.terminals().any_open(&self.session.id);
        match decide_leave(busy, self.sessions.config.reconnect_grace) {
            LeaveOutcome::End => self.end(EndReason::Left).await,
            LeaveOutcome::Disconnect { grace } => {
                let expires = Utc::now() + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
                self.change_state(SessionEvent::LeftDuringRun, Some(expires)).await?;
                self.grace_deadline = Some(Instant::now() + grace);
                self.reconnecting = false;
                tracing::info!(session_id = %self.session.id, grace_s = grace.as_secs(), "left during a run; grace window open");
                Ok(self.session.clone())
            }
        }
    }

    /// A disconnected session becomes active again.
    async fn resume(&mut self) -> Result<Session, EngineError> {
        self.reconnecting = false;
        if self.session.state == SessionState::Disconnected {
            self.grace_deadline = None;
            self.change_state(SessionEvent::Reconnected, None).await?;
            self.say(SystemCode::SessionResumed, json!({})).await?;
            tracing::info!(session_id = %self.session.id, "reconnected within the grace window");
        }
        Ok(self.session.clone())
    }

    async fn on_grace_expired(&mut self) -> Flow {
        if self.reconnecting {
            // A reconnect has begun: give it a moment to arrive.
            self.grace_deadline = Some(Instant::now() + std::time::Duration::from_secs(5));
            return Flow::Continue;
        }
        self.grace_deadline = None;
        self.end_or_log(EndReason::GraceExpired, "cannot end a session whose grace expired").await
    }

    // ---- the agent and the sandbox

    async fn on_agent_event(&mut self, event: AgentEvent) -> Flow {
        if self.turn_active {
            self.turn_deadline = Some(Instant::now() + self.sessions.config.turn_timeout);
        }
        if let Err(error) = self.agent_event(event).await {
            tracing::error!(session_id = %self.session.id, error = %error, "cannot record what the agent did");
        }
        Flow::Continue
    }

    async fn agent_event(&mut self, event: AgentEvent) -> Result<(), EngineError> {
        match event {
            AgentEvent::Ready { agent_session_id, resumed, handshake } => {
                self.ready = true;
                record_phase(Phase::AgentInitialize, handshake.initialize);
                record_phase(Phase::AgentSession, handshake.session);
                let started = std::time::Instant::now();
                if resumed {
                    self.say(SystemCode::AgentContextResumed, json!({})).await?;
                }
                // The agent's session id (what the next open resumes) and `agent_ready`:
                // one commit.
                let ready = system(SystemCode::AgentReady, json!({})).to_string();
                let event = self.sessions.store.append_event_with_agent_session(
                    &self.session.workspace_id,
                    &self.session.id,
                    &agent_session_id,
                    Utc::now(),
                    EventKind::System.as_str(),
                    &ready,
                );
                self.broadcast(LiveMessage::Event(event.await?));
                record_phase(Phase::ReadyEvent, started.elapsed());
            }
            AgentEvent::Update(update) => {
                if self.ready {
                    let event =
                        store_text(&self.sessions.store, &self.session, &update.kind, &update.data).await?;
                    self.broadcast(LiveMessage::Event(event));
                }
            }
            AgentEvent::Question { question, answer } => {
                let id = format!("q_{}", SessionId::generate().as_str().trim_start_matches("s_"));
                let body = question_body(&id, &question);
                self.record(EventKind::Question, json!({ "question": body })).await?;
                self.questions.insert(id, PendingQuestion { body: body.clone(), answer });
                self.broadcast(LiveMessage::Question(body));
                self.set_running(true).await?;
            }
            AgentEvent::TurnEnded { stop_reason } => {
                self.end_turn();
                // Not running any more before anyone hears of the end, so a prompt sent on
                // seeing `turn_end` is taken.
                self.set_running(false).await?;
                self.record(EventKind::TurnEnd, json!({ "stop_reason": stop_reason })).await?;
            }
            AgentEvent::TurnFailed(failure) => {
                self.end_turn();
                let said = match failure {
                    berth_agent::client::TurnFailure::AuthRequired => self.needs_credentials().await?,
                    failure => turn_failure(&failure),
                };
                self.set_running(false).await?;
                self.record(EventKind::System, said).await?;
                self.record(EventKind::TurnEnd, json!({ "stop_reason": "error" })).await?;
            }
            AgentEvent::NeedsCredentials => {
                let said = self.needs_credentials().await?;
                self.record(EventKind::System, said).await?;
            }
            AgentEvent::Closed { error } => {
                if let Some(error) = error {
                    tracing::warn!(session_id = %self.session.id, error, "the agent connection closed");
                    self.agent_close_error = Some(error);
                }
                self.agent_gone_deadline.get_or_insert(Instant::now() + AGENT_GONE_WAIT);
            }
        }
        Ok(())
    }

    /// What the person is told when their agent asks for credentials: the secrets its
    /// catalogue entry needs that they have not set.
    async fn needs_credentials(&self) -> Result<Value, EngineError> {
        let workspace = self.sessions.store.workspace(&self.session.workspace_id).await?;
        let needs = workspace
            .and_then(|workspace| workspace.agent)
            .and_then(|name| self.sessions.config.agent(&name).map(|entry| entry.needs.clone()))
            .unwrap_or_default();
        let have = self.sessions.accounts().secret_names(&self.session.user_id).await?;
        Ok(needs_credentials(needs.into_iter().filter(|name| !have.contains(name)).collect()))
    }

    fn end_turn(&mut self) {
        self.turn_active = false;
        self.turn_deadline = None;
    }

    /// The agent sent nothing for `agent.turn_timeout` during a turn: the turn is
    /// cancelled. The agent then ends it (`cancelled`) as for a person's cancel.
    async fn on_turn_timeout(&mut self) {
        tracing::warn!(session_id = %self.session.id, "the agent's turn timed out; cancelling it");
        self.end_turn();
        let message = format!(
            "the agent sent nothing for {} s; its turn is cancelled",
            self.sessions.config.turn_timeout.as_secs()
        );
        let recorded = self.say(SystemCode::TurnTimeout, json!({ "message": message })).await;
        if let Err(error) = recorded.map(drop).and(self.cancel_questions().await) {
            tracing::error!(session_id = %self.session.id, error = %error, "cannot record a turn's time-out");
        }
        self.agent.cancel();
    }

    /// A limit of the sandbox was hit: said in the conversation instead of a silent hang.
    async fn on_limit(&mut self, notice: SandboxNotice) {
        let resources = self.sessions.config.resources;
        let (reason, message) = match notice {
            SandboxNotice::MemoryLimit { killed } => (
                AgentErrorReason::MemoryLimit,
                format!(
                    "the sandbox reached its memory limit ({}): the kernel killed a process ({killed} so far)",
                    resources.memory_bytes.map_or("unset".to_owned(), |bytes| format!("{} MiB", bytes >> 20))
                ),
            ),
            SandboxNotice::ProcessLimit { refused } => (
                AgentErrorReason::ProcessLimit,
                format!(
                    "the sandbox reached its process limit ({}): new processes are refused ({refused} refused so far)",
                    resources.pids.map_or("unset".to_owned(), |pids| pids.to_string())
                ),
            ),
        };
        tracing::warn!(session_id = %self.session.id, ?reason, "{message}");
        if let Err(error) = self.record(EventKind::System, agent_error(reason, message)).await {
            tracing::error!(session_id = %self.session.id, error = %error, "cannot record a sandbox limit");
        }
    }

    /// The agent's connection closed and its sandbox runs on: nobody can reach the agent,
    /// so the session ends `failed`, saying so.
    async fn on_agent_gone(&mut self) -> Flow {
        self.agent_gone_deadline = None;
        tracing::warn!(session_id = %self.session.id, "the agent closed its connection; ending the session");
        let mut data = agent_error(
            AgentErrorReason::AgentDisconnected,
            "The agent closed its connection to berth. Reopen the workspace to start it again.",
        );
        if let Some(error) = self.agent_close_error.take() {
            data["detail"] = Value::from(printable_tail(&error, &self.secrets));
        }
        if let Err(error) = self.record(EventKind::System, data).await {
            tracing::error!(session_id = %self.session.id, error = %error, "cannot record the agent's failure");
        }
        self.end_or_log(EndReason::Failed, "cannot end the session of a disconnected agent").await
    }

    /// The sandbox ended on its own: the session ends `failed`, saying so.
    async fn on_sandbox_exited(&mut self, exit: &str, stderr_tail: &str) -> Flow {
        tracing::warn!(session_id = %self.session.id, exit, stderr = stderr_tail.trim_end(), "the agent ended on its own");
        let mut data = agent_error(
            AgentErrorReason::AgentExited,
            format!("The agent stopped ({exit}). Reopen the workspace to start it again."),
        );
        data["stderr_tail"] = Value::from(printable_tail(stderr_tail, &self.secrets));
        if let Err(error) = self.record(EventKind::System, data).await {
            tracing::error!(session_id = %self.session.id, error = %error, "cannot record the agent's failure");
        }
        self.end_or_log(EndReason::Failed, "cannot end the session of a dead sandbox").await
    }

    // ---- state, events and the end

    async fn set_running(&mut self, running: bool) -> Result<(), EngineError> {
        self.running = running;
        if self.sessions.store.set_agent_running(&self.session.id, running).await? {
            self.session = self.sessions.load_session(&self.session.id).await?;
            self.publish();
        }
        Ok(())
    }

    /// Moves the session on by `event` — the transition `core` allows, compared and set
    /// in the store from the state this task knows — and tells everyone.
    async fn change_state(
        &mut self,
        event: SessionEvent,
        grace_expires_at: Option<chrono::DateTime<Utc>>,
    ) -> Result<(), EngineError> {
        let from = self.session.state;
        let to = from.on(event)?;
        if !self.sessions.store.update_live_session(&self.session.id, from, to, grace_expires_at).await? {
            return Err(EngineError::SessionNotActive);
        }
        self.session = self.sessions.load_session(&self.session.id).await?;
        self.publish();
        Ok(())
    }

    fn broadcast(&self, message: LiveMessage) {
        if let Some(sender) = &self.live {
            let _ = sender.send(Arc::new(message));
        }
    }

    fn publish(&self) {
        self.broadcast(LiveMessage::Session(self.session.clone()));
        self.sessions.publish(&self.session);
    }

    /// A `system` event with `code` and what `extra` adds.
    async fn say(&self, code: SystemCode, extra: Value) -> Result<Event, EngineError> {
        self.record(EventKind::System, system(code, extra)).await
    }

    /// Stores an event of this session, then sends it to its live clients.
    async fn record(&self, kind: EventKind, data: Value) -> Result<Event, EngineError> {
        let event = store_event(&self.sessions.store, &self.session, kind, data).await?;
        self.broadcast(LiveMessage::Event(event.clone()));
        Ok(event)
    }

    /// Answers every waiting question with `cancelled`, and says so.
    async fn cancel_questions(&mut self) -> Result<(), EngineError> {
        let pending: Vec<(String, PendingQuestion)> = self.questions.drain().collect();
        for (id, question) in pending {
            let _ = question.answer.send(None);
            self.record(EventKind::Answer, json!({ "question_id": id, "outcome": "cancelled" })).await?;
        }
        Ok(())
    }

    async fn end_or_log(&mut self, reason: EndReason, what: &str) -> Flow {
        match self.end(reason).await {
            Ok(_) => Flow::Ended,
            Err(error) => {
                tracing::error!(session_id = %self.session.id, error = %error, "{what}");
                Flow::Continue
            }
        }
    }

    /// Ends the session: questions cancelled, the sandbox powered off, every open tool call
    /// closed, the end stored and told, the slot given back. On a driver failure the
    /// session stays live and the failure is returned, so it can be retried.
    async fn end(&mut self, reason: EndReason) -> Result<Session, EngineError> {
        self.cancel_questions().await?;
        let ended = self
            .sessions
            .finish(&self.session, reason, Sandbox::Started, |event| {
                self.broadcast(LiveMessage::Event(event))
            })
            .await?;
        self.session = ended.clone();
        // Live clients hear of the end before the session's channel goes with its slot.
        self.broadcast(LiveMessage::Session(ended.clone()));
        self.slot = None;
        self.sessions.publish(&ended);
        Ok(ended)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The end of what an agent said (its error output, its reason for closing), as text
/// for the conversation: the person's secret values (`secrets`) hidden, at most 2 KiB,
/// control characters other than line ends dropped.
fn printable_tail(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        text = text.replace(secret.as_str(), "[secret]");
    }
    let start = text.len().saturating_sub(2048);
    let start = (start..=text.len()).find(|&at| text.is_char_boundary(at)).unwrap_or(text.len());
    text[start..].chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect()
}

#[cfg(test)]
mod tests {
    use super::printable_tail;

    #[test]
    fn a_tail_keeps_the_last_two_kib_of_lines_without_control_characters() {
        assert_eq!(
            printable_tail("error: no librt\n\u{1b}[31mred\u{7}\r\n", &[]),
            "error: no librt\n[31mred\n"
        );
        let long = format!("{}é{}", "a".repeat(3000), "b".repeat(2046));
        let tail = printable_tail(&long, &[]);
        assert!(tail.len() <= 2048 && tail.ends_with('b') && !tail.contains('a'), "{}", tail.len());
    }

    #[test]
    fn a_tail_never_carries_the_persons_secrets() {
        let secrets = vec!["sk-ant-alice-7".to_owned(), String::new()];
        let said = "Invalid API key sk-ant-alice-7 (ANTHROPIC_API_KEY=sk-ant-alice-7)\n";
        assert_eq!(printable_tail(said, &secrets), "Invalid API key [secret] (ANTHROPIC_API_KEY=[secret])\n");
    }
}
