//! The limits an installation sets on running sandboxes and what happens when one is hit.

use serde::{Deserialize, Serialize};

/// What opening a workspace does when the user already has `sessions_per_user` live
/// sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUserLimit {
    /// Power the user's oldest session off (files kept) before the new one opens.
    #[default]
    Replace,
    /// Refuse the launch, listing the sessions in the way.
    Reject,
}

impl OnUserLimit {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "replace" => Some(OnUserLimit::Replace),
            "reject" => Some(OnUserLimit::Reject),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub sessions_per_user: u32,
    pub on_user_limit: OnUserLimit,
    pub running_sandboxes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { sessions_per_user: 1, on_user_limit: OnUserLimit::Replace, running_sandboxes: 64 }
    }
}
