//! `berth drill`: reliability drills, runnable as commands (long) and from the tests
//! (short). Each one exits non-zero with what broke.

mod crash;
mod faults;
mod load;

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Drill {
    /// Live sessions, some mid-run; kill -9 of the server; restart; nothing lost or left.
    Crash(crash::CrashArgs),
    /// Random traffic while the driver fails a fraction of power ons and offs; invariants
    /// checked after every step.
    Faults(faults::FaultsArgs),
    /// Many live-channel connections: the server's memory and the fan-out latency.
    Load(load::LoadArgs),
}

pub async fn run(drill: Drill) -> anyhow::Result<ExitCode> {
    match drill {
        Drill::Crash(args) => crash::run(args).await?,
        Drill::Faults(args) => faults::run(args).await?,
        Drill::Load(args) => load::run(args).await?,
    }
    Ok(ExitCode::SUCCESS)
}
