//! Sandboxes: where an agent runs. A driver powers a sandbox on (starting the agent
//! command inside it, with its standard streams handed back for the agent protocol),
//! powers it off, and lists the sandboxes it has running — including ones a previous
//! server process left behind — so nothing outlives its session.
//!
//! Only this crate spawns workloads.

mod bwrap;
mod cgroup;
mod docker;
pub mod egress;
mod faults;
mod job;
mod local;
mod netns;
pub mod ports;
mod proc;
mod secret_env;
pub mod settings;
mod terminal;

use berth_core::{SessionId, WorkspaceId};
use std::fmt;
use std::path::{Path, PathBuf};
use tokio::sync::{mpsc, watch};

pub use bwrap::WORKSPACE as SANDBOX_WORKSPACE;
pub use docker::{DockerDriver, DockerOptions};
pub use faults::FaultyDriver;
pub use job::{Job, JobNetwork, JobOutput, STDERR_TAIL_BYTES};
pub use local::{DEFAULT_STOP_TIMEOUT, LocalDriver, LocalOptions, installed};
pub use settings::{Isolation, Network, Resources};
pub use terminal::{TerminalInput, TerminalIo, TerminalSize};

/// What to power on.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub session_id: SessionId,
    pub workspace_id: WorkspaceId,
    /// The workspace's checkout; the agent starts there and its files stay there.
    pub workspace_dir: PathBuf,
    /// A shell command line that starts the agent.
    pub agent_command: String,
    /// The agent's environment that is not secret (the base set and the names passed from
    /// the server's, the catalogue agent's settings: `berth_core::agent_env`): the whole
    /// of what it inherits — nothing else of the server's environment reaches it.
    pub env: Vec<(String, String)>,
    /// Environment of the agent that is nobody else's business (the user's secrets, a git
    /// credential): never on a command line, never in a host-side program's environment.
    pub secret_env: Vec<(String, String)>,
}

/// How a sandbox's agent process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl fmt::Display for SandboxExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with status {code}"),
            (None, Some(signal)) => write!(f, "killed by signal {signal}"),
            (None, None) => f.write_str("ended"),
        }
    }
}

/// The running agent's standard streams, and a way to learn that it ended.
pub struct AgentIo {
    pub stdin: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    pub stdout: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    pub stderr: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    /// Becomes `Some` when the agent process has ended, for whatever reason.
    pub exited: watch::Receiver<Option<SandboxExit>>,
    /// The workspace directory as the agent sees it (its working directory).
    pub workspace_path: PathBuf,
    /// What the sandbox's limits refused while it runs.
    pub notices: mpsc::UnboundedReceiver<SandboxNotice>,
}

/// A limit of the sandbox was hit: the session reports it rather than hang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxNotice {
    /// The kernel killed processes of the sandbox for memory (`killed` so far).
    MemoryLimit { killed: u64 },
    /// Forks were refused because the sandbox has as many processes as allowed.
    ProcessLimit { refused: u64 },
}

/// A sandbox a driver has running, possibly left by an earlier server process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningSandbox {
    pub session_id: SessionId,
    pub workspace_id: WorkspaceId,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start the agent command '{command}'")]
    Spawn { command: String, source: std::io::Error },
    #[error("the sandbox of session {session_id} did not stop: {reason}")]
    Stop { session_id: SessionId, reason: String },
    #[error("cannot keep sandbox state in '{path}': {source}")]
    State { path: PathBuf, source: std::io::Error },
    #[error("session {session_id} has no running sandbox")]
    NotRunning { session_id: SessionId },
    #[error("nothing answers on port {port} in the sandbox")]
    Connect { port: u16, source: std::io::Error },
    #[error("{what}")]
    Unavailable { what: String },
    #[error("the container engine failed: {message}")]
    Engine { message: String },
    #[error("the job did not finish within {seconds} s")]
    JobTimedOut { seconds: u64 },
    #[error("the job was cancelled")]
    JobCancelled,
    #[error("injected fault: {what}")]
    Injected { what: String },
}

/// Powers sandboxes on and off. Implementations must make `power_off` idempotent (an
/// already-off sandbox is success) and must let nothing of a sandbox survive it.
#[async_trait::async_trait]
pub trait SandboxDriver: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Starts the sandbox of `spec.session_id` with the agent running inside.
    async fn power_on(&self, spec: SandboxSpec) -> Result<AgentIo, SandboxError>;

    /// Stops the sandbox of `session_id` and everything running in it. Files stay.
    async fn power_off(&self, session_id: &SessionId) -> Result<(), SandboxError>;

    /// Every sandbox this driver has running, including those of earlier server runs.
    async fn running(&self) -> Result<Vec<RunningSandbox>, SandboxError>;

    /// A TCP connection to `port` inside the running sandbox of `session_id` (the live
    /// preview): the sandbox's own loopback, wherever the sandbox runs.
    async fn connect(&self, session_id: &SessionId, port: u16)
    -> Result<tokio::net::TcpStream, SandboxError>;

    /// The TCP ports something listens on inside the running sandbox of `session_id`, in
    /// order, once each. Read from the kernel's view of the sandbox's own network
    /// namespace, never from anything the sandbox wrote. Drivers that cannot tell answer
    /// [`SandboxError::Unavailable`].
    async fn listening_ports(&self, session_id: &SessionId) -> Result<Vec<u16>, SandboxError> {
        let _ = session_id;
        Err(SandboxError::Unavailable {
            what: format!("the {} driver cannot list a sandbox's ports", self.name()),
        })
    }

    /// A terminal in the running sandbox of `session_id`: an interactive shell on a
    /// pseudo-terminal, as the agent runs there (its user, namespaces, limits,
    /// environment), in the workspace. Drivers that cannot answer
    /// [`SandboxError::Unavailable`].
    async fn open_terminal(
        &self,
        session_id: &SessionId,
        size: TerminalSize,
    ) -> Result<TerminalIo, SandboxError> {
        let _ = (session_id, size);
        Err(SandboxError::Unavailable { what: format!("the {} driver has no terminals", self.name()) })
    }

    /// Runs `job` in a fresh sandbox of its workspace, with the same isolation as the
    /// workspace's agent, and removes that sandbox when the job ends, whatever way.
    async fn run_job(&self, job: Job) -> Result<JobOutput, SandboxError>;

    /// Where a job sees the workspace directory `workspace_dir` of the host.
    fn job_workspace_path(&self, workspace_dir: &Path) -> PathBuf {
        let _ = workspace_dir;
        PathBuf::from(SANDBOX_WORKSPACE)
    }
}
