//! The states the store's statements compare and set, all taken from `core`: no state
//! name is spelled in the store, the liveness predicate is built once from core's
//! [`SessionState::is_live`], and every move of a workspace is the one core's transition
//! table gives.

use berth_core::{SessionState, WorkspaceEvent, WorkspaceState};
use std::sync::LazyLock;

/// The SQL that holds for a live session's row: core calls every state but the end live
/// (a test holds it to that), and the partial indexes of live sessions are on this very
/// predicate, so queries written with it use them.
fn live_predicate(column: &str) -> String {
    format!("{column} <> '{}'", SessionState::Ended.as_str())
}

/// `state` is live (a query on `sessions` alone).
pub(crate) static LIVE: LazyLock<String> = LazyLock::new(|| live_predicate("state"));

/// `sessions.state` is live (a query that joins another table).
pub(crate) static SESSIONS_LIVE: LazyLock<String> = LazyLock::new(|| live_predicate("sessions.state"));

/// The state a session ends in.
pub(crate) fn ended() -> &'static str {
    SessionState::Ended.as_str()
}

/// A workspace state as stored.
pub(crate) fn workspace(state: WorkspaceState) -> &'static str {
    state.as_str()
}

/// The workspace state `event` moves `from` to, by core's table; `None` when core refuses.
pub(crate) fn workspace_after(from: WorkspaceState, event: WorkspaceEvent) -> Option<&'static str> {
    from.on(event).ok().map(WorkspaceState::as_str)
}

/// Where a session's end moves its workspace: from `active` by core's `SessionEnded`.
pub(crate) fn workspace_move_on_end() -> (&'static str, &'static str) {
    let from = WorkspaceState::Active;
    (from.as_str(), workspace_after(from, WorkspaceEvent::SessionEnded).unwrap_or(from.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_liveness_predicate_is_cores_liveness() {
        for state in SessionState::ALL {
            assert_eq!(state.is_live(), state != SessionState::Ended, "{state:?}");
        }
        assert_eq!(*LIVE, "state <> 'ended'");
        assert_eq!(*SESSIONS_LIVE, "sessions.state <> 'ended'");
    }

    #[test]
    fn a_sessions_end_moves_its_workspace_from_active_to_idle() {
        assert_eq!(workspace_move_on_end(), ("active", "idle"));
    }
}
