//! berth's use of the `git` program. The agent can write anything in its checkout, `.git`
//! included (configuration, hooks, filters, submodules, gitfiles, alternates), so no git
//! command of berth's runs on the host against it: each is a job of the workspace's
//! sandbox driver ([`berth_sandbox::SandboxDriver::run_job`]), which sees that workspace
//! and the system directories only. Inside, git runs with `GIT_DIR`, `GIT_COMMON_DIR` and
//! `GIT_WORK_TREE` explicit, no system or global configuration, and berth's own
//! configuration over the checkout's `.git/config` ([`RepositoryFormat::config`]): nothing
//! the agent wrote in the checkout's configuration is read, so no program or place it
//! names is used. Hooks are off; the job has a time limit and its output is bounded;
//! what git prints is parsed as untrusted text.
//!
//! Callers pass repository strings that `berth_core::validate::repo` accepted; this crate
//! still puts `--` before every argument that came from a person.

mod changes;
mod clone;
mod config;
mod credential;
mod files;
mod push;
mod ssh;
mod status;

use berth_core::WorkspaceId;
use berth_sandbox::{Job, JobNetwork, JobOutput, SandboxDriver, SandboxError, SandboxExit};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use changes::{ChangedFile, Changes, Commit, Committed, FileChange, changes, commit};
pub use clone::{CloneOutcome, CloneRequest, CloneSource, clone};
pub use config::{ObjectFormat, RefFormat, RepositoryFormat};
pub use credential::{GitCredential, HttpOrigin, http_origin};
pub use files::{
    CheckoutPath, Entry, EntryKind, Expected, FileOutcome, MAX_ENTRIES, MAX_FILE_BYTES, delete_file,
    read_path, rename_file, write_file,
};
pub use push::{PushOutcome, push};
pub use ssh::{SshCredential, SshTarget, keyscan, ssh_target};
pub use status::{GitStatus, status, switch_branch};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git in the sandbox: {source}")]
    Sandbox { source: SandboxError },
    #[error("git {action} failed ({exit})")]
    Failed { action: &'static str, exit: SandboxExit, stderr: String },
    #[error("git {action} did not finish within {seconds} s")]
    TimedOut { action: &'static str, seconds: u64 },
    #[error("git clone was cancelled")]
    Cancelled,
    #[error("the workspace directory is not a git checkout")]
    NotACheckout,
    #[error("unexpected git output: {line}")]
    Parse { line: String },
}

/// Lines of ssh and of git's transports that say why a remote refused.
const TRANSPORT_CAUSES: [&str; 4] =
    ["Host key verification failed", "Permission denied", "Authentication failed", "could not read Username"];

impl GitError {
    /// One line for people saying why: git's last `fatal:`/`error:` line when it printed
    /// one (the sandbox's view of paths, never the host's), else what failed.
    pub fn summary(&self) -> String {
        if let GitError::Failed { stderr, .. } = self {
            let lines = || stderr.split(['\n', '\r']).map(str::trim).filter(|line| !line.is_empty());
            // What ssh or the server said is the cause; git's closing line only repeats it.
            let cause = lines().find(|line| TRANSPORT_CAUSES.iter().any(|cause| line.contains(cause)));
            let fatal = lines().rfind(|line| line.starts_with("fatal:") || line.starts_with("error:"));
            if let Some(line) = cause.or(fatal).or_else(|| lines().next_back()) {
                return line.chars().take(500).collect();
            }
        }
        self.to_string()
    }

    /// Whether the checkout, not berth, is why git failed (a checkout the agent broke, a
    /// refusal of git's, a command that ran too long): the person's to fix.
    pub fn is_about_the_checkout(&self) -> bool {
        !matches!(self, GitError::Sandbox { .. } | GitError::Cancelled)
    }
}

/// A workspace's checkout: which workspace, its directory on the host (which berth
/// made and names; what is inside is the agent's), and its repository's format as
/// berth's clone recorded it.
#[derive(Debug, Clone, Copy)]
pub struct Checkout<'a> {
    pub workspace_id: &'a WorkspaceId,
    pub dir: &'a Path,
    pub format: RepositoryFormat,
}

