//! The conversation of a live session: what the agent does becomes stored events (stored
//! before anyone sees them, then broadcast), questions wait for the first answer, and
//! prompts, answers and cancels from people reach the agent.

use crate::{Engine, EngineError};
use berth_agent::client::AgentEvent;
use berth_core::event::kind_of_agent_update;
use berth_core::{Event, Session, SessionId, SessionState, User};
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

/// How many live messages a slow client may fall behind before it is cut off (it then
/// reconnects with `after=` and loses nothing: the history is stored).
pub const LIVE_BUFFER: usize = 1024;

/// The most text a prompt may carry.
pub const MAX_PROMPT_BYTES: usize = 100 * 1024;

/// What a live-channel client is sent.
#[derive(Debug, Clone)]
pub enum LiveMessage {
    Event(Event),
    Session(Session),
    Question(Value),
}

pub(crate) struct PendingQuestion {
    /// The question as clients see it: `{id, title, options: [{id, label, kind}], tool_call}`.
    pub(crate) body: Value,
    answer: oneshot::Sender<Option<String>>,
}

/// Keeps a live-channel connection counted; when the last one of a session goes, the
/// person has left.
pub struct LiveAttachment {
    engine: Arc<Engine>,
    user: User,
    session_id: SessionId,
}

impl Drop for LiveAttachment {
    fn drop(&mut self) {
        let last = {
            let mut registry = self.engine.registry();
            match registry.live.get_mut(&self.session_id) {
                Some(runtime) => {
                    runtime.connections = runtime.connections.saturating_sub(1);
                    if runtime.connections == 0 {
                        // Nobody listens: the channel's buffer goes until someone attaches.
                        runtime.live = None;
                    }
                    runtime.connections == 0
                }
                None => false,
            }
        };
        if last {
            let (engine, user, id) = (Arc::clone(&self.engine), self.user.clone(), self.session_id.clone());
            self.engine.tasks.spawn(async move {
                if let Err(error) = engine.leave(&user, id.as_str()).await {
                    tracing::warn!(session_id = %id, error = %error, "leave after the last connection closed failed");
                }
            });
        }
    }
}

/// What a client gets when it attaches: a subscription taken before the history is read
/// (so nothing falls between the two), and the questions waiting now.
pub struct LiveSubscription {
    pub session: Session,
    pub messages: broadcast::Receiver<Arc<LiveMessage>>,
    pub pending_questions: Vec<Value>,
    pub attachment: LiveAttachment,
}

fn question_body(id: &str, request: &Value) -> Value {
    let tool_call = request.get("toolCall").cloned().unwrap_or(Value::Null);
    let options: Vec<Value> = request
        .get("options")
        .and_then(Value::as_array)
        .map(|options| {
            options
                .iter()
                .map(|option| json!({ "id": option["optionId"], "label": option["name"], "kind": option["kind"] }))
                .collect()
        })
        .unwrap_or_default();
    let title = tool_call.get("title").and_then(Value::as_str).unwrap_or("The agent asks for permission");
    json!({ "id": id, "title": title, "options": options, "tool_call": tool_call })
}

impl Engine {
    pub(crate) fn broadcast_live(&self, session: &SessionId, message: LiveMessage) {
        if let Some(sender) = self.registry().live.get(session).and_then(|runtime| runtime.live.as_ref()) {
            let _ = sender.send(Arc::new(message));
        }
    }

    /// Stores an event of `session` (taking the workspace's next `seq`), then sends it to
    /// the session's live clients.
    pub(crate) async fn record_event(
        &self,
        session: &Session,
        kind: &str,
        data: Value,
    ) -> Result<Event, EngineError> {
        let event = self
            .store
            .append_event(&session.workspace_id, &session.id, Utc::now(), kind, &data.to_string())
            .await?;
        self.broadcast_live(&session.id, LiveMessage::Event(event.clone()));
        Ok(event)
    }

