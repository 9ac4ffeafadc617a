//! Sessions: a person's live connection to a workspace's running sandbox and agent.
//! `starting → active ⇄ disconnected`, and `ended` (with a reason) from any live state.
//! The decisions about opening, leaving and cleaning up live here as pure functions.

use crate::ids::{SessionId, UserId, WorkspaceId};
use crate::limits::{Limits, OnUserLimit};
use crate::workspace::WorkspaceState;
use chrono::{DateTime, Utc};
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// The sandbox is powering on.
    Starting,
    /// The sandbox runs and a person is (or may be) attached.
    Active,
    /// The person left while the agent was working; the grace window runs.
    Disconnected,
    /// Over; `end_reason` says why. The sandbox is off.
    Ended,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    Closed,
    ClosedAll,
    Replaced,
    Left,
    GraceExpired,
    Deleted,
    Failed,
    ServerRestart,
    /// The replica that owned it stopped renewing its lease; another one ended it.
    ReplicaLost,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub workspace_id: WorkspaceId,
    pub user_id: UserId,
    pub state: SessionState,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<EndReason>,
    pub grace_expires_at: Option<DateTime<Utc>>,
    /// True from a prompt to the end of its turn, or while a question waits.
    pub agent_running: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a session that is {from} cannot take {event:?}")]
pub struct SessionTransitionError {
    pub from: SessionState,
    pub event: SessionEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    SandboxRunning,
    /// The person left (leave signal or dropped connection) while the agent works.
    LeftDuringRun,
    Reconnected,
    Ended(EndReason),
}

impl SessionState {
    pub const ALL: [SessionState; 4] =
        [SessionState::Starting, SessionState::Active, SessionState::Disconnected, SessionState::Ended];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Starting => "starting",
            SessionState::Active => "active",
            SessionState::Disconnected => "disconnected",
            SessionState::Ended => "ended",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == value)
    }

    pub fn is_live(self) -> bool {
        match self {
            SessionState::Starting | SessionState::Active | SessionState::Disconnected => true,
            SessionState::Ended => false,
        }
    }

    pub fn on(self, event: SessionEvent) -> Result<SessionState, SessionTransitionError> {
        use SessionEvent as E;
        use SessionState as S;
        match (self, event) {
            (S::Starting, E::SandboxRunning) => Ok(S::Active),
            (S::Active, E::LeftDuringRun) => Ok(S::Disconnected),
            (S::Disconnected, E::Reconnected) => Ok(S::Active),
            (S::Starting | S::Active | S::Disconnected, E::Ended(_)) => Ok(S::Ended),
            (S::Starting, E::LeftDuringRun | E::Reconnected)
            | (S::Active, E::SandboxRunning | E::Reconnected)
            | (S::Disconnected, E::SandboxRunning | E::LeftDuringRun)
            | (S::Ended, _) => Err(SessionTransitionError { from: self, event }),
        }
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EndReason {
    pub const ALL: [EndReason; 10] = [
        EndReason::Closed,
        EndReason::ClosedAll,
        EndReason::Replaced,
        EndReason::Left,
        EndReason::GraceExpired,
        EndReason::Deleted,
        EndReason::Failed,
        EndReason::ServerRestart,
        EndReason::ReplicaLost,
        EndReason::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Closed => "closed",
            EndReason::ClosedAll => "closed_all",
            EndReason::Replaced => "replaced",
            EndReason::Left => "left",
            EndReason::GraceExpired => "grace_expired",
            EndReason::Deleted => "deleted",
            EndReason::Failed => "failed",
            EndReason::ServerRestart => "server_restart",
            EndReason::ReplicaLost => "replica_lost",
            EndReason::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == value)
    }
}

impl Session {
    /// The terminal command that continues this session.
    pub fn resume_command(&self) -> String {
        format!("berth attach {}", self.id)
    }
}

/// What opening a workspace should do, decided from the facts at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenDecision {
    /// The workspace already has a live session: attach to it, start nothing.
    Resume(SessionId),
    /// Start a new session after powering these sessions off (oldest first).
    Open { replace: Vec<SessionId> },
    /// The workspace is initialising or in error.
    NotReady(WorkspaceState),
    /// Policy `reject`: the user is at their limit; these sessions are in the way.
    UserLimitReached { blocking: Vec<SessionId> },
    /// Every sandbox slot of the installation is taken.
    ControllersBusy,
}

/// A live session of the user who opens, as the open decision needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSessionSummary {
    pub id: SessionId,
    pub workspace_id: WorkspaceId,
    pub started_at: DateTime<Utc>,
}

