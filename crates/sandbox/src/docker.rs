//! The `docker` driver: one container per running sandbox, through the Docker Engine API
//! (bollard; `DOCKER_HOST` selects a remote engine). The workspace directory is bind
//! mounted at `/workspace`, the agent's standard streams are attached for ACP, and every
//! container carries the labels `berth.workspace`, `berth.session` and
//! `berth.installation`, by which a restarted server finds the containers it left.
//! Power off stops and removes the container; the files stay in the workspace directory.

use crate::job::{STDERR_TAIL_BYTES, within_limits};
use crate::settings::{Network, Resources};
use crate::{
    AgentIo, Job, JobNetwork, JobOutput, LocalDriver, RunningSandbox, SandboxDriver, SandboxError,
    SandboxExit, SandboxSpec, bwrap, netns,
};
use berth_core::{SessionId, WorkspaceId};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

const LABEL_WORKSPACE: &str = "berth.workspace";
const LABEL_SESSION: &str = "berth.session";
const LABEL_INSTALLATION: &str = "berth.installation";
/// Marks the short-lived containers of jobs (git on a checkout, a clone).
const LABEL_JOB: &str = "berth.job";
/// Buffer of each of the agent's output streams between the engine API and the engine.
const STREAM_BUFFER: usize = 256 * 1024;

/// How the docker driver makes containers.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    pub image: String,
    pub network: Network,
    pub resources: Resources,
    pub stop_timeout: Duration,
    /// Names this installation's containers apart from others on the same engine.
    pub state_dir: PathBuf,
    /// Host files shown read-only at their own path (the agent's program); they must be
    /// on the engine's machine.
    pub read_only: Vec<PathBuf>,
}

pub struct DockerDriver {
    docker: Docker,
    options: DockerOptions,
    installation: String,
    /// Where jobs without network run when this machine has bubblewrap: a sandbox of
    /// the local driver's, never the agent's own container — the same isolation, with
    /// berth's `.git/config`, for milliseconds instead of a container each.
    local_jobs: Option<LocalDriver>,
}

fn engine_error(error: bollard::errors::Error) -> SandboxError {
    SandboxError::Engine { message: error.to_string() }
}

fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

fn container_name(session_id: &SessionId) -> String {
    format!("berth-{session_id}")
}

impl DockerDriver {
    /// Connects to the engine `DOCKER_HOST` names (the local socket by default) and agrees
    /// on an API version with it.
    pub async fn connect(options: DockerOptions) -> Result<DockerDriver, SandboxError> {
        let docker = Docker::connect_with_defaults().map_err(engine_error)?;
        let docker = docker.negotiate_version().await.map_err(|error| SandboxError::Unavailable {
            what: format!("cannot reach the Docker engine (set DOCKER_HOST?): {error}"),
        })?;
        let installation = crate::cgroup::installation_name(&options.state_dir);
        let driver = DockerDriver { docker, options, installation, local_jobs: None };
        driver.remove_left_jobs().await?;
        Ok(driver)
    }

    /// Runs jobs without network (git status, diffs, files, commits: what a page reads
    /// after every turn) in `local`'s sandboxes — bubblewrap on this machine, which sees
    /// the checkout as the containers do — instead of a container each. Jobs with
    /// network (clones, pushes) keep a container of their own.
    pub fn with_local_jobs(mut self, local: LocalDriver) -> Result<DockerDriver, SandboxError> {
        if local.isolation() != crate::Isolation::Bwrap {
            return Err(SandboxError::Unavailable { what: "local jobs need bubblewrap".into() });
        }
        self.local_jobs = Some(local);
        Ok(self)
    }

