//! The session's history: every prompt, agent update, question, answer and turn end,
//! numbered by `seq`, which grows by one within a workspace.

use crate::ids::SessionId;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub session_id: SessionId,
    pub at: DateTime<Utc>,
    /// `user_message`, `agent_message`, `agent_thought`, `tool_call`, `tool_call_update`,
    /// `plan`, `question`, `answer`, `turn_end`, `system`, or an agent's own update kind.
    pub kind: String,
    /// The event's JSON body, as text.
    pub data: String,
}

/// The kinds of event berth records itself; an agent's updates keep the kind the agent
/// crate reads from them (`agent_message`, `tool_call`, `plan`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    UserMessage,
    Question,
    Answer,
    TurnEnd,
    System,
    /// A tool call closed by berth when its session ended.
    ToolCallUpdate,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::UserMessage => "user_message",
            EventKind::Question => "question",
            EventKind::Answer => "answer",
            EventKind::TurnEnd => "turn_end",
            EventKind::System => "system",
            EventKind::ToolCallUpdate => "tool_call_update",
        }
    }
}

/// What a `system` event says (its `code`); the web UI words each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemCode {
    SessionStarted,
    SessionResumed,
    SessionClosed,
    AgentReady,
    /// The agent loaded its context of an earlier session (`agent.resume_context = auto`).
    AgentContextResumed,
    /// Something went wrong with the agent or its sandbox; `reason` says what.
    AgentError,
    TurnTimeout,
    AgentNeedsCredentials,
}

/// Why an `agent_error` happened (its `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentErrorReason {
    /// The agent's process ended on its own.
    AgentExited,
    /// The connection to the agent broke.
    AgentDisconnected,
    /// The agent failed a turn.
    TurnFailed,
    /// The session could not be made live after its sandbox started.
    StartFailed,
    MemoryLimit,
    ProcessLimit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_reasons_are_written_in_snake_case() {
        assert_eq!(
            serde_json::to_value(SystemCode::AgentNeedsCredentials).ok(),
            Some("agent_needs_credentials".into())
        );
        assert_eq!(serde_json::to_value(AgentErrorReason::StartFailed).ok(), Some("start_failed".into()));
        assert_eq!(EventKind::TurnEnd.as_str(), "turn_end");
    }
}