    /// Turns the sandbox's limit notices into `system agent_error` events, so a memory
    /// hog or a fork bomb shows in the conversation instead of a silent hang.
    pub(crate) fn report_limits(
        self: &Arc<Self>,
        session: &Session,
        mut notices: mpsc::UnboundedReceiver<berth_sandbox::SandboxNotice>,
    ) {
        let engine = Arc::clone(self);
        let session = session.clone();
        self.tasks.spawn(async move {
            loop {
                let notice = tokio::select! {
                    notice = notices.recv() => notice,
                    () = engine.shutdown.cancelled() => None,
                };
                let Some(notice) = notice else { break };
                let resources = engine.config.resources;
                let (reason, message) = match notice {
                    berth_sandbox::SandboxNotice::MemoryLimit { killed } => (
                        "memory_limit",
                        format!(
                            "the sandbox reached its memory limit ({}): the kernel killed a process \
                             ({killed} so far)",
                            resources.memory_bytes.map_or("unset".to_owned(), |bytes| format!("{} MiB", bytes >> 20))
                        ),
                    ),
                    berth_sandbox::SandboxNotice::ProcessLimit { refused } => (
                        "process_limit",
                        format!(
                            "the sandbox reached its process limit ({}): new processes are refused \
                             ({refused} refused so far)",
                            resources.pids.map_or("unset".to_owned(), |pids| pids.to_string())
                        ),
                    ),
                };
                tracing::warn!(session_id = %session.id, reason, "{message}");
                let data = json!({ "code": "agent_error", "reason": reason, "message": message });
                if let Err(error) = engine.record_event(&session, "system", data).await {
                    tracing::error!(session_id = %session.id, error = %error, "cannot record a sandbox limit");
                }
            }
        });
    }

    pub(crate) fn pump_agent_events(
        self: &Arc<Self>,
        session: &Session,
        mut events: mpsc::UnboundedReceiver<AgentEvent>,
    ) {
        let engine = Arc::clone(self);
        let session = session.clone();
        self.tasks.spawn(async move {
            // Until the agent is ready it may replay an earlier session (`session/load`):
            // those updates are already in the history.
            let mut ready = false;
            let turn_timeout = engine.config.turn_timeout;
            loop {
                let turn_active = engine.registry().live.get(&session.id).is_some_and(|runtime| runtime.turn_active);
                let next = async {
                    if turn_active {
                        tokio::time::timeout(turn_timeout, events.recv()).await.map_err(|_| ())
                    } else {
                        Ok(events.recv().await)
                    }
                };
                let event = tokio::select! {
                    event = next => event,
                    () = engine.shutdown.cancelled() => Ok(None),
                };
                let event = match event {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(()) => {
                        engine.time_out_turn(&session).await;
                        continue;
                    }
                };
                if let Err(error) = engine.on_agent_event(&session, event, &mut ready).await {
                    tracing::error!(session_id = %session.id, error = %error, "cannot record what the agent did");
                }
            }
        });
    }

