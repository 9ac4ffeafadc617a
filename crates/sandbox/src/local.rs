//! The `local` driver: the agent runs on this machine, in its workspace directory.
//!
//! With `bwrap` isolation it runs in a bubblewrap sandbox (see [`crate::bwrap`]) in its
//! own pid namespace and, unless the network is `host`, its own network namespace; with
//! `none` it is a plain child process. Either way it starts in a process group of its
//! own (powering off signals the group, so the agent's children go too) and, where the
//! host allows, in a cgroup of its own that holds its limits. Each running sandbox is
//! written down in a state directory (pid and process start time), so a server
//! restarted after a crash finds and stops the sandboxes its predecessor left.

use crate::cgroup::{Cgroup, Hierarchy};
use crate::job::{read_bounded, read_stderr, within_limits};
use crate::proc::{group_exists, is_alive, signal_group, start_time};
use crate::secret_env::EnvFile;
use crate::settings::{Isolation, Network, Resources};
use crate::terminal::{TerminalIo, TerminalSize};
use crate::{
    AgentIo, Job, JobNetwork, JobOutput, RunningSandbox, SandboxDriver, SandboxError, SandboxExit,
    SandboxNotice, SandboxSpec, bwrap, netns,
};
use berth_core::{SessionId, WorkspaceId};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long an agent has to exit after SIGTERM before it is killed.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// After SIGKILL a process is gone as soon as the kernel reaps it; waiting longer than
/// this means something is wrong (an uninterruptible sleep), reported as a failed stop.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a running sandbox's cgroup is read for limits it hit.
const LIMIT_POLL: Duration = Duration::from_millis(200);

/// Prepares the sandbox's process, then runs the rest of its arguments: `sh -c PREPARE
/// berth-sandbox GATE N procs-file... program args...`. It joins the N cgroups (writing
/// `0` to `cgroup.procs` moves the writer, so the sandbox is inside its limits before its
/// first instruction) and, when GATE is not empty, opens that FIFO as descriptor 3, which
/// bubblewrap waits on (`--block-fd 3`) until the network is up.
const PREPARE: &str = r#"gate=$1; n=$2; shift 2
while [ "$n" -gt 0 ]; do echo 0 > "$1" || exit 125; shift; n=$((n-1)); done
if [ -n "$gate" ]; then exec 3<"$gate"; fi
exec "$@""#;

/// How the local driver contains agents.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub isolation: Isolation,
    pub network: Network,
    pub resources: Resources,
    pub stop_timeout: Duration,
    /// Host paths no sandbox may see (the data directory, the configuration file).
    pub hidden: Vec<PathBuf>,
    /// Host files shown read-only at their own path (the agent's program).
    pub read_only: Vec<PathBuf>,
    /// Ranges an outbound sandbox may reach although they are private, link-local or the
    /// host's own (see [`crate::egress`]).
    pub egress_allow: Vec<ipnet::IpNet>,
}

impl LocalOptions {
    /// A plain child process with the host's network and no limits.
    pub fn unisolated(stop_timeout: Duration) -> LocalOptions {
        LocalOptions {
            isolation: Isolation::None,
            network: Network::Host,
            resources: Resources::default(),
            stop_timeout,
            hidden: Vec::new(),
            read_only: Vec::new(),
            egress_allow: Vec::new(),
        }
    }
}

pub struct LocalDriver {
    state_dir: PathBuf,
    options: LocalOptions,
    /// bubblewrap, by its path when the sandboxes are bubblewrap's.
    bwrap: OsString,
    /// Where limits go; `None` when there are none to apply or the host has no cgroups.
    cgroups: Option<Hierarchy>,
    children: Mutex<HashMap<SessionId, LocalChild>>,
}

struct LocalChild {
    pgid: i32,
    exited: watch::Receiver<Option<SandboxExit>>,
    /// The sandbox's own network namespace, when it has one.
    network_holder: NetworkHolder,
    /// How a terminal joins the sandbox.
    terminal: TerminalPlace,
}

/// The process whose network namespace is the sandbox's.
#[derive(Clone, Copy)]
enum NetworkHolder {
    /// None: the sandbox is on the host's network.
    Host,
    /// Found as the sandbox started (outbound networking is set up in it first).
    Known(i32),
    /// bubblewrap's first process, looked up when first needed: an isolated sandbox's
    /// open does not wait for it.
    FirstOf(i32),
}

impl NetworkHolder {
    async fn pid(self) -> Result<Option<i32>, SandboxError> {
        match self {
            NetworkHolder::Host => Ok(None),
            NetworkHolder::Known(pid) => Ok(Some(pid)),
            NetworkHolder::FirstOf(monitor) => match netns::sandbox_process(monitor).await {
                Some(pid) => Ok(Some(pid)),
                None => Err(SandboxError::Unavailable { what: "the sandbox's network is not up".into() }),
            },
        }
    }
}

