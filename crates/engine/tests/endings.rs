//! The one rule of every ending, at the start after a crash: a session is recorded ended
//! only once its sandbox is off. When the reconciliation cannot power a sandbox off, the
//! session stays live (and its agent is not forgotten), and a close-all later finishes it.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_core::{EndReason, Role, SessionState, WorkspaceState};
use berth_engine::{CloseAllScope, Config, Engine};
use berth_sandbox::{DEFAULT_STOP_TIMEOUT, FaultyDriver, LocalDriver, SandboxDriver};
use berth_testkit::{SourceRepo, process_runs};
use std::sync::Arc;
use std::time::Duration;

fn config(data: &std::path::Path) -> Config {
    let mut config = Config::for_data_dir(data);
    config.agent_command = Some(common::AGENT.into());
    config
}

/// The local driver on the state directory the engine gives its own (`sandboxes/<replica>`),
/// behind a fault injector.
fn faulty_driver(config: &Config) -> Arc<FaultyDriver> {
    let state = config.data_dir.join("sandboxes").join(&config.replica.id);
    let real = LocalDriver::new(&state, DEFAULT_STOP_TIMEOUT).unwrap();
    Arc::new(FaultyDriver::new(Arc::new(real)))
}

#[test]
fn a_sandbox_the_restart_cannot_power_off_keeps_its_session_live_until_a_close_all_finishes_it() {
    let data = tempfile::tempdir().unwrap();
    let source = SourceRepo::new();

    // A server with a live session, which then dies: its tasks vanish with their runtime.
    let crashed = tokio::runtime::Runtime::new().unwrap();
    let (session, workspace, agent_pid) = crashed.block_on(async {
        let config = config(data.path());
        let engine = Engine::start_with_driver(config.clone(), faulty_driver(&config)).await.unwrap();
        let (alice, _) = engine.accounts.create_user("alice", Role::Member).await.unwrap();
        let (workspace, session, pid) = common::opened_workspace(&engine, &alice, &source).await;
        (session, workspace, pid)
    });
    drop(crashed);
    assert!(process_runs(agent_pid), "the crashed server's agent still runs");

    let restarted = tokio::runtime::Runtime::new().unwrap();
    restarted.block_on(async {
        let config = config(data.path());
        let driver = faulty_driver(&config);
        // Every power off fails at first.
        driver.fail_at_random(0.0, 1.0);
        let engine =
            Engine::start_with_driver(config, Arc::clone(&driver) as Arc<dyn SandboxDriver>).await.unwrap();
        let alice = engine.accounts.create_user("admin-of-test", Role::Admin).await.unwrap().0;
        let kept = engine.store().session(&session.id).await.unwrap().unwrap();
        assert!(kept.state.is_live(), "ended while its sandbox may still run: {kept:?}");
        assert!(process_runs(agent_pid), "the agent was left running, and its session says so");

        // Once the driver answers again, the close-all tool finishes the job.
        driver.fail_at_random(0.0, 0.0);
        let report = engine.sessions.close_all(&alice, CloseAllScope::Installation, None).await.unwrap();
        assert_eq!((report.closed, report.failed.len()), (vec![session.id.clone()], 0));
        let ended = engine.store().session(&session.id).await.unwrap().unwrap();
        assert_eq!((ended.state, ended.end_reason), (SessionState::Ended, Some(EndReason::Admin)));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while process_runs(agent_pid) {
            assert!(std::time::Instant::now() < deadline, "the agent outlived its session");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let workspace = engine.store().workspace(&workspace.id).await.unwrap().unwrap();
        assert_eq!(workspace.state, WorkspaceState::Idle);
        engine.shutdown().await;
    });
}