    async fn on_agent_event(
        &self,
        session: &Session,
        event: AgentEvent,
        ready: &mut bool,
    ) -> Result<(), EngineError> {
        match event {
            AgentEvent::Ready { agent_session_id, resumed } => {
                *ready = true;
                self.store.set_agent_session_id(&session.workspace_id, &agent_session_id).await?;
                if resumed {
                    self.record_event(session, "system", json!({ "code": "agent_context_resumed" })).await?;
                }
                self.record_event(session, "system", json!({ "code": "agent_ready" })).await?;
            }
            AgentEvent::Update(update) => {
                if *ready {
                    let kind =
                        kind_of_agent_update(update["sessionUpdate"].as_str().unwrap_or("agent_update"))
                            .to_owned();
                    self.record_event(session, &kind, update).await?;
                }
            }
            AgentEvent::Question { request, answer } => {
                let id = format!("q_{}", berth_core::SessionId::generate().as_str().trim_start_matches("s_"));
                let body = question_body(&id, &request);
                self.record_event(session, "question", json!({ "question": body })).await?;
                let parked = match self.registry().live.get_mut(&session.id) {
                    Some(runtime) => {
                        runtime.questions.insert(id.clone(), PendingQuestion { body: body.clone(), answer });
                        true
                    }
                    None => false,
                };
                if parked {
                    self.broadcast_live(&session.id, LiveMessage::Question(body));
                    self.set_agent_running(&session.id, true).await?;
                }
            }
            AgentEvent::TurnEnded { stop_reason } => {
                self.set_turn_active(&session.id, false);
                // Not running any more before anyone hears of the end, so a prompt sent on
                // seeing `turn_end` is taken.
                self.set_agent_running(&session.id, false).await?;
                self.record_event(session, "turn_end", json!({ "stop_reason": stop_reason })).await?;
            }
            AgentEvent::TurnFailed { code, message } => {
                self.set_turn_active(&session.id, false);
                let system = if code == berth_agent::client::AUTH_REQUIRED {
                    self.needs_credentials(session).await?
                } else {
                    turn_failure(code, &message)
                };
                self.set_agent_running(&session.id, false).await?;
                self.record_event(session, "system", system).await?;
                self.record_event(session, "turn_end", json!({ "stop_reason": "error" })).await?;
            }
            AgentEvent::NeedsCredentials => {
                let system = self.needs_credentials(session).await?;
                self.record_event(session, "system", system).await?;
            }
            AgentEvent::Closed { error } => {
                if let Some(error) = error {
                    tracing::warn!(session_id = %session.id, error, "the agent connection closed");
                }
            }
        }
        Ok(())
    }

    /// What a person reads when their agent asks for credentials: which of the secrets
    /// its catalogue entry needs they have not set, and where to set them.
    async fn needs_credentials(&self, session: &Session) -> Result<serde_json::Value, EngineError> {
        let workspace = self.store.workspace(&session.workspace_id).await?;
        let needs = workspace
            .and_then(|workspace| workspace.agent)
            .and_then(|name| self.config.agent(&name).map(|entry| entry.needs.clone()))
            .unwrap_or_default();
        let have = self.secret_names(&session.user_id).await?;
        let missing: Vec<String> = needs.into_iter().filter(|name| !have.contains(name)).collect();
        let message = match missing.as_slice() {
            [] => {
                "The agent asks for credentials it does not have. Check the secrets it needs on your account \
                   page (Secrets); they reach it from its next start."
                    .to_owned()
            }
            names => format!(
                "The agent needs {} to work. Add {} on your account page (Secrets) or with `berth secret set {}`, \
                 then open the workspace again.",
                names.join(", "),
                if names.len() == 1 { "it" } else { "them" },
                names[0]
            ),
        };
        Ok(json!({ "code": "agent_needs_credentials", "message": message, "missing": missing }))
    }

    fn set_turn_active(&self, session: &SessionId, active: bool) {
        if let Some(runtime) = self.registry().live.get_mut(session) {
            runtime.turn_active = active;
        }
    }

    /// The agent sent nothing for `agent.turn_timeout` during a turn: cancel the turn.
    /// The agent then ends it (`cancelled`) as for a person's cancel.
    async fn time_out_turn(&self, session: &Session) {
        tracing::warn!(session_id = %session.id, "the agent's turn timed out; cancelling it");
        self.set_turn_active(&session.id, false);
        let message = format!(
            "the agent sent nothing for {} s; its turn is cancelled",
            self.config.turn_timeout.as_secs()
        );
        let recorded =
            self.record_event(session, "system", json!({ "code": "turn_timeout", "message": message })).await;
        if let Err(error) = recorded.map(drop).and(self.cancel_questions(session).await) {
            tracing::error!(session_id = %session.id, error = %error, "cannot record a turn's time-out");
        }
        if let Some(agent) = self.agent_of(&session.id) {
            agent.cancel();
        }
    }