/// What a terminal needs to run where the agent runs: the process holding the sandbox's
/// namespaces (bubblewrap), the agent's environment, its cgroup.
#[derive(Clone)]
struct TerminalPlace {
    /// Whether the agent runs in bubblewrap (process `pgid`), whose first child holds
    /// the sandbox's namespaces.
    isolated: bool,
    workspace_dir: PathBuf,
    /// The agent's environment: for a bubblewrap sandbox only the public part (the
    /// private part is read inside from the sandbox's own file).
    env: Vec<(String, String)>,
    cgroup_procs: Vec<PathBuf>,
}

/// What is written down for each running sandbox.
#[derive(Debug, Serialize, Deserialize)]
struct StateRecord {
    session_id: String,
    workspace_id: String,
    pid: i32,
    start_time: u64,
}

impl LocalDriver {
    /// A driver of plain child processes that keeps its records in `state_dir`.
    pub fn new(state_dir: &Path, stop_timeout: Duration) -> Result<LocalDriver, SandboxError> {
        LocalDriver::with_options(state_dir, LocalOptions::unisolated(stop_timeout))
    }

    /// A driver that keeps its records in `state_dir` (created if missing). Fails when
    /// a program the options need is not installed.
    pub fn with_options(state_dir: &Path, options: LocalOptions) -> Result<LocalDriver, SandboxError> {
        std::fs::create_dir_all(state_dir)
            .map_err(|source| SandboxError::State { path: state_dir.to_owned(), source })?;
        // bubblewrap by its path: a bare name with the `PATH` of the command's own
        // environment set makes the standard library fork the whole server (every page
        // table of it) instead of `posix_spawn`, which it can only use for a path.
        let mut bwrap = OsString::from("bwrap");
        if options.isolation == Isolation::Bwrap {
            bwrap = require_program("bwrap", "install bubblewrap or set sandbox.isolation = \"none\"")?
                .into_os_string();
            if options.network == Network::Outbound {
                require_program("slirp4netns", "install slirp4netns or set sandbox.network")?;
                require_program("nsenter", "install util-linux or set sandbox.network")?;
                require_program(
                    "nft",
                    "install nftables (it keeps sandboxes off the host's network) or set sandbox.network",
                )?;
            }
        }
        let cgroups = if options.resources.is_unlimited() {
            None
        } else {
            match Hierarchy::detect(state_dir) {
                Ok(hierarchy) => Some(hierarchy),
                Err(reason) => {
                    tracing::warn!(%reason, "sandbox limits cannot be applied on this host");
                    None
                }
            }
        };
        let driver = LocalDriver {
            state_dir: state_dir.to_owned(),
            options,
            bwrap,
            cgroups,
            children: Mutex::new(HashMap::new()),
        };
        if let Some(hierarchy) = &driver.cgroups {
            // Groups left by a crashed server whose sandboxes are gone.
            let live: Vec<SessionId> = driver
                .read_records()?
                .into_iter()
                .filter(|record| is_alive(record.pid, record.start_time))
                .filter_map(|record| SessionId::parse(&record.session_id))
                .collect();
            hierarchy.sweep(&live);
        }
        Ok(driver)
    }

    pub fn isolation(&self) -> Isolation {
        self.options.isolation
    }

    /// What the sandboxes of this driver are, for the start-up log.
    pub fn describe(&self) -> String {
        let isolation = match self.options.isolation {
            Isolation::Bwrap => format!("bubblewrap, network {}", self.options.network),
            Isolation::None => "no isolation".to_owned(),
        };
        let limits = match &self.cgroups {
            Some(hierarchy) => format!("limits through {}", hierarchy.describe()),
            None => "no limits".to_owned(),
        };
        format!("{isolation}, {limits}")
    }

