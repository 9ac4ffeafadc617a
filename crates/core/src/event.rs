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

/// The event kind for an ACP `session/update` variant (its `sessionUpdate` name).
/// Kinds berth does not know are kept under their own name, so nothing is lost.
pub fn kind_of_agent_update(session_update: &str) -> &str {
    match session_update {
        "agent_message_chunk" => "agent_message",
        "agent_thought_chunk" => "agent_thought",
        "user_message_chunk" => "user_message",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_become_messages_and_the_rest_keeps_its_name() {
        assert_eq!(kind_of_agent_update("agent_message_chunk"), "agent_message");
        assert_eq!(kind_of_agent_update("agent_thought_chunk"), "agent_thought");
        assert_eq!(kind_of_agent_update("tool_call"), "tool_call");
        assert_eq!(kind_of_agent_update("tool_call_update"), "tool_call_update");
        assert_eq!(kind_of_agent_update("plan"), "plan");
        assert_eq!(kind_of_agent_update("usage_update"), "usage_update");
    }
}
