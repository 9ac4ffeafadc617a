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

/// How many prompts one session may take per second: a sliding window of the last
/// second's accepted prompts. The caller gives the time, so tests control it.
#[derive(Debug, Default, Clone)]
pub struct PromptWindow {
    accepted: std::collections::VecDeque<std::time::Instant>,
}

impl PromptWindow {
    /// Whether a prompt at `now` stays within `per_second`; if so it is counted.
    pub fn admit(&mut self, now: std::time::Instant, per_second: u32) -> bool {
        while self
            .accepted
            .front()
            .is_some_and(|at| now.duration_since(*at) >= std::time::Duration::from_secs(1))
        {
            self.accepted.pop_front();
        }
        if self.accepted.len() >= per_second as usize {
            return false;
        }
        self.accepted.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_takes_at_most_so_many_prompts_a_second() {
        let start = std::time::Instant::now();
        let mut window = PromptWindow::default();
        let at = |ms: u64| start + std::time::Duration::from_millis(ms);
        for ms in [0, 10, 20, 30, 40] {
            assert!(window.admit(at(ms), 5), "{ms}");
        }
        assert!(!window.admit(at(50), 5), "the sixth within a second");
        assert!(!window.admit(at(999), 5));
        assert!(window.admit(at(1000), 5), "the first has left the window");
        assert!(!window.admit(at(1001), 5));
    }
}