    /// The program and arguments that start `spec`'s agent, inside `cgroup` if any.
    fn command_line(
        &self,
        spec: &SandboxSpec,
        cgroup: Option<&Cgroup>,
        gate: Option<&Path>,
        env_file: Option<&Path>,
    ) -> Vec<OsString> {
        let mut sandboxed: Vec<OsString> = match self.options.isolation {
            Isolation::None => plain_program(&spec.agent_command)
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), spec.agent_command.clone().into()]),
            Isolation::Bwrap => {
                let layout = bwrap::Layout {
                    workspace_dir: spec.workspace_dir.clone(),
                    network: self.options.network,
                    extra_read_only: self.options.read_only.clone(),
                    hidden: self.options.hidden.clone(),
                    wait_on_fd_3: gate.is_some(),
                    env: None,
                    env_file: env_file.map(Path::to_owned),
                    repository_config: None,
                };
                let mut line = vec![self.bwrap.clone()];
                // Without a shell when the home is there already (every open after the
                // first) and the command is plain.
                let program = home_is_there(&spec.workspace_dir)
                    .then(|| plain_program(&spec.agent_command))
                    .flatten()
                    .unwrap_or_else(|| agent_shell(&spec.agent_command));
                line.extend(bwrap::arguments(&layout, &program));
                line
            }
        };
        if cgroup.is_some() || gate.is_some() {
            let files = cgroup.map(Cgroup::procs_files).unwrap_or_default();
            sandboxed = in_cgroup(&files, gate, sandboxed);
        }
        sandboxed
    }

    fn record_path(&self, session_id: &SessionId) -> PathBuf {
        self.state_dir.join(format!("{session_id}.json"))
    }

    /// The private environment file of a sandbox (a session id) or a job.
    fn env_file_path(&self, name: &str) -> PathBuf {
        self.state_dir.join(format!("{name}.env"))
    }

    fn lock_children(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, LocalChild>> {
        // The map stays consistent whatever panicked while holding it.
        self.children.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_record(&self, record: &StateRecord, session_id: &SessionId) -> Result<(), SandboxError> {
        let path = self.record_path(session_id);
        let temporary = path.with_extension("json.tmp");
        let state_error = |source| SandboxError::State { path: path.clone(), source };
        let text = serde_json::to_vec(record).map_err(|error| state_error(std::io::Error::other(error)))?;
        std::fs::write(&temporary, text).map_err(state_error)?;
        std::fs::rename(&temporary, &path).map_err(state_error)
    }

    fn read_records(&self) -> Result<Vec<StateRecord>, SandboxError> {
        let state_error = |source| SandboxError::State { path: self.state_dir.clone(), source };
        let mut records = Vec::new();
        for entry in std::fs::read_dir(&self.state_dir).map_err(state_error)? {
            let path = entry.map_err(state_error)?.path();
            if path.extension().is_none_or(|extension| extension != "json") {
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<StateRecord>(&bytes).ok())
            {
                Some(record) => records.push(record),
                None => {
                    tracing::warn!(path = %path.display(), "removing an unreadable sandbox record");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(records)
    }

    /// The process of a job: a plain process in the checkout for trusted single-user
    /// setups, else bubblewrap around it, with its private environment and berth's git
    /// configuration in files of their own (returned: they must outlive the job).
    fn job_command(
        &self,
        job: &Job,
        program: &[OsString],
    ) -> Result<(tokio::process::Command, Vec<EnvFile>), SandboxError> {
        let mut files = Vec::new();
        if self.options.isolation == Isolation::None {
            let mut command = tokio::process::Command::new(&program[0]);
            command.args(&program[1..]).current_dir(&job.workspace_dir).env_clear().envs(job.env.clone());
            command.envs(job.secret_env.clone());
            return Ok((command, files));
        }
        let mut layout = bwrap::Layout {
            workspace_dir: job.workspace_dir.clone(),
            network: match job.network {
                JobNetwork::None => Network::Isolated,
                JobNetwork::Host => Network::Host,
            },
            extra_read_only: self.options.read_only.iter().chain(&job.read_only).cloned().collect(),
            hidden: self.options.hidden.clone(),
            wait_on_fd_3: false,
            env: Some(job.env.clone()),
            env_file: None,
            repository_config: None,
        };
        let name = format!("job-{}", hex_nonce());
        let spawn_error = |source| SandboxError::Spawn { command: job.argv.join(" "), source };
        if !job.secret_env.is_empty() {
            let file = EnvFile::write(&self.env_file_path(&name), &job.secret_env).map_err(spawn_error)?;
            layout.env_file = Some(file.path().to_owned());
            files.push(file);
        }
        if let Some(config) = &job.repository_config {
            let path = self.state_dir.join(format!("{name}.gitconfig"));
            let file = EnvFile::write_text(&path, config).map_err(spawn_error)?;
            layout.repository_config = Some(file.path().to_owned());
            files.push(file);
        }
        let mut command = tokio::process::Command::new(&self.bwrap);
        command.args(bwrap::arguments(&layout, program)).current_dir("/").env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        Ok((command, files))
    }

    /// The private environment of a bubblewrap sandbox: a file bound into it (without
    /// isolation it is the agent's own process environment).
    fn private_env_file(&self, spec: &SandboxSpec, isolated: bool) -> std::io::Result<Option<EnvFile>> {
        if !isolated || spec.secret_env.is_empty() {
            return Ok(None);
        }
        let path = self.env_file_path(spec.session_id.as_str());
        let _ = std::fs::remove_file(&path);
        EnvFile::write(&path, &spec.secret_env).map(Some)
    }

    /// With outbound networking the agent waits behind a gate (a FIFO) until slirp4netns
    /// has brought its interface up, so its first connection does not fail: its path and
    /// the end berth writes to.
    fn gate(&self, spec: &SandboxSpec, isolated: bool) -> std::io::Result<Option<(PathBuf, std::fs::File)>> {
        if !(isolated && self.options.network == Network::Outbound) {
            return Ok(None);
        }
        let path = self.state_dir.join(format!("{}.gate", spec.session_id));
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
        // Read and write, so opening never waits for the other side.
        let writer = std::fs::OpenOptions::new().read(true).write(true).open(&path)?;
        Ok(Some((path, writer)))
    }

    /// Outbound networking, once bubblewrap (process `pid`) runs: the process that holds
    /// the sandbox's namespaces, slirp4netns and the egress rules in them, after which the
    /// gate lets the agent start.
    async fn connect_network(
        &self,
        pid: i32,
        gate: Option<(PathBuf, std::fs::File)>,
    ) -> std::io::Result<(i32, tokio::process::Child)> {
        let holder = netns::sandbox_process(pid).await;
        if let Some((path, _)) = &gate {
            // bubblewrap runs, so the gate is open on its side: the name can go.
            let _ = std::fs::remove_file(path);
        }
        let holder = holder.ok_or_else(|| std::io::Error::other("bubblewrap did not start the sandbox"))?;
        let slirp = self.start_outbound(holder).await?;
        if let Some((_, mut writer)) = gate {
            use std::io::Write;
            // bubblewrap reads one byte from the gate, then runs the agent.
            writer.write_all(b"1")?;
        }
        Ok((holder, slirp))
    }

    /// Outbound networking for the sandbox whose namespaces process `holder` holds:
    /// slirp4netns and the egress rules, set up side by side (neither needs the other),
    /// both before the agent runs.
    async fn start_outbound(&self, holder: i32) -> std::io::Result<tokio::process::Child> {
        let rules = crate::egress::ruleset(&self.options.egress_allow, &crate::egress::host_addresses());
        let (slirp, filtered) =
            tokio::join!(netns::start_slirp(holder), crate::egress::apply(holder, &rules));
        filtered?;
        slirp
    }

    /// Stops a sandbox this process did not start (left by a crashed predecessor): SIGTERM
    /// to its process group first (the agent stops what it started), SIGKILL if it does
    /// not go, and whatever is left in its cgroup after that.
    async fn stop_orphan(&self, record: &StateRecord, session_id: &SessionId) -> Result<(), SandboxError> {
        let stop_error = |reason: String| SandboxError::Stop { session_id: session_id.clone(), reason };
        if is_alive(record.pid, record.start_time) || group_exists(record.pid) {
            signal_group(record.pid, Signal::SIGTERM).map_err(|error| stop_error(error.to_string()))?;
            // Not our child, so there is no exit to await: look until it is gone.
            let deadline = tokio::time::Instant::now() + self.options.stop_timeout;
            while group_exists(record.pid) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            signal_group(record.pid, Signal::SIGKILL).map_err(|error| stop_error(error.to_string()))?;
            let deadline = tokio::time::Instant::now() + KILL_TIMEOUT;
            while group_exists(record.pid) {
                if tokio::time::Instant::now() > deadline {
                    return Err(stop_error(format!("process group {} survived SIGKILL", record.pid)));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        if let Some(hierarchy) = &self.cgroups {
            let group = hierarchy.group_of(session_id);
            let _ = tokio::task::spawn_blocking(move || {
                group.kill_all();
                group.remove();
            })
            .await;
        }
        let _ = std::fs::remove_file(self.record_path(session_id));
        // A crashed server's sandbox may have left its private environment behind.
        let _ = std::fs::remove_file(self.env_file_path(session_id.as_str()));
        Ok(())
    }
}

impl Drop for LocalDriver {
    fn drop(&mut self) {
        if let Some(hierarchy) = &self.cgroups {
            hierarchy.remove_if_empty();
        }
    }
}

#[async_trait::async_trait]
impl SandboxDriver for LocalDriver {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn power_on(&self, spec: SandboxSpec) -> Result<AgentIo, SandboxError> {
        let spawn_error = |source| SandboxError::Spawn { command: spec.agent_command.clone(), source };
        let isolated = self.options.isolation == Isolation::Bwrap;
        let started = std::time::Instant::now();
        let gate = self.gate(&spec, isolated).map_err(spawn_error)?;
        let cgroup = match &self.cgroups {
            Some(hierarchy) => match hierarchy.create(&spec.session_id, &self.options.resources) {
                Ok(cgroup) => Some(cgroup),
                Err(source) => {
                    if let Some((path, _)) = &gate {
                        let _ = std::fs::remove_file(path);
                    }
                    return Err(SandboxError::State { path: PathBuf::from("/sys/fs/cgroup"), source });
                }
            },
            None => None,
        };
        let env_file = self.private_env_file(&spec, isolated).map_err(spawn_error)?;
        let started = record_step("prepare", started);
        let line = self.command_line(
            &spec,
            cgroup.as_ref(),
            gate.as_ref().map(|(path, _)| path.as_path()),
            env_file.as_ref().map(EnvFile::path),
        );
        let mut child = match agent_command(&spec, &line, isolated).spawn() {
            Ok(child) => child,
            Err(error) => {
                if let Some(cgroup) = &cgroup {
                    cgroup.remove();
                }
                return Err(spawn_error(error));
            }
        };
        let pid = child.id().and_then(|id| i32::try_from(id).ok()).ok_or_else(|| {
            spawn_error(std::io::Error::other("the agent exited before its process id was read"))
        })?;
        let (stdin, stdout, stderr) = match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
            (Some(stdin), Some(stdout), Some(stderr)) => (stdin, stdout, stderr),
            _ => return Err(spawn_error(std::io::Error::other("the agent's standard streams are missing"))),
        };
        let record = StateRecord {
            session_id: spec.session_id.to_string(),
            workspace_id: spec.workspace_id.to_string(),
            pid,
            start_time: start_time(pid).unwrap_or_default(),
        };
        if let Err(error) = self.write_record(&record, &spec.session_id) {
            return Err(abandon(pid, &mut child, cgroup.as_ref(), error).await);
        }
        let started = record_step("spawn", started);
        let (network_holder, slirp) = match (isolated, self.options.network) {
            // Outbound networking is set up before the agent runs (the gate holds it).
            (true, Network::Outbound) => match self.connect_network(pid, gate).await {
                Ok((holder, slirp)) => {
                    record_step("network", started);
                    (NetworkHolder::Known(holder), Some(slirp))
                }
                Err(error) => return Err(abandon(pid, &mut child, cgroup.as_ref(), spawn_error(error)).await),
            },
            // An isolated network needs nothing: its namespace is found when a port is
            // asked for.
            (true, Network::Isolated) => (NetworkHolder::FirstOf(pid), None),
            _ => (NetworkHolder::Host, None),
        };
        let terminal = TerminalPlace {
            isolated,
            workspace_dir: spec.workspace_dir.clone(),
            env: agent_environment(&spec, isolated),
            cgroup_procs: cgroup.as_ref().map(Cgroup::procs_files).unwrap_or_default(),
        };
        let (exited, notices) =
            watch_agent(child, pid, cgroup, slirp, env_file, self.record_path(&spec.session_id));
        self.lock_children().insert(
            spec.session_id.clone(),
            LocalChild { pgid: pid, exited: exited.clone(), network_holder, terminal },
        );
        let workspace_path =
            if isolated { PathBuf::from(bwrap::WORKSPACE) } else { spec.workspace_dir.clone() };
        Ok(AgentIo {
            stdin: Box::new(stdin),
            stdout: Box::new(stdout),
            stderr: Box::new(stderr),
            exited,
            workspace_path,
            notices,
        })
    }

    async fn power_off(&self, session_id: &SessionId) -> Result<(), SandboxError> {
        let child = self.lock_children().remove(session_id);
        let Some(LocalChild { pgid, mut exited, network_holder, terminal }) = child else {
            let record =
                self.read_records()?.into_iter().find(|record| record.session_id == session_id.as_str());
            return match record {
                Some(record) => self.stop_orphan(&record, session_id).await,
                None => Ok(()),
            };
        };
        let stop_error = |reason: String| SandboxError::Stop { session_id: session_id.clone(), reason };
        let failed = |error: nix::Error| stop_error(format!("cannot signal process group {pgid}: {error}"));
        signal_group(pgid, Signal::SIGTERM).map_err(failed)?;
        let stopped =
            tokio::time::timeout(self.options.stop_timeout, exited.wait_for(Option::is_some)).await.is_ok();
        if !stopped {
            tracing::warn!(session_id = %session_id, "the agent ignored SIGTERM; killing it");
            signal_group(pgid, Signal::SIGKILL).map_err(failed)?;
            let killed = tokio::time::timeout(KILL_TIMEOUT, exited.wait_for(Option::is_some)).await.is_ok();
            if !killed {
                // Keep it known, so a later power off can try again.
                let exited = exited.clone();
                let child = LocalChild { pgid, exited, network_holder, terminal };
                self.lock_children().insert(session_id.clone(), child);
                return Err(stop_error("the agent survived SIGKILL".into()));
            }
        }
        // The waiter killed the rest of the group when the agent exited.
        Ok(())
    }

    async fn running(&self) -> Result<Vec<RunningSandbox>, SandboxError> {
        let mut running = Vec::new();
        for record in self.read_records()? {
            let (Some(session_id), Some(workspace_id)) =
                (SessionId::parse(&record.session_id), WorkspaceId::parse(&record.workspace_id))
            else {
                continue;
            };
            if is_alive(record.pid, record.start_time) || self.lock_children().contains_key(&session_id) {
                running.push(RunningSandbox { session_id, workspace_id });
            } else {
                let _ = std::fs::remove_file(self.record_path(&session_id));
            }
        }
        Ok(running)
    }

    async fn connect(
        &self,
        session_id: &SessionId,
        port: u16,
    ) -> Result<tokio::net::TcpStream, SandboxError> {
        let holder = match self.lock_children().get(session_id) {
            Some(child) if child.exited.borrow().is_none() => child.network_holder,
            _ => return Err(SandboxError::NotRunning { session_id: session_id.clone() }),
        };
        let connected = match holder.pid().await? {
            Some(pid) => netns::connect_inside(pid, port).await,
            None => tokio::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port)).await,
        };
        connected.map_err(|source| SandboxError::Connect { port, source })
    }

    async fn listening_ports(&self, session_id: &SessionId) -> Result<Vec<u16>, SandboxError> {
        let holder = match self.lock_children().get(session_id) {
            Some(child) if child.exited.borrow().is_none() => child.network_holder,
            _ => return Err(SandboxError::NotRunning { session_id: session_id.clone() }),
        };
        // On the host's network the host's every listener would show: not the sandbox's.
        let Some(holder) = holder.pid().await? else {
            return Err(SandboxError::Unavailable {
                what: "this sandbox shares the host's network; its ports cannot be told apart".into(),
            });
        };
        crate::ports::of_process(holder)
            .map_err(|source| SandboxError::State { path: "/proc".into(), source })
    }

    async fn run_job(&self, job: Job) -> Result<JobOutput, SandboxError> {
        let program: Vec<OsString> = job.argv.iter().map(OsString::from).collect();
        if program.is_empty() {
            let source = std::io::Error::other("the job has no program");
            return Err(SandboxError::Spawn { command: String::new(), source });
        }
        // The private files live as long as the job.
        let (mut command, _job_files) = self.job_command(&job, &program)?;
        command
            .process_group(0)
            .stdin(if job.stdin.is_empty() { Stdio::null() } else { Stdio::piped() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child =
            command.spawn().map_err(|source| SandboxError::Spawn { command: job.argv.join(" "), source })?;
        let pid = child.id().and_then(|id| i32::try_from(id).ok());
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(SandboxError::Spawn {
                command: job.argv.join(" "),
                source: std::io::Error::other("the job's output streams are missing"),
            });
        };
        let input = child.stdin.take();
        let kill_group = || {
            if let Some(pid) = pid {
                let _ = signal_group(pid, Signal::SIGKILL);
            }
        };
        let finished = async {
            let status = child.wait().await;
            // Whatever the job left running goes with it.
            kill_group();
            status
        };
        let feed = async {
            if let Some(mut input) = input {
                use tokio::io::AsyncWriteExt;
                // A job that stops reading early just does not get the rest.
                let _ = input.write_all(&job.stdin).await;
            }
        };
        let outcome = within_limits(job.timeout, &job.cancel, async {
            let (read, stderr, status, ()) = tokio::join!(
                read_bounded(stdout, job.max_stdout),
                read_stderr(stderr, job.stderr_to.clone()),
                finished,
                feed
            );
            (read, stderr, status)
        })
        .await;
        let ((stdout, stdout_truncated), stderr_tail, status) = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                kill_group();
                let _ = child.wait().await;
                return Err(error);
            }
        };
        let status = status.map_err(|source| SandboxError::Spawn { command: job.argv.join(" "), source })?;
        use std::os::unix::process::ExitStatusExt;
        Ok(JobOutput {
            exit: SandboxExit { code: status.code(), signal: status.signal() },
            stdout,
            stdout_truncated,
            stderr_tail,
        })
    }

    async fn open_terminal(
        &self,
        session_id: &SessionId,
        size: TerminalSize,
    ) -> Result<TerminalIo, SandboxError> {
        let (pgid, place) = match self.lock_children().get(session_id) {
            Some(child) if child.exited.borrow().is_none() => (child.pgid, child.terminal.clone()),
            _ => return Err(SandboxError::NotRunning { session_id: session_id.clone() }),
        };
        let spawn_error = |source| SandboxError::Spawn { command: "a terminal".into(), source };
        let (mut line, mut env, inside) = if place.isolated {
            let (nsenter, setpriv) = match (program_path("nsenter"), program_path("setpriv")) {
                (Some(nsenter), Some(setpriv)) => (nsenter, setpriv),
                _ => {
                    let what = "terminals in bubblewrap sandboxes need nsenter and setpriv (util-linux)";
                    return Err(SandboxError::Unavailable { what: what.into() });
                }
            };
            // The agent's program itself: it runs only once the sandbox is set up, in it.
            let holder = netns::sandbox_program(pgid)
                .await
                .ok_or_else(|| SandboxError::NotRunning { session_id: session_id.clone() })?;
            if !netns::has_own_root(holder) {
                let what = "the sandbox is not set up yet; open the terminal again in a moment";
                return Err(SandboxError::Unavailable { what: what.into() });
            }
            let mut env = place.env.clone();
            env.push(("HOME".into(), format!("{}/.berth/home", bwrap::WORKSPACE)));
            (terminal_in_namespaces(&nsenter, &setpriv, holder), env, PathBuf::from(bwrap::WORKSPACE))
        } else {
            (vec!["/bin/sh".into(), "-c".into()], place.env.clone(), place.workspace_dir.clone())
        };
        line.extend([
            OsString::from(crate::terminal::SHELL_LINE),
            "berth-terminal".into(),
            inside.into_os_string(),
        ]);
        if !place.cgroup_procs.is_empty() {
            line = in_cgroup(&place.cgroup_procs, None, line);
        }
        env.push(("TERM".into(), "xterm-256color".into()));
        crate::terminal::spawn_on_pty(&line, &env, &place.workspace_dir, size).map_err(spawn_error)
    }

    fn job_workspace_path(&self, workspace_dir: &Path) -> PathBuf {
        match self.options.isolation {
            Isolation::None => workspace_dir.to_owned(),
            Isolation::Bwrap => PathBuf::from(bwrap::WORKSPACE),
        }
    }
}

/// The agent's command line inside a sandbox: its home (inside the workspace, so it
/// persists; outside git) is made there first, by the sandbox, because a path in the
/// workspace is the agent's to point anywhere and must never be followed on the host.
pub(crate) fn agent_shell(command: &str) -> Vec<OsString> {
    // `[` is the shell's own: an existing home (every open after the first) costs no
    // process.
    let line = format!("[ -d \"$HOME\" ] || mkdir -p \"$HOME\" 2>/dev/null; {command}");
    vec!["/bin/sh".into(), "-c".into(), line.into()]
}

/// The agent's command executed directly, without a shell in front of it (one process
/// less to start), when the shell would do nothing but run it
/// ([`berth_core::agents::plain_argv`]).
fn plain_program(command: &str) -> Option<Vec<OsString>> {
    berth_core::agents::plain_argv(command).map(|words| words.into_iter().map(OsString::from).collect())
}

/// Whether the agent's home in `workspace_dir` is a directory already. Only looked at,
/// never followed: each part must be a directory itself, not a link. Wrong (changed in
/// between), the agent merely starts without its home made for it.
fn home_is_there(workspace_dir: &Path) -> bool {
    let berth = workspace_dir.join(".berth");
    [berth.clone(), berth.join("home")]
        .iter()
        .all(|path| std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_dir()))
}

/// `program` run by [`PREPARE`]: in the cgroups whose `cgroup.procs` files are given
/// from its first instruction, behind `gate` if any.
fn in_cgroup(procs_files: &[PathBuf], gate: Option<&Path>, mut program: Vec<OsString>) -> Vec<OsString> {
    let mut line: Vec<OsString> = vec!["/bin/sh".into(), "-c".into(), PREPARE.into()];
    line.push("berth-sandbox".into());
    line.push(gate.map(|gate| gate.as_os_str().to_owned()).unwrap_or_default());
    line.push(procs_files.len().to_string().into());
    line.extend(procs_files.iter().map(|file| file.clone().into_os_string()));
    line.append(&mut program);
    line
}

/// A shell (its arguments follow) in the namespaces held by process `holder` of a
/// bubblewrap sandbox — user, mount (its root and working directory), pid, network and
/// the rest — with every capability dropped and no way to gain one, as bubblewrap runs
/// the agent. The programs are the host's, named by absolute path; the shell is the
/// sandbox's own `/bin/sh` (the host's `/usr`, read-only).
fn terminal_in_namespaces(nsenter: &Path, setpriv: &Path, holder: i32) -> Vec<OsString> {
    let mut line: Vec<OsString> = vec![nsenter.as_os_str().to_owned()];
    line.extend(
        ["--target", &holder.to_string(), "--all", "--root", "--wd", "--"].iter().map(OsString::from),
    );
    line.push(setpriv.as_os_str().to_owned());
    line.extend(
        ["--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs", "--"]
            .iter()
            .map(OsString::from),
    );
    line.extend(["/bin/sh".into(), "-c".into()]);
    line
}

/// A random name part.
fn hex_nonce() -> String {
    rand::random::<[u8; 8]>().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The agent's process: `line` run in the workspace, in a process group of its own, with
/// only the environment the spec names (the server's own — berth's settings, an
/// operator's credentials — is not the agent's business).
fn agent_command(spec: &SandboxSpec, line: &[std::ffi::OsString], isolated: bool) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&line[0]);
    command
        .args(&line[1..])
        .current_dir(&spec.workspace_dir)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .envs(agent_environment(spec, isolated));
    command
}

/// The environment the agent's process is given: the spec's, berth's ids, and without
/// isolation its home and private part (bubblewrap sets the home inside, and the
/// private part is read from the sandbox's own file).
fn agent_environment(spec: &SandboxSpec, isolated: bool) -> Vec<(String, String)> {
    let mut env = spec.env.clone();
    env.push(("BERTH_SESSION_ID".into(), spec.session_id.to_string()));
    env.push(("BERTH_WORKSPACE_ID".into(), spec.workspace_id.to_string()));
    // What a shell in front of it would have set.
    let workspace = if isolated { PathBuf::from(bwrap::WORKSPACE) } else { spec.workspace_dir.clone() };
    env.push(("PWD".into(), workspace.to_string_lossy().into_owned()));
    if !isolated {
        env.push(("HOME".into(), spec.workspace_dir.join(".berth/home").to_string_lossy().into_owned()));
        env.extend(spec.secret_env.iter().cloned());
    }
    env
}

/// Waits for the agent in the background: its limit hits reported as they come, and when
/// it exits, its group killed, what the sandbox held released (slirp4netns, the private
/// environment, the record, the cgroup) and the exit told.
fn watch_agent(
    mut child: tokio::process::Child,
    pid: i32,
    cgroup: Option<Cgroup>,
    slirp: Option<tokio::process::Child>,
    env_file: Option<EnvFile>,
    record_path: PathBuf,
) -> (watch::Receiver<Option<SandboxExit>>, mpsc::UnboundedReceiver<SandboxNotice>) {
    let (exit_sender, exited) = watch::channel(None);
    let (notice_sender, notices) = mpsc::unbounded_channel();
    let limits = cgroup.clone().map(|cgroup| {
        let seen = Mutex::new(cgroup.hits());
        std::sync::Arc::new(LimitWatch { cgroup, seen, notices: notice_sender })
    });
    if let Some(limits) = limits.clone() {
        tokio::spawn(limits.run(exited.clone()));
    }
    tokio::spawn(async move {
        let status = child.wait().await;
        // The agent is gone; whatever it started in its group goes with it.
        let _ = signal_group(pid, Signal::SIGKILL);
        drop(slirp);
        drop(env_file);
        if let Some(limits) = limits {
            // What killed the agent may be the limit: say so before the group goes.
            limits.check();
        }
        let _ = std::fs::remove_file(&record_path);
        let exit = match status {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                SandboxExit { code: status.code(), signal: status.signal() }
            }
            Err(_) => SandboxExit { code: None, signal: None },
        };
        let _ = exit_sender.send(Some(exit));
        // Then the group: a process that left the process group (setsid, possible
        // without a pid namespace) is still in it and is killed, and the empty group's
        // directories go. In the background: close waits for neither.
        if let Some(cgroup) = cgroup {
            let _ = tokio::task::spawn_blocking(move || {
                if cgroup.populated() {
                    cgroup.kill_all();
                }
                cgroup.remove();
            })
            .await;
        }
    });
    (exited, notices)
}

