//! The local driver against real processes: power on runs the agent in the workspace,
//! power off leaves no process of the sandbox behind, and a sandbox left by a crashed
//! server is found and stopped by the next one.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use berth_core::{SessionId, WorkspaceId};
use berth_sandbox::{FaultyDriver, LocalDriver, SandboxDriver, SandboxSpec};
use berth_testkit::process_runs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// An agent that starts a child of its own and writes both pids into the workspace.
const FORKING_AGENT: &str = "sleep 600 & echo $! > child.pid; echo $$ > agent.pid; wait";

fn spec(workspace_dir: &Path) -> SandboxSpec {
    SandboxSpec {
        session_id: SessionId::generate(),
        workspace_id: WorkspaceId::generate(),
        workspace_dir: workspace_dir.to_owned(),
        agent_command: FORKING_AGENT.into(),
        env: std::env::vars().filter(|(name, _)| name == "PATH").collect(),
        secret_env: Vec::new(),
    }
}

/// Waits (bounded) for a condition on the outside world that nothing notifies about.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

async fn pids_of_running_agent(workspace: &Path) -> (i32, i32) {
    eventually("the agent to write its pids", || {
        read_pid(&workspace.join("agent.pid")).is_some() && read_pid(&workspace.join("child.pid")).is_some()
    })
    .await;
    (read_pid(&workspace.join("agent.pid")).unwrap(), read_pid(&workspace.join("child.pid")).unwrap())
}

#[tokio::test]
async fn power_off_leaves_no_process_of_the_sandbox_behind() {
    let state = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("kept.txt"), "files stay").unwrap();
    let driver = LocalDriver::new(state.path(), Duration::from_secs(3)).unwrap();
    let spec = spec(workspace.path());
    let io = driver.power_on(spec.clone()).await.unwrap();
    let (agent, child) = pids_of_running_agent(workspace.path()).await;
    assert!(process_runs(agent) && process_runs(child));
    assert_eq!(driver.running().await.unwrap().len(), 1);

    driver.power_off(&spec.session_id).await.unwrap();
    assert!(io.exited.borrow().is_some(), "power off returns once the agent has exited");
    eventually("the agent's child to be gone", || !process_runs(child)).await;
    assert!(!process_runs(agent));
    assert!(driver.running().await.unwrap().is_empty());
    assert_eq!(std::fs::read_to_string(workspace.path().join("kept.txt")).unwrap(), "files stay");

    driver.power_off(&spec.session_id).await.expect("powering off twice is success");
}

#[tokio::test]
async fn an_agent_that_ignores_sigterm_is_killed() {
    let state = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let driver = LocalDriver::new(state.path(), Duration::from_millis(200)).unwrap();
    let mut stubborn = spec(workspace.path());
    stubborn.agent_command = "trap '' TERM; echo $$ > agent.pid; while true; do sleep 0.05; done".into();
    let io = driver.power_on(stubborn.clone()).await.unwrap();
    eventually("the agent to start", || read_pid(&workspace.path().join("agent.pid")).is_some()).await;
    driver.power_off(&stubborn.session_id).await.unwrap();
    let exit = io.exited.borrow().unwrap();
    assert_eq!(exit.signal, Some(9), "{exit}");
}

#[tokio::test]
async fn a_sandbox_left_by_a_crashed_server_is_found_and_stopped() {
    let state = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let spec = spec(workspace.path());
    let crashed = LocalDriver::new(state.path(), Duration::from_secs(3)).unwrap();
    let _io = crashed.power_on(spec.clone()).await.unwrap();
    let (agent, child) = pids_of_running_agent(workspace.path()).await;
    // The predecessor is gone without powering anything off; a new driver starts on the
    // same state directory, as a restarted server would.
    std::mem::forget(crashed);
    let successor = LocalDriver::new(state.path(), Duration::from_secs(3)).unwrap();
    let found = successor.running().await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].session_id, spec.session_id);

    successor.power_off(&spec.session_id).await.unwrap();
    eventually("the orphaned agent to be gone", || !process_runs(agent) && !process_runs(child)).await;
    assert!(successor.running().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_agent_that_exits_reports_how() {
    let state = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let driver = LocalDriver::new(state.path(), Duration::from_secs(3)).unwrap();
    let mut failing = spec(workspace.path());
    failing.agent_command = "exit 7".into();
    let mut io = driver.power_on(failing).await.unwrap();
    let exit = *io.exited.wait_for(Option::is_some).await.unwrap();
    assert_eq!(exit.map(|e| e.code), Some(Some(7)));
}

#[tokio::test]
async fn the_agent_knows_its_session() {
    let state = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let driver = LocalDriver::new(state.path(), Duration::from_secs(3)).unwrap();
    let mut printing = spec(workspace.path());
    printing.agent_command = "env > env.txt; echo done > done.txt".into();
    let mut io = driver.power_on(printing.clone()).await.unwrap();
    io.exited.wait_for(Option::is_some).await.unwrap();
    let env = std::fs::read_to_string(workspace.path().join("env.txt")).unwrap();
    assert!(env.contains(&format!("BERTH_SESSION_ID={}", printing.session_id)), "{env}");
}

#[tokio::test]
async fn a_plain_agent_command_runs_without_a_shell_in_front_of_it() {
    let state = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let driver = LocalDriver::new(state.path(), Duration::from_secs(3)).unwrap();
    let mut plain = spec(workspace.path());
    // Quoted words only, as berth's own agent and the catalogue's are started.
    plain.agent_command =
        "'/bin/sh' '-c' 'echo \"$PPID $PWD\" > parent.tmp; mv parent.tmp parent.txt; exec sleep 600'".into();
    let _io = driver.power_on(plain.clone()).await.unwrap();
    let written = workspace.path().join("parent.txt");
    eventually("the agent to say who started it", || written.exists()).await;
    // Its parent is the server itself: no shell waits in between.
    let expected = format!("{} {}\n", std::process::id(), workspace.path().display());
    assert_eq!(std::fs::read_to_string(&written).unwrap(), expected);
    driver.power_off(&plain.session_id).await.unwrap();
}

#[tokio::test]
async fn the_fault_injector_fails_exactly_what_it_was_told_to() {
    let state = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let real: Arc<dyn SandboxDriver> =
        Arc::new(LocalDriver::new(state.path(), Duration::from_secs(3)).unwrap());
    let faulty = FaultyDriver::new(real);
    let spec = spec(workspace.path());
    let _io = faulty.power_on(spec.clone()).await.unwrap();
    faulty.fail_power_off(&spec.workspace_id, 1);
    assert!(faulty.power_off(&spec.session_id).await.is_err());
    assert_eq!(faulty.running().await.unwrap().len(), 1, "a failed power off leaves the sandbox running");
    faulty.power_off(&spec.session_id).await.unwrap();
    assert!(faulty.running().await.unwrap().is_empty());
    faulty.fail_power_on(1);
    assert!(faulty.power_on(spec.clone()).await.is_err());
    assert_eq!(faulty.injected_failures(), (1, 1));
}
