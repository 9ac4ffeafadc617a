//! `git clone` in a sandbox of the new workspace, with its whole output streamed to the
//! caller as it comes. The job sees the empty checkout directory (where the clone goes)
//! and, for a local repository, a read-only view of its canonical directory — nothing
//! else of the host, so no spelling of a path reaches berth's data directory. It has the
//! host's network, so a git server on the same machine is reachable.

use crate::{Checkout, GitCredential, GitError, GitJob, RepositoryFormat, SshCredential};
use berth_core::WorkspaceId;
use berth_sandbox::{JobNetwork, SandboxDriver};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneOutcome {
    /// The branch the checkout is on, `None` when HEAD is detached.
    pub branch: Option<String>,
    /// The repository's format, for the configuration berth's later jobs run with.
    pub format: RepositoryFormat,
}

/// Where a clone comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloneSource {
    /// A directory of this machine, canonical (no symlink, no `..`), checked by the
    /// caller; the clone sees only it, read-only.
    Local(PathBuf),
    /// A URL `berth_core::validate::repo` accepted.
    Remote(String),
}

pub struct CloneRequest<'a> {
    pub workspace_id: &'a WorkspaceId,
    /// The checkout to be: an empty directory berth made.
    pub destination: &'a Path,
    pub source: CloneSource,
    pub branch: Option<&'a str>,
    /// Patterns of `.git/info/exclude` (berth's own folder), local to the checkout.
    pub exclude: &'a [&'a str],
    pub timeout: Duration,
    /// Everything git prints, as it arrives.
    pub log: mpsc::UnboundedSender<String>,
    pub cancel: CancellationToken,
    /// The person's credential for the repository's host, if they have one.
    pub credential: Option<GitCredential>,
    /// For an SSH repository: the person's key and the server's recorded host key.
    pub ssh: Option<SshCredential>,
}

/// `$1` the checkout, `$2` the repository, `$3` the branch (may be empty), then the
/// exclusion patterns. Prints the branch checked out (or an empty line), then the object
/// and reference formats — read now, from the configuration the clone just wrote, before
/// the agent could change it.
const CLONE_SCRIPT: &str = r#"set -e
cd "$1"
repository=$2 branch=$3
shift 3
# Into ".": the log a person reads never says where the checkout lives.
if [ -n "$branch" ]; then
    git clone --progress --no-recurse-submodules --branch="$branch" -- "$repository" .
else
    git clone --progress --no-recurse-submodules -- "$repository" .
fi
mkdir -p .git/info
for pattern in "$@"; do printf '%s\n' "$pattern" >> .git/info/exclude; done
git symbolic-ref --quiet --short HEAD || echo
git rev-parse --show-object-format
git rev-parse --show-ref-format 2>/dev/null || echo files
"#;

/// Clones into `request.destination`, which must exist and be empty. The clone is killed
/// when `cancel` fires or after `timeout`; either way the destination may be left half
/// made and is the caller's to remove.
pub async fn clone(driver: &dyn SandboxDriver, request: CloneRequest<'_>) -> Result<CloneOutcome, GitError> {
    let (repository, read_only) = match request.source {
        CloneSource::Local(path) => (path.to_string_lossy().into_owned(), vec![path]),
        CloneSource::Remote(url) => (url, Vec::new()),
    };
    let (chunks, mut received) = mpsc::unbounded_channel::<Vec<u8>>();
    let log = request.log;
    // git prints no secret it was given; the log is redacted all the same.
    let redact = {
        let credential = request.credential.clone();
        move |text: String| {
            credential.as_ref().map_or_else(|| text.clone(), |credential| credential.redact(&text))
        }
    };
    let forward = tokio::spawn(async move {
        let mut text = Utf8Chunks::default();
        while let Some(chunk) = received.recv().await {
            let _ = log.send(redact(text.push(&chunk)));
        }
        let rest = text.finish();
        if !rest.is_empty() {
            let _ = log.send(redact(rest));
        }
    });
    let mut args = vec![repository, request.branch.unwrap_or_default().to_owned()];
    args.extend(request.exclude.iter().map(|pattern| (*pattern).to_owned()));
    let job = GitJob {
        action: "clone",
        prelude: "",
        script: CLONE_SCRIPT,
        args,
        on_checkout: false,
        network: JobNetwork::Host,
        read_only,
        timeout: request.timeout,
        max_stdout: 4096,
        stderr_to: Some(chunks),
        cancel: request.cancel,
        credential: request.credential,
        ssh: request.ssh,
        identity: None,
        stdin: Vec::new(),
    };
    let checkout = Checkout {
        workspace_id: request.workspace_id,
        dir: request.destination,
        format: RepositoryFormat::default(),
    };
    let output = job.run(driver, checkout).await;
    // The job's end closes the channel: the last of the log is forwarded first.
    let _ = forward.await;
    let output = output?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let (branch, objects, refs) = (lines.next(), lines.next(), lines.next());
    let format = objects
        .zip(refs)
        .and_then(|(objects, refs)| RepositoryFormat::parse(objects, refs))
        .ok_or_else(|| GitError::Parse { line: text.chars().take(200).collect() })?;
    let branch = branch.unwrap_or_default().trim();
    Ok(CloneOutcome { branch: (!branch.is_empty()).then(|| branch.to_owned()), format })
}

/// Turns byte chunks into text; a chunk may end inside a multi-byte character, whose
/// start is carried over to the next.
#[derive(Default)]
struct Utf8Chunks {
    pending: Vec<u8>,
}

impl Utf8Chunks {
    fn push(&mut self, chunk: &[u8]) -> String {
        self.pending.extend_from_slice(chunk);
        let valid_up_to = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(error) if error.error_len().is_none() => error.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let text = String::from_utf8_lossy(&self.pending[..valid_up_to]).into_owned();
        self.pending.drain(..valid_up_to);
        text
    }

    fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_between_chunks_arrives_whole() {
        let mut text = Utf8Chunks::default();
        let bytes = "héllo".as_bytes();
        assert_eq!(text.push(&bytes[..2]), "h");
        assert_eq!(text.push(&bytes[2..]), "éllo");
        assert_eq!(text.finish(), "");
    }
}
