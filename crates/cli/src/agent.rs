//! `berth agent`: the built-in ACP agent, which berth starts inside a sandbox and talks to
//! over this process's stdin and stdout.

use anyhow::Context;
use std::process::ExitCode;

pub async fn run() -> anyhow::Result<ExitCode> {
    berth_agent::builtin::serve_stdio().await.context("the built-in agent stopped")?;
    Ok(ExitCode::SUCCESS)
}