    /// Job containers of this installation left by a server that crashed mid-job.
    async fn remove_left_jobs(&self) -> Result<(), SandboxError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_INSTALLATION}={}", self.installation), LABEL_JOB.to_owned()],
        )]);
        let options =
            ListContainersOptions { all: true, filters: Some(filters), ..ListContainersOptions::default() };
        for container in self.docker.list_containers(Some(options)).await.map_err(engine_error)? {
            if let Some(id) = container.id {
                self.remove(&id).await?;
            }
        }
        Ok(())
    }

    /// The workspace at `/workspace`, the paths given read-only at their own path, the
    /// network, and the installation's limits.
    fn host_config(&self, workspace_dir: &Path, read_only: &[PathBuf], network_mode: &str) -> HostConfig {
        let mut binds = vec![format!("{}:{}", workspace_dir.display(), bwrap::WORKSPACE)];
        binds.extend(
            self.options.read_only.iter().chain(read_only).map(|path| format!("{0}:{0}:ro", path.display())),
        );
        let resources = self.options.resources;
        HostConfig {
            binds: Some(binds),
            network_mode: Some(network_mode.to_owned()),
            memory: resources.memory_bytes.and_then(|bytes| i64::try_from(bytes).ok()),
            memory_swap: resources.memory_bytes.and_then(|bytes| i64::try_from(bytes).ok()),
            pids_limit: resources.pids.map(i64::from),
            nano_cpus: resources.cpus.map(|cpus| (cpus * 1e9) as i64),
            init: Some(true),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            ..HostConfig::default()
        }
    }

    /// A job's container; `repository_config` is the host file of berth's git
    /// configuration, bound read-only over the checkout's (the engine resolves that
    /// destination inside the container's root, so a link there leads nowhere outside).
    fn job_body(&self, job: &Job, repository_config: Option<&Path>) -> ContainerCreateBody {
        let network_mode = match job.network {
            JobNetwork::None => "none",
            JobNetwork::Host => "host",
        };
        let mut host_config = self.host_config(&job.workspace_dir, &job.read_only, network_mode);
        if let (Some(binds), Some(config)) = (host_config.binds.as_mut(), repository_config) {
            binds.push(format!("{}:{}/.git/config:ro", config.display(), bwrap::WORKSPACE));
        }
        let labels = HashMap::from([
            (LABEL_WORKSPACE.to_owned(), job.workspace_id.to_string()),
            (LABEL_INSTALLATION.to_owned(), self.installation.clone()),
            (LABEL_JOB.to_owned(), "1".to_owned()),
        ]);
        ContainerCreateBody {
            image: Some(self.options.image.clone()),
            cmd: Some(job.argv.clone()),
            working_dir: Some(bwrap::WORKSPACE.to_owned()),
            // Container settings are the Docker engine's business only: no command line
            // shows them, so the private part goes in with the rest.
            env: Some(
                job.env
                    .iter()
                    .chain(&job.secret_env)
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect(),
            ),
            labels: Some(labels),
            hostname: Some("berth".to_owned()),
            attach_stdin: Some(!job.stdin.is_empty()),
            open_stdin: Some(!job.stdin.is_empty()),
            stdin_once: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            host_config: Some(host_config),
            ..ContainerCreateBody::default()
        }
    }

    fn create_body(&self, spec: &SandboxSpec) -> ContainerCreateBody {
        let network_mode = match self.options.network {
            Network::Host => "host",
            Network::Isolated => "none",
            Network::Outbound => "bridge",
        };
        let host_config = self.host_config(&spec.workspace_dir, &[], network_mode);
        let labels = HashMap::from([
            (LABEL_WORKSPACE.to_owned(), spec.workspace_id.to_string()),
            (LABEL_SESSION.to_owned(), spec.session_id.to_string()),
            (LABEL_INSTALLATION.to_owned(), self.installation.clone()),
        ]);
        ContainerCreateBody {
            image: Some(self.options.image.clone()),
            cmd: Some(
                crate::local::agent_shell(&spec.agent_command)
                    .into_iter()
                    .map(|arg| arg.to_string_lossy().into_owned())
                    .collect(),
            ),
            working_dir: Some(bwrap::WORKSPACE.to_owned()),
            env: Some(
                [
                    format!("BERTH_SESSION_ID={}", spec.session_id),
                    format!("BERTH_WORKSPACE_ID={}", spec.workspace_id),
                    format!("HOME={}/.berth/home", bwrap::WORKSPACE),
                ]
                .into_iter()
                // The image has its own PATH; the rest of the spec's, then the secrets.
                .chain(
                    spec.env
                        .iter()
                        .filter(|(name, _)| name != "PATH")
                        .map(|(name, value)| format!("{name}={value}")),
                )
                .chain(spec.secret_env.iter().map(|(name, value)| format!("{name}={value}")))
                .collect(),
            ),
            labels: Some(labels),
            hostname: Some("berth".to_owned()),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(false),
            tty: Some(false),
            host_config: Some(host_config),
            ..ContainerCreateBody::default()
        }
    }

    async fn remove(&self, name: &str) -> Result<(), SandboxError> {
        let options = RemoveContainerOptions { force: true, v: true, ..RemoveContainerOptions::default() };
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            // Already being removed by an earlier call.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => Ok(()),
            Err(error) => Err(engine_error(error)),
        }
    }
}