/// Decides what opening `workspace_id` does for a user whose live sessions are
/// `users_live`, with `running_sandboxes` slots taken on the installation.
pub fn decide_open(
    workspace_id: &WorkspaceId,
    workspace_state: WorkspaceState,
    users_live: &[LiveSessionSummary],
    running_sandboxes: u32,
    limits: &Limits,
) -> OpenDecision {
    if let Some(existing) = users_live.iter().find(|session| &session.workspace_id == workspace_id) {
        return OpenDecision::Resume(existing.id.clone());
    }
    if !workspace_state.can_open() {
        return OpenDecision::NotReady(workspace_state);
    }
    let mut oldest_first: Vec<&LiveSessionSummary> = users_live.iter().collect();
    oldest_first.sort_by(|a, b| a.started_at.cmp(&b.started_at).then_with(|| a.id.cmp(&b.id)));
    let limit = limits.sessions_per_user as usize;
    let over_by = (oldest_first.len() + 1).saturating_sub(limit);
    let replace: Vec<SessionId> = match (over_by, limits.on_user_limit) {
        (0, _) => Vec::new(),
        (_, OnUserLimit::Reject) => {
            return OpenDecision::UserLimitReached {
                blocking: oldest_first.iter().map(|session| session.id.clone()).collect(),
            };
        }
        (count, OnUserLimit::Replace) => {
            oldest_first.iter().take(count).map(|session| session.id.clone()).collect()
        }
    };
    // Replacing frees the replaced sessions' slots for the new one.
    let slots_after_replacing = running_sandboxes.saturating_sub(replace.len() as u32);
    if slots_after_replacing >= limits.running_sandboxes {
        return OpenDecision::ControllersBusy;
    }
    OpenDecision::Open { replace }
}

/// What a person leaving (leave signal, dropped connection) does to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveOutcome {
    /// No run in progress: end the session (`left`) and power the sandbox off.
    End,
    /// A run is in progress: keep the agent going for `grace`, then end (`grace_expired`).
    Disconnect { grace: Duration },
}

pub fn decide_leave(agent_running: bool, reconnect_grace: Duration) -> LeaveOutcome {
    if agent_running { LeaveOutcome::Disconnect { grace: reconnect_grace } } else { LeaveOutcome::End }
}

/// The overall word for a close-all, from what closed and what failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAllOutcome {
    ActiveWorkspacesClosed,
    CleanupPartiallyComplete,
    NothingToClose,
}

impl CloseAllOutcome {
    pub fn from_counts(closed: usize, failed: usize) -> CloseAllOutcome {
        match (closed, failed) {
            (0, 0) => CloseAllOutcome::NothingToClose,
            (_, 0) => CloseAllOutcome::ActiveWorkspacesClosed,
            _ => CloseAllOutcome::CleanupPartiallyComplete,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CloseAllOutcome::ActiveWorkspacesClosed => "active_workspaces_closed",
            CloseAllOutcome::CleanupPartiallyComplete => "cleanup_partially_complete",
            CloseAllOutcome::NothingToClose => "nothing_to_close",
        }
    }

