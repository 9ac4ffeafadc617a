//! The conversation of a session: events stored before anyone sees them, what live
//! clients are sent, questions as people see them, failures as sentences, and tool calls
//! closed when a session ends. Plain functions over the store: the owner task
//! (`runtime`) and the endings (`end`) use them; people's prompts, answers and cancels
//! reach the owner task through `live`.

use crate::EngineError;
use berth_core::event::{AgentErrorReason, EventKind, SystemCode};
use berth_core::{Event, Session};
use berth_store::Store;
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::HashMap;
use tokio::sync::oneshot;

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
    pub(crate) answer: oneshot::Sender<Option<String>>,
}

/// A question as clients see it: `{id, title, options: [{id, label, kind}], tool_call}`.
pub(crate) fn question_body(id: &str, question: &berth_agent::client::Question) -> Value {
    let options: Vec<Value> = question
        .options
        .iter()
        .map(|option| json!({ "id": option.id, "label": option.label, "kind": option.kind }))
        .collect();
    json!({ "id": id, "title": question.title, "options": options, "tool_call": question.tool_call })
}

/// The body of a `system` event: its code, and what `extra` (an object) adds.
pub(crate) fn system(code: SystemCode, extra: Value) -> Value {
    let mut body = json!({ "code": code });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

/// An `agent_error` system event: a stable reason and a sentence for people.
pub(crate) fn agent_error(reason: AgentErrorReason, message: impl Into<String>) -> Value {
    system(SystemCode::AgentError, json!({ "reason": reason, "message": message.into() }))
}

/// What a person reads when their agent asks for credentials: which of the secrets its
/// catalogue entry needs they have not set (`missing`), and where to set them.
pub(crate) fn needs_credentials(missing: Vec<String>) -> Value {
    let message = match missing.as_slice() {
        [] => "The agent asks for credentials it does not have. Check the secrets it needs on your account \
               page (Secrets); they reach it from its next start."
            .to_owned(),
        names => format!(
            "The agent needs {} to work. Add {} on your account page (Secrets) or with `berth secret set {}`, \
             then open the workspace again.",
            names.join(", "),
            if names.len() == 1 { "it" } else { "them" },
            names[0]
        ),
    };
    system(SystemCode::AgentNeedsCredentials, json!({ "message": message, "missing": missing }))
}

/// Stores an event of `session`, taking the workspace's next `seq`. Its owner task sends
/// it to the live clients.
pub(crate) async fn store_event(
    store: &Store,
    session: &Session,
    kind: EventKind,
    data: Value,
) -> Result<Event, EngineError> {
    store_text(store, session, kind.as_str(), &data.to_string()).await
}

/// Stores an event whose body is JSON text already (an agent's update, passed through as
/// the agent crate serialised it).
pub(crate) async fn store_text(
    store: &Store,
    session: &Session,
    kind: &str,
    data: &str,
) -> Result<Event, EngineError> {
    Ok(store.append_event(&session.workspace_id, &session.id, Utc::now(), kind, data).await?)
}

/// Ends every tool call of `session` still pending or in progress with a closing
/// `tool_call_update` (`failed`, `reason: session_ended`), and answers every question
/// still waiting `cancelled`: the session ended, so none of them can finish, and none may
/// show as running or waiting forever. (Its owner cancels its questions itself; this
/// finds those of a session ended without it: a crash, a replica lost.)
pub(crate) async fn close_open_tool_calls(
    store: &Store,
    session: &Session,
) -> Result<Vec<Event>, EngineError> {
    // Only the kinds that open or close one: not the rest of a long history.
    const KINDS: [&str; 4] = ["tool_call", "tool_call_update", "question", "answer"];
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = store.session_events_of_kinds(&session.id, &KINDS, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        events.extend(page);
    }
    let mut closed = Vec::new();
    for id in waiting_questions(&events) {
        let cancelled = json!({ "question_id": id, "outcome": "cancelled" });
        closed.push(store_event(store, session, EventKind::Answer, cancelled).await?);
    }
    for id in open_tool_calls(&events) {
        let closing = json!({
            "sessionUpdate": "tool_call_update",
            "toolCallId": id,
            "status": "failed",
            "reason": "session_ended",
        });
        closed.push(store_event(store, session, EventKind::ToolCallUpdate, closing).await?);
    }
    Ok(closed)
}

/// The questions of a session's history that no `answer` event answered, oldest first.
pub(crate) fn waiting_questions(events: &[Event]) -> Vec<String> {
    let field = |event: &Event, pointer: &str| {
        serde_json::from_str::<Value>(&event.data)
            .ok()
            .and_then(|data| data.pointer(pointer).and_then(Value::as_str).map(str::to_owned))
    };
    let answered: std::collections::HashSet<String> =
        events.iter().filter(|e| e.kind == "answer").filter_map(|e| field(e, "/question_id")).collect();
    events
        .iter()
        .filter(|e| e.kind == "question")
        .filter_map(|e| field(e, "/question/id"))
        .filter(|id| !answered.contains(id))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::SessionId;

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

/// A failed turn as people read it: `agent_error` with a stable `reason` —
/// `agent_disconnected` when the connection to the agent broke, else `turn_failed` — and a
/// sentence; the agent's own words only when the agent crate found them a plain line.
pub(crate) fn turn_failure(failure: &berth_agent::client::TurnFailure) -> Value {
    use berth_agent::client::TurnFailure;
    match failure {
        TurnFailure::Disconnected | TurnFailure::AuthRequired => agent_error(
            AgentErrorReason::AgentDisconnected,
            "The connection to the agent broke off, so this turn stopped. Send the prompt again, or reopen the workspace.",
        ),
        TurnFailure::Failed { message: Some(line) } => agent_error(
            AgentErrorReason::TurnFailed,
            format!("The agent could not finish this turn: {line}."),
        ),
        TurnFailure::Failed { message: None } => {
            agent_error(AgentErrorReason::TurnFailed, "The agent could not finish this turn.")
        }
    }
}

#[cfg(test)]
mod turn_failure_tests {
    use super::*;
    use berth_agent::client::TurnFailure;

    #[test]
    fn a_failed_turn_reads_as_a_sentence() {
        let broken = turn_failure(&TurnFailure::Disconnected);
        assert_eq!(
            (broken["code"].as_str(), broken["reason"].as_str()),
            (Some("agent_error"), Some("agent_disconnected"))
        );
        let plain = turn_failure(&TurnFailure::Failed { message: Some("model overloaded".into()) });
        assert_eq!(plain["message"], "The agent could not finish this turn: model overloaded.");
        let bare = turn_failure(&TurnFailure::Failed { message: None });
        assert_eq!(
            (bare["reason"].as_str(), bare["message"].as_str()),
            (Some("turn_failed"), Some("The agent could not finish this turn."))
        );
    }
}