/// Stops a sandbox that failed half-way through starting.
async fn abandon(
    pid: i32,
    child: &mut tokio::process::Child,
    cgroup: Option<&Cgroup>,
    error: SandboxError,
) -> SandboxError {
    let _ = signal_group(pid, Signal::SIGKILL);
    let _ = child.wait().await;
    if let Some(cgroup) = cgroup {
        cgroup.kill_all();
        cgroup.remove();
    }
    error
}

/// Reports each new refusal the sandbox's cgroup counts.
struct LimitWatch {
    cgroup: Cgroup,
    seen: Mutex<crate::cgroup::LimitHits>,
    notices: mpsc::UnboundedSender<SandboxNotice>,
}

impl LimitWatch {
    fn check(&self) {
        let hits = self.cgroup.hits();
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if hits.oom_kills > seen.oom_kills {
            let _ = self.notices.send(SandboxNotice::MemoryLimit { killed: hits.oom_kills });
        }
        if hits.pids_refused > seen.pids_refused {
            let _ = self.notices.send(SandboxNotice::ProcessLimit { refused: hits.pids_refused });
        }
        *seen = hits;
    }

    /// Checks every [`LIMIT_POLL`] until the sandbox ends.
    async fn run(self: std::sync::Arc<Self>, mut exited: watch::Receiver<Option<SandboxExit>>) {
        loop {
            tokio::select! {
                _ = exited.wait_for(Option::is_some) => return,
                () = tokio::time::sleep(LIMIT_POLL) => self.check(),
            }
        }
    }
}

/// Whether `program` is on the `PATH`.
pub fn installed(program: &str) -> bool {
    program_path(program).is_some()
}

/// Where `program` is on the `PATH`.
fn program_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|dir| dir.join(program)).find(|path| path.is_file())
    })
}

/// Where `program` is on the `PATH`; fails with `advice` when it is not there.
fn require_program(program: &str, advice: &str) -> Result<PathBuf, SandboxError> {
    program_path(program)
        .ok_or_else(|| SandboxError::Unavailable { what: format!("{program} is not installed: {advice}") })
}

/// Records how long a step of a power on took (`berth_sandbox_phase_seconds{phase}`:
/// `prepare` — the network gate, the cgroup, the secrets' file; `spawn` — the process
/// and its state record; `network` — the namespace joined to slirp4netns with its egress
/// rules) and starts the next one.
fn record_step(step: &'static str, started: std::time::Instant) -> std::time::Instant {
    metrics::histogram!("berth_sandbox_phase_seconds", "phase" => step)
        .record(started.elapsed().as_secs_f64());
    std::time::Instant::now()
}