#[async_trait::async_trait]
impl SandboxDriver for DockerDriver {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn power_on(&self, spec: SandboxSpec) -> Result<AgentIo, SandboxError> {
        let name = container_name(&spec.session_id);
        let create = CreateContainerOptions { name: Some(name.clone()), ..CreateContainerOptions::default() };
        self.docker.create_container(Some(create), self.create_body(&spec)).await.map_err(engine_error)?;

        let started = async {
            let attach = AttachContainerOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                stream: true,
                ..AttachContainerOptions::default()
            };
            let attached = self.docker.attach_container(&name, Some(attach)).await.map_err(engine_error)?;
            self.docker.start_container(&name, None).await.map_err(engine_error)?;
            Ok::<_, SandboxError>(attached)
        };
        let attached = match started.await {
            Ok(attached) => attached,
            Err(error) => {
                let _ = self.remove(&name).await;
                return Err(error);
            }
        };

        let (stdout_writer, stdout) = tokio::io::duplex(STREAM_BUFFER);
        let (stderr_writer, stderr) = tokio::io::duplex(STREAM_BUFFER);
        let mut output = attached.output;
        tokio::spawn(async move {
            let (mut stdout_writer, mut stderr_writer) = (stdout_writer, stderr_writer);
            while let Some(Ok(chunk)) = output.next().await {
                let written = match chunk {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        stdout_writer.write_all(&message).await
                    }
                    LogOutput::StdErr { message } => stderr_writer.write_all(&message).await,
                    LogOutput::StdIn { .. } => Ok(()),
                };
                if written.is_err() {
                    break;
                }
            }
        });

        let (exit_sender, exited) = watch::channel(None);
        let mut wait = self.docker.wait_container(&name, None::<WaitContainerOptions>);
        tokio::spawn(async move {
            let exit = match wait.next().await {
                Some(Ok(response)) => {
                    SandboxExit { code: i32::try_from(response.status_code).ok(), signal: None }
                }
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                    SandboxExit { code: i32::try_from(code).ok(), signal: None }
                }
                _ => SandboxExit { code: None, signal: None },
            };
            let _ = exit_sender.send(Some(exit));
        });
        // Limits are the engine's business here; no notices from this driver yet.
        let (_, notices) = mpsc::unbounded_channel();
        Ok(AgentIo {
            stdin: Box::new(attached.input),
            stdout: Box::new(stdout),
            stderr: Box::new(stderr),
            exited,
            workspace_path: PathBuf::from(bwrap::WORKSPACE),
            notices,
        })
    }

    async fn power_off(&self, session_id: &SessionId) -> Result<(), SandboxError> {
        let name = container_name(session_id);
        let seconds = i32::try_from(self.options.stop_timeout.as_secs()).unwrap_or(i32::MAX);
        let stop = StopContainerOptions { t: Some(seconds), ..StopContainerOptions::default() };
        match self.docker.stop_container(&name, Some(stop)).await {
            Ok(()) => {}
            Err(error) if is_not_found(&error) => return Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {}
            Err(error) => {
                return Err(SandboxError::Stop { session_id: session_id.clone(), reason: error.to_string() });
            }
        }
        self.remove(&name).await
    }

    async fn running(&self) -> Result<Vec<RunningSandbox>, SandboxError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_INSTALLATION}={}", self.installation)],
        )]);
        let options =
            ListContainersOptions { all: true, filters: Some(filters), ..ListContainersOptions::default() };
        let containers = self.docker.list_containers(Some(options)).await.map_err(engine_error)?;
        Ok(containers
            .into_iter()
            .filter_map(|container| {
                let labels = container.labels?;
                Some(RunningSandbox {
                    session_id: SessionId::parse(labels.get(LABEL_SESSION)?)?,
                    workspace_id: WorkspaceId::parse(labels.get(LABEL_WORKSPACE)?)?,
                })
            })
            .collect())
    }

    async fn connect(
        &self,
        session_id: &SessionId,
        port: u16,
    ) -> Result<tokio::net::TcpStream, SandboxError> {
        let name = container_name(session_id);
        let container = match self.docker.inspect_container(&name, None::<InspectContainerOptions>).await {
            Ok(container) => container,
            Err(error) if is_not_found(&error) => {
                return Err(SandboxError::NotRunning { session_id: session_id.clone() });
            }
            Err(error) => return Err(engine_error(error)),
        };
        let state = container.state.unwrap_or_default();
        if state.running != Some(true) {
            return Err(SandboxError::NotRunning { session_id: session_id.clone() });
        }
        let address = container
            .network_settings
            .and_then(|settings| settings.networks)
            .into_iter()
            .flatten()
            .filter_map(|(_, endpoint)| endpoint.ip_address)
            .find_map(|address| address.parse::<std::net::IpAddr>().ok());
        let connected = match (self.options.network, address) {
            (Network::Host, _) => tokio::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port)).await,
            (_, Some(address)) => tokio::net::TcpStream::connect((address, port)).await,
            // No network of its own (isolated): enter the container's namespace, which
            // works where the engine runs on this machine.
            (_, None) => match state.pid.and_then(|pid| i32::try_from(pid).ok()).filter(|pid| *pid > 0) {
                Some(pid) => netns::connect_inside(pid, port).await,
                None => Err(std::io::Error::other("the container has no network address")),
            },
        };
        connected.map_err(|source| SandboxError::Connect { port, source })
    }

    async fn open_terminal(
        &self,
        session_id: &SessionId,
        size: crate::TerminalSize,
    ) -> Result<crate::TerminalIo, SandboxError> {
        use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
        let name = container_name(session_id);
        let cmd = ["/bin/sh", "-c", crate::terminal::SHELL_LINE, "berth-terminal", bwrap::WORKSPACE];
        let exec = CreateExecOptions {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(true),
            env: Some(vec!["TERM=xterm-256color"]),
            cmd: Some(cmd.to_vec()),
            working_dir: Some(bwrap::WORKSPACE),
            ..CreateExecOptions::default()
        };
        let created = match self.docker.create_exec(&name, exec).await {
            Ok(created) => created,
            Err(error) if is_not_found(&error) => {
                return Err(SandboxError::NotRunning { session_id: session_id.clone() });
            }
            Err(error) => return Err(engine_error(error)),
        };
        let start = StartExecOptions { detach: false, tty: true, output_capacity: None };
        let StartExecResults::Attached { mut output, input: mut writer } =
            self.docker.start_exec(&created.id, Some(start)).await.map_err(engine_error)?
        else {
            return Err(SandboxError::Engine { message: "the terminal's exec started detached".into() });
        };
        let resize = |size: crate::TerminalSize| ResizeExecOptions { height: size.rows, width: size.cols };
        let _ = self.docker.resize_exec(&created.id, resize(size)).await;
        let (output_sender, received) = mpsc::channel::<Vec<u8>>(64);
        tokio::spawn(async move {
            while let Some(Ok(chunk)) = output.next().await {
                let bytes = match chunk {
                    LogOutput::StdOut { message }
                    | LogOutput::Console { message }
                    | LogOutput::StdErr { message } => message.to_vec(),
                    LogOutput::StdIn { .. } => continue,
                };
                if output_sender.send(bytes).await.is_err() {
                    break;
                }
            }
        });
        let (input, mut inputs) = mpsc::channel::<crate::TerminalInput>(64);
        let (docker, exec_id) = (self.docker.clone(), created.id);
        tokio::spawn(async move {
            while let Some(message) = inputs.recv().await {
                match message {
                    crate::TerminalInput::Data(bytes) => {
                        if writer.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    crate::TerminalInput::Resize(size) => {
                        let _ = docker.resize_exec(&exec_id, resize(size)).await;
                    }
                }
            }
            // Hung up: the engine has no way to end one exec, so its shell is told so
            // the way a terminal's hang-up does (where the engine runs on this machine).
            let pid = docker.inspect_exec(&exec_id).await.ok().and_then(|exec| exec.pid);
            if let Some(pid) = pid.and_then(|pid| i32::try_from(pid).ok()).filter(|pid| *pid > 0) {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP);
            }
        });
        Ok(crate::TerminalIo { output: received, input })
    }

    async fn run_job(&self, job: Job) -> Result<JobOutput, SandboxError> {
        if let Some(local) = &self.local_jobs
            && job.network == JobNetwork::None
        {
            return local.run_job(job).await;
        }
        let name = format!("berth-job-{}-{:016x}", job.workspace_id, rand::random::<u64>());
        let create = CreateContainerOptions { name: Some(name.clone()), ..CreateContainerOptions::default() };
        let config_file = match &job.repository_config {
            Some(config) => {
                let path = self.options.state_dir.join(format!("{name}.gitconfig"));
                let state = |source| SandboxError::State { path: path.clone(), source };
                std::fs::create_dir_all(&self.options.state_dir).map_err(state)?;
                Some(crate::secret_env::EnvFile::write_text(&path, config).map_err(state)?)
            }
            None => None,
        };
        let body = self.job_body(&job, config_file.as_ref().map(|file| file.path()));
        self.docker.create_container(Some(create), body).await.map_err(engine_error)?;
        let ran = within_limits(job.timeout, &job.cancel, self.attach_and_wait(&name, &job)).await;
        // The container goes whatever happened: a job leaves nothing running.
        let removed = self.remove(&name).await;
        drop(config_file);
        let output = ran??;
        removed?;
        Ok(output)
    }
}