    /// Ends every tool call of `session` still pending or in progress with a closing
    /// `tool_call_update` (`failed`, `reason: session_ended`): the session ended, so none
    /// of them can finish, and none may show as running forever.
    pub(crate) async fn close_open_tool_calls(&self, session: &Session) -> Result<(), EngineError> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let page = self.store.session_events(&session.id, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            events.extend(page.into_iter().filter(|e| e.kind == "tool_call" || e.kind == "tool_call_update"));
        }
        for id in open_tool_calls(&events) {
            let closing = json!({
                "sessionUpdate": "tool_call_update",
                "toolCallId": id,
                "status": "failed",
                "reason": "session_ended",
            });
            self.record_event(session, "tool_call_update", closing).await?;
        }
        Ok(())
    }

    fn agent_of(&self, session: &SessionId) -> Option<Arc<berth_agent::client::AgentConnection>> {
        self.registry().live.get(session).and_then(|runtime| runtime.agent.clone())
    }
}

/// The tool calls of a session's history (oldest first) still `pending` or `in_progress`,
/// in the order they were first reported. A `tool_call` without a status is pending
/// (ACP); a `tool_call_update` with one moves it on.
pub(crate) fn open_tool_calls(events: &[Event]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut status: HashMap<String, String> = HashMap::new();
    for event in events.iter().filter(|event| event.kind == "tool_call" || event.kind == "tool_call_update") {
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else { continue };
        let Some(id) = data["toolCallId"].as_str() else { continue };
        let reported = data["status"].as_str();
        if !status.contains_key(id) {
            order.push(id.to_owned());
        }
        match (reported, event.kind.as_str()) {
            (Some(reported), _) => {
                status.insert(id.to_owned(), reported.to_owned());
            }
            (None, "tool_call") => {
                status.entry(id.to_owned()).or_insert_with(|| "pending".to_owned());
            }
            (None, _) => {}
        }
    }
    order
        .into_iter()
        .filter(|id| matches!(status.get(id).map(String::as_str), Some("pending" | "in_progress")))
        .collect()
}

fn not_active() -> EngineError {
    EngineError::Refused { code: "session_not_active", message: "the session is not active".into() }
}

impl Engine {
    /// A person's prompt: stored, then sent to the agent. Refused while a turn runs.
    pub async fn prompt(&self, caller: &User, session_id: &str, text: &str) -> Result<Event, EngineError> {
        let session = self.own_session(caller, session_id).await?;
        if text.trim().is_empty() || text.len() > MAX_PROMPT_BYTES {
            return Err(EngineError::Refused {
                code: "invalid_prompt",
                message: format!("a prompt holds 1 to {MAX_PROMPT_BYTES} bytes"),
            });
        }
        if session.state != SessionState::Active {
            return Err(not_active());
        }
        let agent = self.claim_turn(&session.id)?;
        let started = async {
            self.set_agent_running(&session.id, true).await?;
            self.record_event(&session, "user_message", json!({ "text": text })).await
        };
        let event = match started.await {
            Ok(event) => event,
            Err(error) => {
                // Not sent: the turn is free again.
                self.set_turn_active(&session.id, false);
                return Err(error);
            }
        };
        agent.prompt(text.to_owned());
        Ok(event)
    }

    /// Takes the session's turn for a prompt, in one step under the registry's lock, so of
    /// two prompts sent at the same instant (two tabs) exactly one is taken and the other
    /// is refused `turn_in_progress`.
    fn claim_turn(
        &self,
        session: &SessionId,
    ) -> Result<Arc<berth_agent::client::AgentConnection>, EngineError> {
        let mut registry = self.registry();
        let runtime = registry.live.get_mut(session).ok_or_else(not_active)?;
        let agent = runtime.agent.clone().ok_or_else(not_active)?;
        if runtime.turn_active {
            return Err(EngineError::Refused {
                code: "turn_in_progress",
                message: "the agent is still working on the last prompt; wait for it or cancel it".into(),
            });
        }
        let per_second = self.config.prompts_per_second;
        if !runtime.prompts.admit(tokio::time::Instant::now().into_std(), per_second) {
            return Err(EngineError::Refused {
                code: "rate_limited",
                message: format!("at most {per_second} prompts a second; send it again in a moment"),
            });
        }
        runtime.turn_active = true;
        Ok(agent)
    }

