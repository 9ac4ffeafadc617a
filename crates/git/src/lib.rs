//! berth's use of the `git` program: clone a repository while streaming its output, read
//! a checkout's status, keep berth's own files out of it. Callers pass repository strings
//! that `berth_core::validate::repo` accepted; this crate still puts `--` before every
//! argument that came from a person, so nothing can be read as an option.

mod clone;
mod status;

use std::path::PathBuf;
use std::process::ExitStatus;
use tokio::process::Command;

pub use clone::{CloneOutcome, clone};
pub use status::{GitStatus, status, switch_branch};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git")]
    Spawn { source: std::io::Error },
    #[error("git {action} failed ({status})")]
    Failed { action: &'static str, status: ExitStatus, stderr: String },
    #[error("git clone did not finish within {seconds} s")]
    TimedOut { seconds: u64 },
    #[error("git clone was cancelled")]
    Cancelled,
    #[error("'{path}' is not a git checkout")]
    NotACheckout { path: PathBuf },
    #[error("cannot write '{path}'")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("unexpected git output: {line}")]
    Parse { line: String },
}

/// A `git` command that never prompts, never runs remote helpers that execute commands,
/// and is killed if berth drops it.
fn git_command() -> Command {
    let mut command = Command::new("git");
    command
        .args(["-c", "protocol.ext.allow=never", "-c", "core.fsmonitor=false"])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("SSH_ASKPASS", "/bin/false")
        // Reading status must not take the index lock from under an agent that is working.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        command.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    command
}

/// Runs a short git command in `dir` and returns its standard output.
async fn git_output(dir: &std::path::Path, action: &'static str, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let output = git_command()
        .current_dir(dir)
        .args(args)
        .output()
        .await
        .map_err(|source| GitError::Spawn { source })?;
    if !output.status.success() {
        return Err(GitError::Failed {
            action,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(output.stdout)
}

/// Keeps `pattern` (berth's own folder, say `.berth/`) out of the checkout's status
/// through `.git/info/exclude`, which is local to the checkout and never committed.
pub async fn exclude(checkout: &std::path::Path, pattern: &str) -> Result<(), GitError> {
    let git_dir = checkout.join(".git");
    if !git_dir.is_dir() {
        return Err(GitError::NotACheckout { path: checkout.to_owned() });
    }
    let info = git_dir.join("info");
    let exclude_file = info.join("exclude");
    let write_error = |source| GitError::Write { path: exclude_file.clone(), source };
    tokio::fs::create_dir_all(&info).await.map_err(write_error)?;
    let existing = match tokio::fs::read_to_string(&exclude_file).await {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(write_error(error)),
    };
    if existing.lines().any(|line| line == pattern) {
        return Ok(());
    }
    let separator = if existing.is_empty() || existing.ends_with('\n') { "" } else { "\n" };
    tokio::fs::write(&exclude_file, format!("{existing}{separator}{pattern}\n")).await.map_err(write_error)
}