impl DockerDriver {
    /// Starts the created job container `name`, collects its output within the job's
    /// bounds and waits for it to end.
    async fn attach_and_wait(&self, name: &str, job: &Job) -> Result<JobOutput, SandboxError> {
        let attach = AttachContainerOptions {
            stdin: !job.stdin.is_empty(),
            stdout: true,
            stderr: true,
            stream: true,
            ..AttachContainerOptions::default()
        };
        let mut attached = self.docker.attach_container(name, Some(attach)).await.map_err(engine_error)?;
        if !job.stdin.is_empty() {
            let (mut input, bytes) = (attached.input, job.stdin.clone());
            tokio::spawn(async move {
                let _ = input.write_all(&bytes).await;
                // The end of the input: the job reads to it.
                let _ = input.shutdown().await;
            });
        }
        if let Err(error) = self.docker.start_container(name, None).await {
            // What the checkout holds can make a mount fail (`.git` not a directory): the
            // job then fails as `docker run` does (125, the engine's reason), not berth.
            let message = error.to_string();
            if job.repository_config.is_some() && message.contains("mount") {
                let stderr_tail = format!("error: cannot use this checkout: {message}\n").into_bytes();
                let exit = SandboxExit { code: Some(125), signal: None };
                return Ok(JobOutput { exit, stdout: Vec::new(), stdout_truncated: false, stderr_tail });
            }
            return Err(engine_error(error));
        }
        let (mut stdout, mut stdout_truncated, mut stderr_tail) = (Vec::new(), false, Vec::new());
        while let Some(chunk) = attached.output.next().await {
            match chunk.map_err(engine_error)? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    let room = job.max_stdout.saturating_sub(stdout.len());
                    stdout.extend_from_slice(&message[..message.len().min(room)]);
                    stdout_truncated |= message.len() > room;
                }
                LogOutput::StdErr { message } => {
                    if let Some(forward) = &job.stderr_to {
                        let _ = forward.send(message.to_vec());
                    }
                    stderr_tail.extend_from_slice(&message);
                    if stderr_tail.len() > STDERR_TAIL_BYTES {
                        stderr_tail.drain(..stderr_tail.len() - STDERR_TAIL_BYTES);
                    }
                }
                LogOutput::StdIn { .. } => {}
            }
        }
        let code = match self.docker.wait_container(name, None::<WaitContainerOptions>).next().await {
            Some(Ok(response)) => i32::try_from(response.status_code).ok(),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                i32::try_from(code).ok()
            }
            Some(Err(error)) => return Err(engine_error(error)),
            None => None,
        };
        Ok(JobOutput { exit: SandboxExit { code, signal: None }, stdout, stdout_truncated, stderr_tail })
    }
}
