//! `git push` of the checked-out branch, in a sandbox of the workspace, to the repository
//! the workspace was made from (berth's record, named on the command line: never a remote
//! of the checkout's, which the agent may have changed), with the person's credential for
//! that host. The job has the host's network, so it runs no program the checkout could
//! name: its configuration is berth's (no `insteadOf`, `askPass`, proxy, `sshCommand`,
//! header or helper of the agent's), hooks are off, and ssh and the credential helper are
//! berth's.

use crate::{Checkout, GitCredential, GitError, GitJob, SshCredential};
use berth_sandbox::JobNetwork;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    pub branch: String,
    /// The commit pushed.
    pub head: String,
}

/// `$1` the checkout, `$2` the repository. Prints the branch and the commit pushed.
const PUSH_SCRIPT: &str = r#"set -e
repository=$2
branch=$(git symbolic-ref --quiet --short HEAD) || { echo "error: HEAD is detached: check out a branch to push" >&2; exit 3; }
head=$(git rev-parse --verify HEAD)
git push --no-recurse-submodules --porcelain -- "$repository" "refs/heads/$branch:refs/heads/$branch" >&2
# What berth's clone named `origin` (the same repository) has now, so the unpushed count
# says so.
git update-ref "refs/remotes/origin/$branch" "$head" || true
printf '%s\n%s\n' "$branch" "$head"
"#;

/// Pushes the checkout's current branch to `repository` (a URL `validate::repo`
/// accepted), offering `credential` to its host.
pub async fn push(
    driver: &dyn berth_sandbox::SandboxDriver,
    checkout: Checkout<'_>,
    repository: &str,
    credential: Option<GitCredential>,
    ssh: Option<SshCredential>,
    timeout: Duration,
) -> Result<PushOutcome, GitError> {
    let mut job = GitJob::on_checkout("push", PUSH_SCRIPT, timeout, 4096);
    job.args = vec![repository.to_owned()];
    job.network = JobNetwork::Host;
    job.credential = credential;
    job.ssh = ssh;
    let output = job.run(driver, checkout).await?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(branch), Some(head)) if !branch.is_empty() && head.len() >= 40 => {
            Ok(PushOutcome { branch: branch.to_owned(), head: head.to_owned() })
        }
        _ => {
            Err(GitError::Parse { line: text.lines().next().unwrap_or_default().chars().take(200).collect() })
        }
    }
}
