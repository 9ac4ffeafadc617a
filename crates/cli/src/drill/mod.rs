//! `berth drill`: reliability drills, runnable as commands (long) and from the tests
//! (short). Each one exits non-zero with what broke.

mod crash;
mod faults;
mod load;
mod replicas;

use std::process::ExitCode;

/// The admin token of the servers the drills start.
const TOKEN: &str = "berth_drill_admin_token_000000000000";

#[derive(clap::Subcommand)]
pub enum Drill {
    /// Live sessions, some mid-run; kill -9 of the server; restart; nothing lost or left.
    Crash(crash::CrashArgs),
    /// Random traffic while the driver fails a fraction of power ons and offs; invariants
    /// checked after every step.
    Faults(faults::FaultsArgs),
    /// Many live-channel connections: the server's memory and the fan-out latency.
    Load(load::LoadArgs),
    /// Two replicas on one PostgreSQL, every session busy; kill -9 of one: its sessions
    /// end on the other within the lease and 5 s, nothing lost, none left live.
    Replicas(replicas::ReplicasArgs),
}

/// Runs `drill` in a temporary directory of its own, removed afterwards.
pub async fn run(drill: Drill) -> anyhow::Result<ExitCode> {
    let dir = crate::harness::tempfile_dir("drill")?;
    let outcome = match &drill {
        Drill::Crash(args) => crash::run(&dir, args).await,
        Drill::Faults(args) => faults::run(&dir, args).await,
        Drill::Load(args) => load::run(&dir, args).await,
        Drill::Replicas(args) => replicas::run(&dir, args).await,
    };
    let _ = std::fs::remove_dir_all(&dir);
    outcome.map(|()| ExitCode::SUCCESS)
}
