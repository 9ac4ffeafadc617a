//! The workspace lifecycle: `initialising → ready | error`, `ready | idle → active → idle`,
//! `error → initialising` on retry, and delete from any state.

use crate::ids::{UserId, WorkspaceId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceState {
    /// The repository is being cloned; not usable yet.
    Initialising,
    /// Set up and never opened.
    Ready,
    /// A session is open and the sandbox runs.
    Active,
    /// No session; the sandbox is off; files and git state are kept.
    Idle,
    /// Initialisation failed; the initialisation log says why.
    Error,
}

/// Something that happened to a workspace and may move it to another state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceEvent {
    CloneSucceeded,
    CloneFailed,
    /// The owner asks for a failed initialisation to run again.
    RetryRequested,
    SessionOpened,
    SessionEnded,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a workspace that is {from} cannot take {event:?}")]
pub struct WorkspaceTransitionError {
    pub from: WorkspaceState,
    pub event: WorkspaceEvent,
}

impl WorkspaceState {
    pub const ALL: [WorkspaceState; 5] = [
        WorkspaceState::Initialising,
        WorkspaceState::Ready,
        WorkspaceState::Active,
        WorkspaceState::Idle,
        WorkspaceState::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceState::Initialising => "initialising",
            WorkspaceState::Ready => "ready",
            WorkspaceState::Active => "active",
            WorkspaceState::Idle => "idle",
            WorkspaceState::Error => "error",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == value)
    }

    /// The state after `event`, or the refusal. Every pair is decided here, exhaustively.
    pub fn on(self, event: WorkspaceEvent) -> Result<WorkspaceState, WorkspaceTransitionError> {
        use WorkspaceEvent as E;
        use WorkspaceState as S;
        match (self, event) {
            (S::Initialising, E::CloneSucceeded) => Ok(S::Ready),
            (S::Initialising, E::CloneFailed) => Ok(S::Error),
            (S::Error, E::RetryRequested) => Ok(S::Initialising),
            (S::Ready | S::Idle, E::SessionOpened) => Ok(S::Active),
            (S::Active, E::SessionEnded) => Ok(S::Idle),
            (S::Initialising, E::RetryRequested | E::SessionOpened | E::SessionEnded)
            | (
                S::Ready | S::Idle,
                E::CloneSucceeded | E::CloneFailed | E::RetryRequested | E::SessionEnded,
            )
            | (S::Active, E::CloneSucceeded | E::CloneFailed | E::RetryRequested | E::SessionOpened)
            | (S::Error, E::CloneSucceeded | E::CloneFailed | E::SessionOpened | E::SessionEnded) => {
                Err(WorkspaceTransitionError { from: self, event })
            }
        }
    }

    /// Whether the workspace can be opened (or, when active, resumed).
    pub fn can_open(self) -> bool {
        match self {
            WorkspaceState::Ready | WorkspaceState::Idle | WorkspaceState::Active => true,
            WorkspaceState::Initialising | WorkspaceState::Error => false,
        }
    }

    /// Whether the workspace holds a finished checkout whose unsaved work must be shown
    /// before deleting it. A workspace still cloning or whose clone failed holds nothing
    /// a person made, so it is deleted without that check. Delete itself is allowed from
    /// every state.
    pub fn has_checkout(self) -> bool {
        match self {
            WorkspaceState::Ready | WorkspaceState::Idle | WorkspaceState::Active => true,
            WorkspaceState::Initialising | WorkspaceState::Error => false,
        }
    }
}

impl fmt::Display for WorkspaceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub owner: UserId,
    pub repo: String,
    /// The branch asked for, or after cloning the branch the clone checked out.
    pub branch: Option<String>,
    /// The agent command for this workspace, when it differs from the installation's.
    pub agent: Option<String>,
    pub state: WorkspaceState,
    /// Why initialisation failed, in one line; the full story is the initialisation log.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_opened_at: Option<DateTime<Utc>>,
}

impl Workspace {
    /// Whether berth can push this workspace's branch: only to a remote repository, never
    /// to a directory of the server it was cloned from.
    pub fn pushable(&self) -> bool {
        !matches!(crate::validate::repo(&self.repo), Ok(crate::validate::RepoSource::LocalPath(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkspaceEvent as E;
    use WorkspaceState as S;

    const EVENTS: [WorkspaceEvent; 5] =
        [E::CloneSucceeded, E::CloneFailed, E::RetryRequested, E::SessionOpened, E::SessionEnded];

    /// The allowed transitions; every other (state, event) pair must be refused.
    const ALLOWED: [(WorkspaceState, WorkspaceEvent, WorkspaceState); 6] = [
        (S::Initialising, E::CloneSucceeded, S::Ready),
        (S::Initialising, E::CloneFailed, S::Error),
        (S::Error, E::RetryRequested, S::Initialising),
        (S::Ready, E::SessionOpened, S::Active),
        (S::Idle, E::SessionOpened, S::Active),
        (S::Active, E::SessionEnded, S::Idle),
    ];

    #[test]
    fn every_state_event_pair_is_allowed_or_refused_as_designed() {
        for from in S::ALL {
            for event in EVENTS {
                let expected =
                    ALLOWED.iter().find(|(s, e, _)| *s == from && *e == event).map(|(_, _, to)| *to);
                match (from.on(event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from} on {event:?}"),
                    (Err(refusal), None) => {
                        assert_eq!(refusal, WorkspaceTransitionError { from, event })
                    }
                    (got, want) => panic!("{from} on {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn only_set_up_workspaces_open() {
        let openable: Vec<_> = S::ALL.into_iter().filter(|s| s.can_open()).collect();
        assert_eq!(openable, [S::Ready, S::Active, S::Idle]);
    }

    #[test]
    fn unsaved_work_is_checked_only_where_a_checkout_exists() {
        let checked: Vec<_> = S::ALL.into_iter().filter(|s| s.has_checkout()).collect();
        assert_eq!(checked, [S::Ready, S::Active, S::Idle]);
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in S::ALL {
            assert_eq!(S::parse(state.as_str()), Some(state));
        }
        assert_eq!(S::parse("running"), None);
    }
}
