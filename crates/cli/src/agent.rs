//! `berth agent`: the built-in agent that berth starts inside a sandbox. Until it speaks
//! the Agent Client Protocol it keeps the sandbox's agent slot alive: it reads its input
//! and ends when berth closes it (or powers the sandbox off).

use std::process::ExitCode;
use tokio::io::AsyncReadExt;

pub async fn run() -> anyhow::Result<ExitCode> {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 4096];
    while stdin.read(&mut buffer).await? > 0 {}
    Ok(ExitCode::SUCCESS)
}
