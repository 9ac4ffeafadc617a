//! A driver that wraps a real one and fails chosen operations, for tests and drills of
//! partial failure. A failed power off leaves the real sandbox running, as a real
//! failure would.

use crate::{AgentIo, Job, JobOutput, RunningSandbox, SandboxDriver, SandboxError, SandboxSpec};
use berth_core::{SessionId, WorkspaceId};
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct FaultyDriver {
    inner: Arc<dyn SandboxDriver>,
    faults: Mutex<Faults>,
}

#[derive(Default)]
struct Faults {
    /// Power offs of these workspaces' sandboxes fail this many more times.
    power_off_failures: HashMap<WorkspaceId, u32>,
    /// Which workspace each running session belongs to.
    workspace_of: HashMap<SessionId, WorkspaceId>,
    power_on_failures: u32,
    /// Fractions of operations that fail at random, for drills.
    power_on_failure_rate: f64,
    power_off_failure_rate: f64,
    injected_power_off_failures: u64,
    injected_power_on_failures: u64,
}

impl FaultyDriver {
    pub fn new(inner: Arc<dyn SandboxDriver>) -> FaultyDriver {
        FaultyDriver { inner, faults: Mutex::new(Faults::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next `times` power offs of `workspace`'s sandbox fail.
    pub fn fail_power_off(&self, workspace: &WorkspaceId, times: u32) {
        self.lock().power_off_failures.insert(workspace.clone(), times);
    }

    /// The next `times` power ons fail.
    pub fn fail_power_on(&self, times: u32) {
        self.lock().power_on_failures = times;
    }

    /// Fails this fraction (0.0 to 1.0) of power ons and power offs at random.
    pub fn fail_at_random(&self, power_on_rate: f64, power_off_rate: f64) {
        let mut faults = self.lock();
        faults.power_on_failure_rate = power_on_rate;
        faults.power_off_failure_rate = power_off_rate;
    }

    /// How many power offs and power ons were made to fail so far.
    pub fn injected_failures(&self) -> (u64, u64) {
        let faults = self.lock();
        (faults.injected_power_off_failures, faults.injected_power_on_failures)
    }
}

#[async_trait::async_trait]
impl SandboxDriver for FaultyDriver {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn power_on(&self, spec: SandboxSpec) -> Result<AgentIo, SandboxError> {
        {
            let mut faults = self.lock();
            let random = faults.power_on_failure_rate > 0.0
                && rand::rng().random_bool(faults.power_on_failure_rate.min(1.0));
            if faults.power_on_failures > 0 || random {
                faults.power_on_failures = faults.power_on_failures.saturating_sub(1);
                faults.injected_power_on_failures += 1;
                return Err(SandboxError::Injected {
                    what: format!("power on of session {}", spec.session_id),
                });
            }
            faults.workspace_of.insert(spec.session_id.clone(), spec.workspace_id.clone());
        }
        self.inner.power_on(spec).await
    }

    async fn power_off(&self, session_id: &SessionId) -> Result<(), SandboxError> {
        {
            let mut faults = self.lock();
            let planned = faults
                .workspace_of
                .get(session_id)
                .cloned()
                .and_then(|workspace| faults.power_off_failures.get_mut(&workspace).filter(|left| **left > 0))
                .map(|left| *left -= 1)
                .is_some();
            let random = faults.power_off_failure_rate > 0.0
                && rand::rng().random_bool(faults.power_off_failure_rate.min(1.0));
            if planned || random {
                faults.injected_power_off_failures += 1;
                return Err(SandboxError::Injected { what: format!("power off of session {session_id}") });
            }
        }
        self.inner.power_off(session_id).await?;
        self.lock().workspace_of.remove(session_id);
        Ok(())
    }

    async fn running(&self) -> Result<Vec<RunningSandbox>, SandboxError> {
        self.inner.running().await
    }

    async fn connect(
        &self,
        session_id: &SessionId,
        port: u16,
    ) -> Result<tokio::net::TcpStream, SandboxError> {
        self.inner.connect(session_id, port).await
    }

    async fn run_job(&self, job: Job) -> Result<JobOutput, SandboxError> {
        self.inner.run_job(job).await
    }

    async fn open_terminal(
        &self,
        session_id: &SessionId,
        size: crate::TerminalSize,
    ) -> Result<crate::TerminalIo, SandboxError> {
        self.inner.open_terminal(session_id, size).await
    }

    async fn listening_ports(&self, session_id: &SessionId) -> Result<Vec<u16>, SandboxError> {
        self.inner.listening_ports(session_id).await
    }

    fn job_workspace_path(&self, workspace_dir: &std::path::Path) -> std::path::PathBuf {
        self.inner.job_workspace_path(workspace_dir)
    }
}
