//! The `local` driver: the agent runs as a child process in its own process group, in
//! the workspace directory. Powering off signals the whole group, so the agent's own
//! children go too. Each running sandbox is also written down in a state directory
//! (pid and process start time), so a server restarted after a crash finds and stops
//! the sandboxes its predecessor left.

use crate::proc::{group_exists, is_alive, signal_group, start_time};
use crate::{AgentIo, RunningSandbox, SandboxDriver, SandboxError, SandboxExit, SandboxSpec};
use berth_core::{SessionId, WorkspaceId};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// How long an agent has to exit after SIGTERM before it is killed.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// After SIGKILL a process is gone as soon as the kernel reaps it; waiting longer than
/// this means something is wrong (an uninterruptible sleep), reported as a failed stop.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

pub struct LocalDriver {
    state_dir: PathBuf,
    stop_timeout: Duration,
    children: Mutex<HashMap<SessionId, LocalChild>>,
}

struct LocalChild {
    pgid: i32,
    exited: watch::Receiver<Option<SandboxExit>>,
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
    /// A driver that keeps its records in `state_dir` (created if missing).
    pub fn new(state_dir: &Path, stop_timeout: Duration) -> Result<LocalDriver, SandboxError> {
        std::fs::create_dir_all(state_dir)
            .map_err(|source| SandboxError::State { path: state_dir.to_owned(), source })?;
        Ok(LocalDriver {
            state_dir: state_dir.to_owned(),
            stop_timeout,
            children: Mutex::new(HashMap::new()),
        })
    }

    fn record_path(&self, session_id: &SessionId) -> PathBuf {
        self.state_dir.join(format!("{session_id}.json"))
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

    /// Stops a sandbox this process did not start (left by a crashed predecessor).
    async fn stop_orphan(&self, record: &StateRecord, session_id: &SessionId) -> Result<(), SandboxError> {
        let stop_error = |reason: String| SandboxError::Stop { session_id: session_id.clone(), reason };
        if is_alive(record.pid, record.start_time) || group_exists(record.pid) {
            signal_group(record.pid, Signal::SIGKILL).map_err(|error| stop_error(error.to_string()))?;
            let deadline = tokio::time::Instant::now() + KILL_TIMEOUT;
            // Not our child, so there is no exit to await: look until it is gone.
            while group_exists(record.pid) {
                if tokio::time::Instant::now() > deadline {
                    return Err(stop_error(format!("process group {} survived SIGKILL", record.pid)));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let _ = std::fs::remove_file(self.record_path(session_id));
        Ok(())
    }
}

#[async_trait::async_trait]
impl SandboxDriver for LocalDriver {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn power_on(&self, spec: SandboxSpec) -> Result<AgentIo, SandboxError> {
        let mut command = tokio::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(&spec.agent_command)
            .current_dir(&spec.workspace_dir)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("BERTH_SESSION_ID", spec.session_id.as_str())
            .env("BERTH_WORKSPACE_ID", spec.workspace_id.as_str());
        // berth's own settings (the admin token, the database URL) are not the agent's
        // business; the rest of the environment (model provider keys) is.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("BERTH_")
                && name != "BERTH_SESSION_ID"
                && name != "BERTH_WORKSPACE_ID"
            {
                command.env_remove(name);
            }
        }
        let spawn_error = |source| SandboxError::Spawn { command: spec.agent_command.clone(), source };
        let mut child = command.spawn().map_err(spawn_error)?;
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
            let _ = signal_group(pid, Signal::SIGKILL);
            let _ = child.wait().await;
            return Err(error);
        }

        let (exit_sender, exited) = watch::channel(None);
        let record_path = self.record_path(&spec.session_id);
        tokio::spawn(async move {
            let status = child.wait().await;
            // The agent is gone; whatever it started in its group goes with it.
            let _ = signal_group(pid, Signal::SIGKILL);
            let _ = std::fs::remove_file(&record_path);
            let exit = match status {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    SandboxExit { code: status.code(), signal: status.signal() }
                }
                Err(_) => SandboxExit { code: None, signal: None },
            };
            let _ = exit_sender.send(Some(exit));
        });
        self.lock_children()
            .insert(spec.session_id.clone(), LocalChild { pgid: pid, exited: exited.clone() });
        Ok(AgentIo { stdin: Box::new(stdin), stdout: Box::new(stdout), stderr: Box::new(stderr), exited })
    }

    async fn power_off(&self, session_id: &SessionId) -> Result<(), SandboxError> {
        let child = self.lock_children().remove(session_id);
        let Some(LocalChild { pgid, mut exited }) = child else {
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
        let stopped = tokio::time::timeout(self.stop_timeout, exited.wait_for(Option::is_some)).await.is_ok();
        if !stopped {
            tracing::warn!(session_id = %session_id, "the agent ignored SIGTERM; killing it");
            signal_group(pgid, Signal::SIGKILL).map_err(failed)?;
            let killed = tokio::time::timeout(KILL_TIMEOUT, exited.wait_for(Option::is_some)).await.is_ok();
            if !killed {
                // Keep it known, so a later power off can try again.
                let exited = exited.clone();
                self.lock_children().insert(session_id.clone(), LocalChild { pgid, exited });
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
}