    /// Answers a waiting question; the first answer wins.
    pub async fn answer(
        &self,
        caller: &User,
        session_id: &str,
        question_id: &str,
        option_id: &str,
    ) -> Result<Event, EngineError> {
        let session = self.own_session(caller, session_id).await?;
        let pending = {
            let mut registry = self.registry();
            let runtime = registry.live.get_mut(&session.id);
            let valid = |pending: &PendingQuestion| {
                pending.body["options"]
                    .as_array()
                    .is_some_and(|options| options.iter().any(|o| o["id"] == option_id))
            };
            match runtime.and_then(|runtime| runtime.questions.remove_entry(question_id)) {
                Some((_, pending)) if valid(&pending) => pending,
                Some((id, pending)) => {
                    registry.live.get_mut(&session.id).map(|runtime| runtime.questions.insert(id, pending));
                    return Err(EngineError::Refused {
                        code: "invalid_option",
                        message: format!("'{option_id}' is not an option of this question"),
                    });
                }
                None => {
                    return Err(EngineError::Refused {
                        code: "question_not_pending",
                        message: "this question was already answered or is not waiting".into(),
                    });
                }
            }
        };
        let _ = pending.answer.send(Some(option_id.to_owned()));
        self.record_event(&session, "answer", json!({ "question_id": question_id, "option_id": option_id }))
            .await
    }

    /// Asks the agent to stop its turn; questions still waiting are answered `cancelled`.
    pub async fn cancel(&self, caller: &User, session_id: &str) -> Result<(), EngineError> {
        let session = self.own_session(caller, session_id).await?;
        self.cancel_questions(&session).await?;
        if let Some(agent) = self.agent_of(&session.id) {
            agent.cancel();
        }
        Ok(())
    }

    /// Answers every waiting question of `session` with `cancelled`, and says so.
    pub(crate) async fn cancel_questions(&self, session: &Session) -> Result<(), EngineError> {
        let pending: Vec<(String, PendingQuestion)> = match self.registry().live.get_mut(&session.id) {
            Some(runtime) => runtime.questions.drain().collect(),
            None => Vec::new(),
        };
        for (id, question) in pending {
            let _ = question.answer.send(None);
            self.record_event(session, "answer", json!({ "question_id": id, "outcome": "cancelled" }))
                .await?;
        }
        Ok(())
    }

    /// Attaches a live-channel client to the caller's session. A disconnected session
    /// becomes active again.
    pub async fn attach_live(
        self: &Arc<Self>,
        caller: &User,
        session_id: &str,
    ) -> Result<LiveSubscription, EngineError> {
        let session = self.own_session(caller, session_id).await?;
        if !session.state.is_live() {
            return Err(EngineError::Refused {
                code: "session_ended",
                message: "the session has ended".into(),
            });
        }
        let (messages, pending_questions) = {
            let mut registry = self.registry();
            let Some(runtime) = registry.live.get_mut(&session.id) else {
                return Err(EngineError::Refused {
                    code: "session_ended",
                    message: "the session has ended".into(),
                });
            };
            runtime.connections += 1;
            let questions = runtime.questions.values().map(|question| question.body.clone()).collect();
            let sender = runtime.live.get_or_insert_with(|| tokio::sync::broadcast::channel(LIVE_BUFFER).0);
            (sender.subscribe(), questions)
        };
        let attachment =
            LiveAttachment { engine: Arc::clone(self), user: caller.clone(), session_id: session.id.clone() };
        if session.state == SessionState::Disconnected {
            self.hold_grace_for_reconnect(&session.user_id, &session.workspace_id);
            self.resume(&session.id).await?;
        }
        let session = self.load_session(&session.id).await?;
        Ok(LiveSubscription { session, messages, pending_questions, attachment })
    }

