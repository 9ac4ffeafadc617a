//! What the engine's tests share: a workspace of a source repository, cloned, then
//! opened, with the pid its stand-in agent wrote.
#![allow(clippy::unwrap_used)] // a test helper that cannot unwrap is a failed test

use berth_core::{Session, User, Workspace, WorkspaceState};
use berth_engine::{Engine, NewWorkspace, OpenOutcome};
use berth_testkit::SourceRepo;
use std::time::Duration;

/// A stand-in agent: writes its pid where berth keeps its own files, then only waits.
pub const AGENT: &str = "mkdir -p .berth && echo $$ > .berth/agent.pid && exec sleep 600";

/// `owner`'s workspace of `source`, cloned, with a new session open on it, and the pid of
/// its agent ([`AGENT`]) once written. On the real clock.
pub async fn opened_workspace(
    engine: &Engine,
    owner: &User,
    source: &SourceRepo,
) -> (Workspace, Session, i32) {
    let mut changes = engine.workspaces.subscribe_changes();
    let request = NewWorkspace { repo: source.url(), ..NewWorkspace::default() };
    let workspace = engine.workspaces.create(owner, request).await.unwrap();
    while engine.workspaces.workspace(owner, workspace.id.as_str()).await.unwrap().state
        == WorkspaceState::Initialising
    {
        changes.recv().await.unwrap();
    }
    let OpenOutcome::Opened { session, .. } =
        engine.sessions.open(owner, workspace.id.as_str()).await.unwrap()
    else {
        panic!("a new session");
    };
    let pid_file = engine.paths().workspace(&workspace.id).join(".berth/agent.pid");
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse().ok()) {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    (workspace, session, pid)
}
