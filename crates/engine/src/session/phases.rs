//! Where an open's time goes: each phase of open → agent ready recorded in one
//! histogram, `berth_open_phase_seconds{phase}` (the sandbox driver records its own steps,
//! `sandbox_*`, in the same one). `berth bench` reads them to print the breakdown beside
//! the floor's.

use std::time::Duration;

/// The histogram every phase is recorded in.
pub const OPEN_PHASE_METRIC: &str = "berth_open_phase_seconds";

/// A phase of open → agent ready, in the order an open goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The open's locks and reads, the decision, the agent's command (and sessions
    /// replaced).
    Checks,
    /// The person's secrets and git identity, read for the sandbox.
    Reads,
    /// The session's insert (the sandbox slot taken in the same statement).
    StoreInsert,
    /// The driver's power on, until the agent's process runs.
    Sandbox,
    /// Made live with `session_started`, one commit, and the session read back.
    MadeLive,
    /// From the ACP connection's start to `initialize`'s answer (the agent's own start);
    /// it starts as `MadeLive` does and runs beside it.
    AgentInitialize,
    /// Authentication when asked, and `session/new` (or `session/load`).
    AgentSession,
    /// The agent's session id and `agent_ready` stored (one commit) and broadcast.
    ReadyEvent,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Checks,
        Phase::Reads,
        Phase::StoreInsert,
        Phase::Sandbox,
        Phase::MadeLive,
        Phase::AgentInitialize,
        Phase::AgentSession,
        Phase::ReadyEvent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Checks => "checks",
            Phase::Reads => "reads",
            Phase::StoreInsert => "store_insert",
            Phase::Sandbox => "sandbox",
            Phase::MadeLive => "made_live",
            Phase::AgentInitialize => "agent_initialize",
            Phase::AgentSession => "agent_session",
            Phase::ReadyEvent => "ready_event",
        }
    }
}

pub(crate) fn record_phase(phase: Phase, took: Duration) {
    metrics::histogram!(OPEN_PHASE_METRIC, "phase" => phase.as_str()).record(took.as_secs_f64());
}
