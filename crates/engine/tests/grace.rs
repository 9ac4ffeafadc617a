//! The reconnect grace window on tokio's paused clock: leaving during a run keeps the
//! agent going; a reconnect within the window restores the session; expiry ends it and
//! powers the sandbox off — without waiting in real time.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_core::{EndReason, Role, Session, SessionState, User, WorkspaceState};
use berth_engine::{Config, Engine, OpenOutcome};
use berth_testkit::SourceRepo;
use berth_testkit::process_runs;
use std::sync::Arc;
use std::time::Duration;

const GRACE: Duration = Duration::from_secs(300);

struct Harness {
    _data: tempfile::TempDir,
    _source: SourceRepo,
    engine: Arc<Engine>,
    alice: User,
    session: Session,
    agent_pid: i32,
}

/// Pauses tokio's clock so that it moves only when the test advances it. A paused clock
/// also jumps ahead by itself whenever the runtime is idle; here the runtime idles while
/// SQLite's worker thread answers, and the jump would fire the pool's acquire timeout.
/// A task that always has work keeps the runtime from idling, so no jump happens.
fn pause_clock() -> tokio::task::JoinHandle<()> {
    tokio::time::pause();
    tokio::spawn(async {
        loop {
            tokio::task::yield_now().await;
        }
    })
}

impl Drop for Harness {
    fn drop(&mut self) {
        berth_testkit::kill_recorded_sandboxes(self._data.path());
    }
}

/// An engine with one open session whose agent is working, on the real clock.
async fn working_session() -> Harness {
    let data = tempfile::tempdir().unwrap();
    let source = SourceRepo::new();
    let mut config = Config::for_data_dir(data.path());
    config.agent_command = Some(common::AGENT.into());
    config.reconnect_grace = GRACE;
    let engine = Engine::start(config).await.unwrap();
    let (alice, _) = engine.accounts.create_user("alice", Role::Member).await.unwrap();
    let (_, session, agent_pid) = common::opened_workspace(&engine, &alice, &source).await;
    engine.sessions.set_agent_running(&session.id, true).await.unwrap();
    Harness { _data: data, _source: source, engine, alice, session, agent_pid }
}

#[tokio::test(flavor = "current_thread")]
async fn the_session_ends_when_the_grace_window_expires() {
    let harness = working_session().await;
    let mut changes = harness.engine.sessions.subscribe_session_changes();
    let _busy = pause_clock();
    let left_at = tokio::time::Instant::now();

    let left = harness.engine.sessions.leave(&harness.alice, harness.session.id.as_str()).await.unwrap();
    assert_eq!(left.state, SessionState::Disconnected);
    let expires = left.grace_expires_at.expect("a grace deadline");
    assert!(expires > left.started_at + chrono::Duration::seconds(299));
    assert!(process_runs(harness.agent_pid), "the agent keeps running during the grace window");

    tokio::time::advance(GRACE - Duration::from_secs(1)).await;
    let still = harness.engine.sessions.session(&harness.alice, harness.session.id.as_str()).await.unwrap();
    assert_eq!(still.state, SessionState::Disconnected, "a second before the deadline");
    // Timers fire on millisecond ticks, rounded up: one tick past the deadline.
    tokio::time::advance(Duration::from_secs(1) + Duration::from_millis(1)).await;
    let ended = loop {
        let changed = changes.recv().await.unwrap();
        if changed.id == harness.session.id && changed.state == SessionState::Ended {
            break changed;
        }
    };
    assert!(left_at.elapsed() >= GRACE, "ended after {:?}, before the window closed", left_at.elapsed());
    assert_eq!(ended.end_reason, Some(EndReason::GraceExpired));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while process_runs(harness.agent_pid) {
        assert!(std::time::Instant::now() < deadline, "the sandbox was powered off");
        tokio::task::yield_now().await;
    }
    let workspace = harness
        .engine
        .workspaces
        .workspace(&harness.alice, harness.session.workspace_id.as_str())
        .await
        .unwrap();
    assert_eq!(workspace.state, WorkspaceState::Idle);
}

#[tokio::test(flavor = "current_thread")]
async fn a_reconnect_within_the_window_restores_the_session() {
    let harness = working_session().await;
    let _busy = pause_clock();
    let left = harness.engine.sessions.leave(&harness.alice, harness.session.id.as_str()).await.unwrap();
    assert_eq!(left.state, SessionState::Disconnected);
    tokio::time::advance(GRACE / 2).await;

    let resumed =
        harness.engine.sessions.open(&harness.alice, harness.session.workspace_id.as_str()).await.unwrap();
    let OpenOutcome::Resumed { session } = resumed else { panic!("the live session is resumed") };
    assert_eq!(session.id, harness.session.id);
    assert_eq!((session.state, session.grace_expires_at), (SessionState::Active, None));

    // Well past the old deadline, the session is still there.
    tokio::time::advance(GRACE * 2).await;
    let later = harness.engine.sessions.session(&harness.alice, harness.session.id.as_str()).await.unwrap();
    assert_eq!(later.state, SessionState::Active);
    assert!(process_runs(harness.agent_pid));
}

#[tokio::test]
async fn leaving_without_a_run_ends_at_once() {
    let harness = working_session().await;
    harness.engine.sessions.set_agent_running(&harness.session.id, false).await.unwrap();
    let left = harness.engine.sessions.leave(&harness.alice, harness.session.id.as_str()).await.unwrap();
    assert_eq!((left.state, left.end_reason), (SessionState::Ended, Some(EndReason::Left)));
    assert_eq!(harness.engine.sessions.running_sandbox_count(), 0);
}