    /// The words a person reads (DESIGN.md §1).
    pub fn headline(self) -> &'static str {
        match self {
            CloseAllOutcome::ActiveWorkspacesClosed => "Active workspaces closed",
            CloseAllOutcome::CleanupPartiallyComplete => "Workspace cleanup partially complete",
            CloseAllOutcome::NothingToClose => "No active workspaces to close",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionEvent as E;
    use SessionState as S;
    use chrono::TimeZone;

    #[test]
    fn every_state_event_pair_is_allowed_or_refused_as_designed() {
        let events = [
            E::SandboxRunning,
            E::LeftDuringRun,
            E::Reconnected,
            E::Ended(EndReason::Closed),
            E::Ended(EndReason::GraceExpired),
        ];
        let allowed = [
            (S::Starting, E::SandboxRunning, S::Active),
            (S::Active, E::LeftDuringRun, S::Disconnected),
            (S::Disconnected, E::Reconnected, S::Active),
            (S::Starting, E::Ended(EndReason::Closed), S::Ended),
            (S::Active, E::Ended(EndReason::Closed), S::Ended),
            (S::Disconnected, E::Ended(EndReason::Closed), S::Ended),
            (S::Starting, E::Ended(EndReason::GraceExpired), S::Ended),
            (S::Active, E::Ended(EndReason::GraceExpired), S::Ended),
            (S::Disconnected, E::Ended(EndReason::GraceExpired), S::Ended),
        ];
        for from in S::ALL {
            for event in events {
                let expected =
                    allowed.iter().find(|(s, e, _)| *s == from && *e == event).map(|(_, _, to)| *to);
                match (from.on(event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from} on {event:?}"),
                    (Err(refusal), None) => assert_eq!(refusal, SessionTransitionError { from, event }),
                    (got, want) => panic!("{from} on {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for state in S::ALL {
            assert_eq!(S::parse(state.as_str()), Some(state));
        }
        for reason in EndReason::ALL {
            assert_eq!(EndReason::parse(reason.as_str()), Some(reason));
        }
        let live: Vec<_> = S::ALL.into_iter().filter(|s| s.is_live()).collect();
        assert_eq!(live, [S::Starting, S::Active, S::Disconnected]);
    }

    fn live(n: i64) -> LiveSessionSummary {
        LiveSessionSummary {
            id: SessionId::generate(),
            workspace_id: WorkspaceId::generate(),
            started_at: Utc.timestamp_opt(1_700_000_000 + n, 0).single().unwrap(),
        }
    }

    fn limits(per_user: u32, policy: OnUserLimit, running: u32) -> Limits {
        Limits { sessions_per_user: per_user, on_user_limit: policy, running_sandboxes: running }
    }

    #[test]
    fn opening_the_workspace_of_a_live_session_resumes_it() {
        let existing = live(0);
        let decision = decide_open(
            &existing.workspace_id,
            WorkspaceState::Active,
            std::slice::from_ref(&existing),
            64,
            &Limits::default(),
        );
        assert_eq!(decision, OpenDecision::Resume(existing.id));
    }

    #[test]
    fn only_ready_or_idle_workspaces_open() {
        let target = WorkspaceId::generate();
        for state in [WorkspaceState::Initialising, WorkspaceState::Error] {
            assert_eq!(
                decide_open(&target, state, &[], 0, &Limits::default()),
                OpenDecision::NotReady(state)
            );
        }
        for state in [WorkspaceState::Ready, WorkspaceState::Idle] {
            assert_eq!(
                decide_open(&target, state, &[], 0, &Limits::default()),
                OpenDecision::Open { replace: vec![] }
            );
        }
    }

    #[test]
    fn replace_powers_off_the_oldest_sessions_over_the_limit() {
        let (old, middle, new) = (live(1), live(2), live(3));
        let users_live = [new.clone(), old.clone(), middle.clone()];
        let target = WorkspaceId::generate();
        let one =
            decide_open(&target, WorkspaceState::Idle, &users_live, 3, &limits(1, OnUserLimit::Replace, 64));
        assert_eq!(
            one,
            OpenDecision::Open { replace: vec![old.id.clone(), middle.id.clone(), new.id.clone()] }
        );
        let three =
            decide_open(&target, WorkspaceState::Idle, &users_live, 3, &limits(3, OnUserLimit::Replace, 64));
        assert_eq!(three, OpenDecision::Open { replace: vec![old.id.clone()] });
        let four =
            decide_open(&target, WorkspaceState::Idle, &users_live, 3, &limits(4, OnUserLimit::Replace, 64));
        assert_eq!(four, OpenDecision::Open { replace: vec![] });
    }

    #[test]
    fn reject_lists_every_blocking_session_oldest_first() {
        let (old, new) = (live(1), live(2));
        let decision = decide_open(
            &WorkspaceId::generate(),
            WorkspaceState::Ready,
            &[new.clone(), old.clone()],
            2,
            &limits(2, OnUserLimit::Reject, 64),
        );
        assert_eq!(decision, OpenDecision::UserLimitReached { blocking: vec![old.id, new.id] });
    }

    #[test]
    fn the_global_limit_refuses_unless_replacing_frees_a_slot() {
        let target = WorkspaceId::generate();
        let full = limits(1, OnUserLimit::Replace, 4);
        assert_eq!(decide_open(&target, WorkspaceState::Ready, &[], 4, &full), OpenDecision::ControllersBusy);
        assert_eq!(
            decide_open(&target, WorkspaceState::Ready, &[], 3, &full),
            OpenDecision::Open { replace: vec![] }
        );
        let mine = live(1);
        assert_eq!(
            decide_open(&target, WorkspaceState::Ready, std::slice::from_ref(&mine), 4, &full),
            OpenDecision::Open { replace: vec![mine.id] }
        );
    }

    #[test]
    fn leaving_ends_at_once_unless_a_run_is_in_progress() {
        let grace = Duration::from_secs(300);
        assert_eq!(decide_leave(false, grace), LeaveOutcome::End);
        assert_eq!(decide_leave(true, grace), LeaveOutcome::Disconnect { grace });
    }

    #[test]
    fn close_all_outcomes() {
        assert_eq!(CloseAllOutcome::from_counts(0, 0), CloseAllOutcome::NothingToClose);
        assert_eq!(CloseAllOutcome::from_counts(3, 0), CloseAllOutcome::ActiveWorkspacesClosed);
        assert_eq!(CloseAllOutcome::from_counts(2, 1), CloseAllOutcome::CleanupPartiallyComplete);
        assert_eq!(CloseAllOutcome::from_counts(0, 1), CloseAllOutcome::CleanupPartiallyComplete);
    }
}
