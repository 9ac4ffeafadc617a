//! Jobs: short commands run in a fresh sandbox of one workspace — git on its checkout, a
//! clone into it. A job sees what the workspace's agent would see (its workspace at
//! [`crate::SANDBOX_WORKSPACE`], the system directories read-only, nothing of the data
//! directory) plus the read-only paths it names, gets only the environment it names, is
//! killed after its time limit, and has its output bounded, so nothing a workspace holds
//! runs, or is read with trust, on the host.

use crate::{SandboxError, SandboxExit};
use berth_core::WorkspaceId;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The standard error kept for the caller (the end of it) when a job fails.
pub const STDERR_TAIL_BYTES: usize = 8192;

/// What a job may reach on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobNetwork {
    /// Nothing: a network namespace of its own with only loopback.
    None,
    /// The host's network (a clone from a server on this machine).
    Host,
}

/// A command to run in a fresh sandbox of a workspace.
#[derive(Debug, Clone)]
pub struct Job {
    pub workspace_id: WorkspaceId,
    /// The workspace's directory on the host, shown read-write; the job starts there.
    pub workspace_dir: PathBuf,
    /// The program and its arguments, run as they are (no shell unless it is the program).
    pub argv: Vec<String>,
    /// The whole environment of the job (nothing of the server's own is passed).
    pub env: Vec<(String, String)>,
    /// More of it that must stay private (a git credential): handed over like
    /// [`crate::SandboxSpec::secret_env`].
    pub secret_env: Vec<(String, String)>,
    pub network: JobNetwork,
    /// berth's configuration for the checkout's repository: the job sees this text, read
    /// only, as `.git/config` of its workspace, never the checkout's own (which the agent
    /// wrote). The driver puts it there from inside the job's sandbox, so no path of the
    /// checkout is resolved on the host (bubblewrap follows a symbolic link in a mount's
    /// destination before its root is the sandbox's). `None` for a job that makes the
    /// repository (a clone). A driver without isolation cannot show it and ignores it:
    /// there the agent runs as berth itself.
    pub repository_config: Option<String>,
    /// Host directories shown read-only at their own path (the source of a local clone).
    pub read_only: Vec<PathBuf>,
    pub timeout: Duration,
    /// Standard output beyond this many bytes is dropped and the output marked truncated.
    pub max_stdout: usize,
    /// Where standard error goes as it arrives (a clone's log); it is kept too.
    pub stderr_to: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// Stops the job early (a workspace deleted while it clones).
    pub cancel: CancellationToken,
    /// What the job reads on its standard input (a file's new content); empty: nothing.
    pub stdin: Vec<u8>,
}

/// How a job ended and what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutput {
    pub exit: SandboxExit,
    pub stdout: Vec<u8>,
    /// More standard output came than [`Job::max_stdout`].
    pub stdout_truncated: bool,
    /// The last [`STDERR_TAIL_BYTES`] of standard error.
    pub stderr_tail: Vec<u8>,
}

impl JobOutput {
    pub fn success(&self) -> bool {
        self.exit.code == Some(0)
    }
}

/// Reads a job's standard output up to `limit` bytes, then drains the rest unkept (so the
/// job is not stuck on a full pipe). Returns what was kept and whether anything was not.
pub(crate) async fn read_bounded(mut pipe: impl AsyncRead + Unpin, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return (kept, truncated),
            Ok(read) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..read.min(room)]);
                truncated |= read > room;
            }
        }
    }
}

/// Reads a job's standard error: each chunk to `forward` as it arrives, the tail kept.
pub(crate) async fn read_stderr(
    mut pipe: impl AsyncRead + Unpin,
    forward: Option<mpsc::UnboundedSender<Vec<u8>>>,
) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buffer = vec![0u8; 8192];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return tail,
            Ok(read) => {
                if let Some(forward) = &forward {
                    let _ = forward.send(buffer[..read].to_vec());
                }
                tail.extend_from_slice(&buffer[..read]);
                if tail.len() > STDERR_TAIL_BYTES {
                    tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                }
            }
        }
    }
}

/// Waits for `finished` unless the job's time runs out or it is cancelled first.
pub(crate) async fn within_limits<T>(
    job_timeout: Duration,
    cancel: &CancellationToken,
    finished: impl std::future::Future<Output = T>,
) -> Result<T, SandboxError> {
    tokio::select! {
        result = finished => Ok(result),
        () = tokio::time::sleep(job_timeout) => Err(SandboxError::JobTimedOut { seconds: job_timeout.as_secs() }),
        () = cancel.cancelled() => Err(SandboxError::JobCancelled),
    }
}