    /// History of one of the caller's own sessions, after `after`, at most `limit`. The
    /// conversation is private: administrators can close anyone's session, not read it.
    pub async fn session_events(
        &self,
        caller: &User,
        session_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, EngineError> {
        let session = self.own_session(caller, session_id).await?;
        Ok(self.store.session_events(&session.id, after, limit).await?)
    }

    /// History of one of the caller's workspaces across its sessions.
    pub async fn workspace_events(
        &self,
        caller: &User,
        workspace_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, EngineError> {
        let workspace = self.workspace(caller, workspace_id).await?;
        Ok(self.store.workspace_events(&workspace.id, after, limit).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, kind: &str, data: Value) -> Event {
        Event {
            seq,
            session_id: SessionId::generate(),
            at: Utc::now(),
            kind: kind.to_owned(),
            data: data.to_string(),
        }
    }

    #[test]
    fn the_tool_calls_left_open_are_the_pending_and_running_ones() {
        let events = [
            event(1, "tool_call", json!({ "toolCallId": "ran", "status": "pending" })),
            event(2, "tool_call_update", json!({ "toolCallId": "ran", "status": "in_progress" })),
            event(3, "tool_call_update", json!({ "toolCallId": "ran", "status": "completed" })),
            event(4, "tool_call", json!({ "toolCallId": "asked" })),
            event(5, "tool_call", json!({ "toolCallId": "running", "status": "pending" })),
            event(6, "tool_call_update", json!({ "toolCallId": "running", "status": "in_progress" })),
            event(7, "tool_call_update", json!({ "toolCallId": "running", "content": [] })),
            event(8, "tool_call", json!({ "toolCallId": "refused", "status": "pending" })),
            event(9, "tool_call_update", json!({ "toolCallId": "refused", "status": "failed" })),
            event(10, "tool_call_update", json!("not an object")),
            event(11, "agent_message", json!({ "toolCallId": "not-a-tool-call", "status": "pending" })),
        ];
        assert_eq!(open_tool_calls(&events), ["asked", "running"]);
    }
}

/// JSON-RPC's "internal error": what a broken connection to the agent reads as.
const INTERNAL_ERROR: i32 = -32603;

/// A failed turn as people read it: `agent_error` with a stable `reason` —
/// `agent_disconnected` when the connection to the agent broke, else `turn_failed` — and a
/// sentence; the agent's own words only when they are a plain line, never protocol text.
fn turn_failure(code: i32, message: &str) -> serde_json::Value {
    let lowered = message.to_ascii_lowercase();
    if code == INTERNAL_ERROR || lowered.contains("transport") || lowered.contains("connection closed") {
        return json!({ "code": "agent_error", "reason": "agent_disconnected",
            "message": "The connection to the agent broke off, so this turn stopped. Send the prompt again, or reopen the workspace." });
    }
    let line = message.lines().next().unwrap_or_default().trim();
    let plain = !line.is_empty() && !line.contains(['{', '}']) && line.len() <= 300;
    let sentence = if plain {
        format!("The agent could not finish this turn: {}", line.trim_end_matches('.'))
    } else {
        "The agent could not finish this turn.".to_owned()
    };
    json!({ "code": "agent_error", "reason": "turn_failed", "message": format!("{}.", sentence.trim_end_matches('.')) })
}

#[cfg(test)]
mod turn_failure_tests {
    use super::turn_failure;

    #[test]
    fn a_failed_turn_reads_as_a_sentence_without_protocol_text() {
        let broken = turn_failure(-32603, "Internal error");
        assert_eq!(broken["reason"], "agent_disconnected");
        let raw =
            turn_failure(-32002, "Incoming transport closed: { \"reason\": \"incoming_transport_closed\" }");
        assert_eq!(raw["reason"], "agent_disconnected");
        assert!(!raw["message"].as_str().unwrap().contains('{'));
        let plain = turn_failure(-32001, "model overloaded");
        assert_eq!(plain["message"], "The agent could not finish this turn: model overloaded.");
        let json_ish = turn_failure(-32001, "{\"detail\": 1}");
        assert_eq!(json_ish["message"], "The agent could not finish this turn.");
    }
}