/// The system's program directories: the sandbox's `PATH`.
pub(crate) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Configuration given on git's command line, over berth's own file: what berth's jobs
/// need whatever git's defaults become.
const SAFE_CONFIG: [(&str, &str); 8] = [
    ("protocol.ext.allow", "never"),
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("submodule.recurse", "false"),
    ("diff.external", ""),
    // An empty value empties the list of helpers the checkout may name.
    ("credential.helper", ""),
    ("core.pager", "cat"),
    // The checkout is the sandbox's own; its files' owner may read differently inside.
    ("safe.directory", "*"),
];

/// Switches off every filter driver the configuration names (an empty command is no
/// filter), appending to `GIT_CONFIG_COUNT`; the command's own script follows. In a
/// sandbox the configuration is berth's and names none; this is for a driver without
/// isolation, which cannot show berth's file. Reading configuration runs nothing.
const FILTERS_OFF: &str = r#"n=$GIT_CONFIG_COUNT
while IFS= read -r key; do
    [ -n "$key" ] || continue
    name=${key#filter.}; name=${name%.*}
    for setting in clean= smudge= process= required=false; do
        export "GIT_CONFIG_KEY_$n=filter.$name.${setting%%=*}" "GIT_CONFIG_VALUE_$n=${setting#*=}"
        n=$((n + 1))
    done
done <<BERTH_KEYS
$(git config --name-only --get-regexp '^filter\.' 2>/dev/null)
BERTH_KEYS
export GIT_CONFIG_COUNT=$n
"#;

/// The whole environment of a git job. `checkout` is where the job sees the checkout,
/// for commands on one (a clone has none yet); a credential adds its helper (the secret
/// itself goes in the job's private environment).
fn environment(
    checkout: Option<&Path>,
    credential: Option<&GitCredential>,
    ssh: Option<&SshCredential>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("PATH", PATH),
        // Not the server's home: neither its configuration nor its SSH keys.
        ("HOME", "/nonexistent"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("SSH_ASKPASS_REQUIRE", "never"),
        ("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -F /dev/null"),
        // Reading status must not take the index lock from under an agent that works.
        ("GIT_OPTIONAL_LOCKS", "0"),
        ("GIT_NO_REPLACE_OBJECTS", "1"),
        ("LC_ALL", "C"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    for (index, (key, value)) in SAFE_CONFIG.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{index}"), (*key).to_owned()));
        env.push((format!("GIT_CONFIG_VALUE_{index}"), (*value).to_owned()));
    }
    if ssh.is_some()
        && let Some((_, command)) = env.iter_mut().find(|(name, _)| name == "GIT_SSH_COMMAND")
    {
        *command = SshCredential::ssh_command().to_owned();
    }
    let mut count = SAFE_CONFIG.len();
    if let Some(credential) = credential {
        env.extend(credential.helper_config(count));
        count += 1;
    }
    env.push(("GIT_CONFIG_COUNT".to_owned(), count.to_string()));
    if let Some(checkout) = checkout {
        // Explicit: a `core.worktree`, a gitfile or a `commondir` file in the checkout
        // decides nothing (the common directory is where git reads configuration from).
        let git_dir = checkout.join(".git").to_string_lossy().into_owned();
        env.push(("GIT_DIR".to_owned(), git_dir.clone()));
        env.push(("GIT_COMMON_DIR".to_owned(), git_dir));
        env.push(("GIT_WORK_TREE".to_owned(), checkout.to_string_lossy().into_owned()));
    }
    env
}

/// One git job: a `sh` script run in a fresh sandbox of a workspace. The script gets
/// where the job sees the workspace as `$1` and [`GitJob::args`] after it.
struct GitJob<'a> {
    action: &'static str,
    /// Runs before the filters are switched off (what needs no filter can start early).
    prelude: &'a str,
    script: &'a str,
    args: Vec<String>,
    /// On an existing checkout: its git directory explicit, berth's configuration over
    /// the checkout's, filters off.
    on_checkout: bool,
    network: JobNetwork,
    read_only: Vec<PathBuf>,
    timeout: Duration,
    max_stdout: usize,
    stderr_to: Option<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
    cancel: CancellationToken,
    /// Offered to the remote's host (clone, push).
    credential: Option<GitCredential>,
    /// The person's SSH key and the server's known host key (clone, push).
    ssh: Option<SshCredential>,
    /// Who a commit is by: name and email.
    identity: Option<(String, String)>,
    /// What the script reads on its standard input.
    stdin: Vec<u8>,
}

impl GitJob<'_> {
    /// A job on an existing checkout that reaches no network.
    fn on_checkout<'a>(
        action: &'static str,
        script: &'a str,
        timeout: Duration,
        max_stdout: usize,
    ) -> GitJob<'a> {
        GitJob {
            action,
            prelude: "",
            script,
            args: Vec::new(),
            on_checkout: true,
            network: JobNetwork::None,
            read_only: Vec::new(),
            timeout,
            max_stdout,
            stderr_to: None,
            cancel: CancellationToken::new(),
            credential: None,
            ssh: None,
            identity: None,
            stdin: Vec::new(),
        }
    }

    /// Runs the job in a sandbox of the checkout's workspace over its directory. A
    /// non-zero exit is [`GitError::Failed`] with the end of git's message.
    async fn run(self, driver: &dyn SandboxDriver, checkout: Checkout<'_>) -> Result<JobOutput, GitError> {
        let (workspace_id, dir) = (checkout.workspace_id, checkout.dir);
        let inside = driver.job_workspace_path(dir);
        let filters_off = if self.on_checkout { FILTERS_OFF } else { "" };
        let script = format!("{}{filters_off}{}", self.prelude, self.script);
        let mut argv = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            script,
            "berth-git".to_owned(),
            inside.to_string_lossy().into_owned(),
        ];
        argv.extend(self.args);
        let mut env = environment(
            self.on_checkout.then_some(inside.as_path()),
            self.credential.as_ref(),
            self.ssh.as_ref(),
        );
        if let Some((name, email)) = &self.identity {
            for role in ["AUTHOR", "COMMITTER"] {
                env.push((format!("GIT_{role}_NAME"), name.clone()));
                env.push((format!("GIT_{role}_EMAIL"), email.clone()));
            }
        }
        let job = Job {
            workspace_id: workspace_id.clone(),
            workspace_dir: dir.to_owned(),
            argv,
            env,
            secret_env: self
                .credential
                .iter()
                .flat_map(GitCredential::private_environment)
                .chain(self.ssh.iter().flat_map(SshCredential::private_environment))
                .collect(),
            network: self.network,
            repository_config: self.on_checkout.then(|| checkout.format.config()),
            read_only: self.read_only,
            timeout: self.timeout,
            max_stdout: self.max_stdout,
            stderr_to: self.stderr_to,
            cancel: self.cancel,
            stdin: self.stdin,
        };
        let action = self.action;
        let output = driver.run_job(job).await.map_err(|source| match source {
            SandboxError::JobTimedOut { seconds } => GitError::TimedOut { action, seconds },
            SandboxError::JobCancelled => GitError::Cancelled,
            source => GitError::Sandbox { source },
        })?;
        if output.success() {
            return Ok(output);
        }
        let stderr = String::from_utf8_lossy(&output.stderr_tail).into_owned();
        // git does not print a secret it was given, and must never be quoted with one.
        let stderr = match &self.credential {
            Some(credential) => credential.redact(&stderr),
            None => stderr,
        };
        if self.on_checkout && stderr.contains("not a git repository") {
            return Err(GitError::NotACheckout);
        }
        Err(GitError::Failed { action, exit: output.exit, stderr })
    }
}
