//! `git clone`, with its whole output streamed to the caller as it comes.

use crate::{GitError, git_command, git_output};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneOutcome {
    /// The branch the checkout is on, `None` when HEAD is detached.
    pub branch: Option<String>,
}

/// Clones `repo` (optionally `branch`) into `destination`, which must not exist yet.
/// Everything git prints is sent to `log` as it arrives. The clone is killed when
/// `cancel` fires or after `timeout`; either way `destination` may be left half-made and
/// is the caller's to remove.
pub async fn clone(
    repo: &str,
    branch: Option<&str>,
    destination: &Path,
    timeout: Duration,
    log: mpsc::UnboundedSender<String>,
    cancel: CancellationToken,
) -> Result<CloneOutcome, GitError> {
    let mut command = git_command();
    command.args(["clone", "--progress"]);
    if let Some(branch) = branch {
        command.arg(format!("--branch={branch}"));
    }
    // Clone from inside the parent directory into a relative name, so the log a person
    // reads says "Cloning into 'w_...'" and not where the server keeps its data.
    let (parent, leaf) = match (destination.parent(), destination.file_name()) {
        (Some(parent), Some(leaf)) if !parent.as_os_str().is_empty() => (parent, leaf),
        _ => return Err(GitError::NotACheckout { path: destination.to_owned() }),
    };
    command.current_dir(parent).arg("--").arg(repo).arg(leaf);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| GitError::Spawn { source })?;

    let stdout = child.stdout.take().map(|pipe| tokio::spawn(forward(pipe, log.clone(), None)));
    let (stderr_tail_sender, stderr_tail) = tokio::sync::oneshot::channel();
    let stderr = child.stderr.take().map(|pipe| tokio::spawn(forward(pipe, log, Some(stderr_tail_sender))));

    let status = tokio::select! {
        status = child.wait() => status.map_err(|source| GitError::Spawn { source })?,
        () = tokio::time::sleep(timeout) => {
            let _ = child.kill().await;
            return Err(GitError::TimedOut { seconds: timeout.as_secs() });
        }
        () = cancel.cancelled() => {
            let _ = child.kill().await;
            return Err(GitError::Cancelled);
        }
    };
    // The pipes close when git exits; wait for the last of the output to be forwarded.
    for forwarder in [stdout, stderr].into_iter().flatten() {
        let _ = forwarder.await;
    }
    if !status.success() {
        return Err(GitError::Failed {
            action: "clone",
            status,
            stderr: stderr_tail.await.unwrap_or_default(),
        });
    }
    let head = git_output(destination, "symbolic-ref", &["symbolic-ref", "--quiet", "--short", "HEAD"]).await;
    let branch =
        head.ok().map(|out| String::from_utf8_lossy(&out).trim().to_owned()).filter(|b| !b.is_empty());
    Ok(CloneOutcome { branch })
}

/// The last bytes of git's standard error kept for the error message.
const STDERR_TAIL_BYTES: usize = 4096;

async fn forward(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    log: mpsc::UnboundedSender<String>,
    tail: Option<tokio::sync::oneshot::Sender<String>>,
) {
    let mut buffer = vec![0u8; 8192];
    let mut kept = Vec::new();
    // A chunk may end inside a multi-byte character; carry the incomplete end over.
    let mut pending = Vec::new();
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                pending.extend_from_slice(&buffer[..read]);
                let valid_up_to = match std::str::from_utf8(&pending) {
                    Ok(_) => pending.len(),
                    Err(error) if error.error_len().is_none() => error.valid_up_to(),
                    Err(_) => pending.len(),
                };
                let text = String::from_utf8_lossy(&pending[..valid_up_to]).into_owned();
                pending.drain(..valid_up_to);
                if tail.is_some() {
                    kept.extend_from_slice(text.as_bytes());
                    if kept.len() > STDERR_TAIL_BYTES {
                        kept.drain(..kept.len() - STDERR_TAIL_BYTES);
                    }
                }
                let _ = log.send(text);
            }
        }
    }
    if !pending.is_empty() {
        let _ = log.send(String::from_utf8_lossy(&pending).into_owned());
    }
    if let Some(tail) = tail {
        let _ = tail.send(String::from_utf8_lossy(&kept).into_owned());
    }
}
