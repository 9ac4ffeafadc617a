//! Workspace provisioning against real git: clone to ready or error with the log, git
//! status, delete with and without unsaved work, and recovery after a restart.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use berth_core::{Role, User, Workspace, WorkspaceState};
use berth_engine::{Config, Engine, EngineError, NewWorkspace};
use berth_testkit::{SourceRepo, git};
use std::sync::Arc;
use std::time::Duration;

struct Harness {
    data: tempfile::TempDir,
    engine: Arc<Engine>,
    alice: User,
}

impl Harness {
    async fn start() -> Harness {
        let data = tempfile::tempdir().unwrap();
        let engine = Engine::start(Config::for_data_dir(data.path())).await.unwrap();
        let (alice, _) = engine.accounts.create_user("alice", Role::Member).await.unwrap();
        Harness { data, engine, alice }
    }

    async fn restart(self) -> Harness {
        self.engine.shutdown().await;
        let engine = Engine::start(Config::for_data_dir(self.data.path())).await.unwrap();
        Harness { engine, ..self }
    }

    async fn create(&self, repo: &str, branch: Option<&str>) -> Workspace {
        let request =
            NewWorkspace { repo: repo.into(), branch: branch.map(Into::into), ..NewWorkspace::default() };
        self.engine.workspaces.create(&self.alice, request).await.unwrap()
    }

    /// Waits (bounded) until the workspace has left `initialising`, woken by the engine's
    /// change notices rather than by polling.
    async fn settled(&self, workspace: &Workspace) -> Workspace {
        let mut changes = self.engine.workspaces.subscribe_changes();
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let current =
                    self.engine.workspaces.workspace(&self.alice, workspace.id.as_str()).await.unwrap();
                if current.state != WorkspaceState::Initialising {
                    return current;
                }
                let _ = changes.recv().await;
            }
        })
        .await
        .expect("initialisation settles within a minute")
    }

    async fn log(&self, workspace: &Workspace) -> String {
        self.engine.workspaces.init_log(&self.alice, workspace.id.as_str()).await.unwrap()
    }

    fn checkout(&self, workspace: &Workspace) -> std::path::PathBuf {
        self.engine.paths().workspace(&workspace.id)
    }
}

#[tokio::test]
async fn a_local_repository_clones_to_ready_with_its_log() {
    let source = SourceRepo::new();
    let harness = Harness::start().await;
    let created = harness.create(&source.url(), None).await;
    assert_eq!(created.state, WorkspaceState::Initialising);
    assert_eq!(created.name, "demo");

    let ready = harness.settled(&created).await;
    assert_eq!(ready.state, WorkspaceState::Ready);
    assert_eq!(ready.branch.as_deref(), Some("main"));
    assert!(harness.checkout(&ready).join("README.md").is_file());
    let log = harness.log(&ready).await;
    assert!(log.contains("Cloning into"), "{log}");
    assert!(log.contains("berth: ready on branch main"), "{log}");

    // berth's own folder inside the checkout never shows up as unsaved work.
    std::fs::create_dir(harness.checkout(&ready).join(".berth")).unwrap();
    std::fs::write(harness.checkout(&ready).join(".berth/history.json"), "[]").unwrap();
    let status = harness.engine.workspaces.git_status(&harness.alice, ready.id.as_str()).await.unwrap();
    assert!(status.clean, "{status:?}");
    assert_eq!(status.head, Some(source.head()));
}

#[tokio::test]
async fn a_chosen_branch_is_checked_out() {
    let source = SourceRepo::new();
    let harness = Harness::start().await;
    let ready = harness.settled(&harness.create(&source.url(), Some("feature")).await).await;
    assert_eq!((ready.state, ready.branch.as_deref()), (WorkspaceState::Ready, Some("feature")));
}

#[tokio::test]
async fn an_unreachable_url_ends_in_error_with_the_log() {
    // Port 9 on loopback (discard) has no listener here: the connection is refused at once.
    let harness = Harness::start().await;
    let failed = harness.settled(&harness.create("http://127.0.0.1:9/nope.git", None).await).await;
    assert_eq!(failed.state, WorkspaceState::Error);
    let error = failed.error.clone().expect("an error line");
    assert!(error.contains("127.0.0.1"), "{error}");
    let log = harness.log(&failed).await;
    assert!(log.contains("Cloning into"), "{log}");
    assert!(log.contains("berth: initialisation failed"), "{log}");
    assert!(!harness.checkout(&failed).exists());
}

#[tokio::test]
async fn a_missing_branch_ends_in_error_naming_it() {
    let source = SourceRepo::new();
    let harness = Harness::start().await;
    let failed = harness.settled(&harness.create(&source.url(), Some("no-such-branch")).await).await;
    assert_eq!(failed.state, WorkspaceState::Error);
    assert!(failed.error.as_deref().unwrap_or_default().contains("no-such-branch"), "{:?}", failed.error);
    assert!(harness.log(&failed).await.contains("no-such-branch"));
}

#[tokio::test]
async fn a_missing_path_is_refused_at_once() {
    let harness = Harness::start().await;
    let request = NewWorkspace { repo: "/nonexistent/berth/repo".into(), ..NewWorkspace::default() };
    let refused = harness.engine.workspaces.create(&harness.alice, request).await.unwrap_err();
    assert_eq!(refused.code(), "invalid_repo");
    assert!(refused.to_string().contains("does not exist"), "{refused}");
}

#[tokio::test]
async fn a_failed_workspace_can_be_retried() {
    let source = SourceRepo::new();
    let harness = Harness::start().await;
    let failed = harness.settled(&harness.create(&source.url(), Some("later")).await).await;
    assert_eq!(failed.state, WorkspaceState::Error);
    git(&source.path, &["branch", "later"]);
    let retried = harness.engine.workspaces.retry(&harness.alice, failed.id.as_str()).await.unwrap();
    assert_eq!(retried.state, WorkspaceState::Initialising);
    assert_eq!(harness.settled(&retried).await.state, WorkspaceState::Ready);
    assert!(!harness.log(&retried).await.contains("initialisation failed"));
}

#[tokio::test]
async fn git_status_reports_uncommitted_files_and_unpushed_commits() {
    let source = SourceRepo::new();
    let harness = Harness::start().await;
    let ready = harness.settled(&harness.create(&source.url(), None).await).await;
    let checkout = harness.checkout(&ready);

    std::fs::write(checkout.join("committed.txt"), "kept\n").unwrap();
    git(&checkout, &["add", "committed.txt"]);
    git(&checkout, &["commit", "--quiet", "-m", "local work"]);
    std::fs::write(checkout.join("notes with space.txt"), "draft\n").unwrap();

    let status = harness.engine.workspaces.git_status(&harness.alice, ready.id.as_str()).await.unwrap();
    assert_eq!(status.branch.as_deref(), Some("main"));
    assert!(!status.clean);
    assert_eq!(status.uncommitted, ["notes with space.txt"]);
    assert_eq!(status.unpushed_commits, 1);
}

#[tokio::test]
async fn delete_refuses_unsaved_work_unless_forced_and_never_touches_the_remote() {
    let source = SourceRepo::new();
    let source_head = source.head();
    let harness = Harness::start().await;
    let ready = harness.settled(&harness.create(&source.url(), None).await).await;
    let checkout = harness.checkout(&ready);
    std::fs::write(checkout.join("draft.txt"), "unsaved\n").unwrap();

    let refused = harness.engine.workspaces.delete(&harness.alice, ready.id.as_str(), false).await;
    match refused {
        Err(EngineError::UnsavedWork { status: Some(status), .. }) => {
            assert_eq!(status.uncommitted, ["draft.txt"])
        }
        other => panic!("expected unsaved work, got {other:?}"),
    }
    assert!(checkout.join("draft.txt").exists(), "a refused delete keeps the files");

    let deleted = harness.engine.workspaces.delete(&harness.alice, ready.id.as_str(), true).await.unwrap();
    assert_eq!(deleted, ready.id);
    assert!(!checkout.exists());
    assert!(matches!(
        harness.engine.workspaces.workspace(&harness.alice, ready.id.as_str()).await,
        Err(EngineError::NotFound { .. })
    ));
    assert_eq!(source.head(), source_head);
    assert!(source.path.join("README.md").exists());
}

#[tokio::test]
async fn a_clean_workspace_deletes_without_force() {
    let source = SourceRepo::new();
    let harness = Harness::start().await;
    let ready = harness.settled(&harness.create(&source.url(), None).await).await;
    harness.engine.workspaces.delete(&harness.alice, ready.id.as_str(), false).await.unwrap();
    assert!(!harness.checkout(&ready).exists());
}

#[tokio::test]
async fn another_users_workspace_is_not_found() {
    let source = SourceRepo::new();
    let harness = Harness::start().await;
    let ready = harness.settled(&harness.create(&source.url(), None).await).await;
    let (bob, _) = harness.engine.accounts.create_user("bob", Role::Member).await.unwrap();
    let id = ready.id.as_str();
    assert!(matches!(harness.engine.workspaces.workspace(&bob, id).await, Err(EngineError::NotFound { .. })));
    assert!(matches!(
        harness.engine.workspaces.git_status(&bob, id).await,
        Err(EngineError::NotFound { .. })
    ));
    assert!(matches!(
        harness.engine.workspaces.delete(&bob, id, true).await,
        Err(EngineError::NotFound { .. })
    ));
    assert!(harness.engine.workspaces.list(&bob).await.unwrap().is_empty());
    assert!(harness.checkout(&ready).exists());
}

#[tokio::test]
async fn a_repository_inside_the_data_directory_is_refused() {
    let source = SourceRepo::new();
    let harness = Harness::start().await;
    let ready = harness.settled(&harness.create(&source.url(), None).await).await;
    let inside = harness.checkout(&ready).to_string_lossy().into_owned();
    let attempt = NewWorkspace { repo: inside, ..NewWorkspace::default() };
    let refused = harness.engine.workspaces.create(&harness.alice, attempt).await;
    assert!(matches!(refused, Err(EngineError::Invalid(_))), "{refused:?}");
    assert_eq!(harness.engine.workspaces.list(&harness.alice).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_clone_interrupted_by_a_restart_is_cloned_again() {
    let source = SourceRepo::new();
    let harness = Harness::start().await;
    let demo = harness.settled(&harness.create(&source.url(), None).await).await;
    // What a server killed mid-clone leaves behind: the record still initialising and a
    // half-made checkout.
    let mut interrupted = demo.clone();
    interrupted.id = berth_core::WorkspaceId::generate();
    interrupted.name = "interrupted".into();
    interrupted.state = WorkspaceState::Initialising;
    harness.engine.store().insert_workspace(&interrupted).await.unwrap();
    std::fs::create_dir_all(harness.checkout(&interrupted).join(".git/objects")).unwrap();

    let harness = harness.restart().await;
    let recovered = harness.settled(&interrupted).await;
    assert_eq!(recovered.state, WorkspaceState::Ready);
    assert!(harness.checkout(&recovered).join("README.md").is_file());
    assert!(harness.log(&recovered).await.contains("cloning again"));
}

#[tokio::test]
async fn a_clone_stopped_by_shutdown_does_not_stay_initialising() {
    // A git server that accepts the connection and never answers keeps the clone waiting.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let harness = Harness::start().await;
    let hanging = harness.create(&format!("git://127.0.0.1:{port}/repo.git"), None).await;
    let (_connection, _) = tokio::task::spawn_blocking(move || listener.accept().unwrap()).await.unwrap();

    let harness = harness.restart().await;
    // The server went away with its listener closed: the clone runs again and fails
    // for real, with the story in the log.
    drop(_connection);
    let settled = harness.settled(&hanging).await;
    assert_eq!(settled.state, WorkspaceState::Error);
    assert!(harness.log(&settled).await.contains("cloning again"));
}

#[tokio::test]
async fn files_of_deleted_workspaces_are_removed_at_start() {
    let harness = Harness::start().await;
    let orphan = harness.engine.paths().workspace(&berth_core::WorkspaceId::generate());
    std::fs::create_dir_all(orphan.join("src")).unwrap();
    let unrelated = harness.engine.paths().workspaces().join("not-a-workspace-id");
    std::fs::create_dir_all(&unrelated).unwrap();
    let harness = harness.restart().await;
    assert!(!orphan.exists());
    assert!(unrelated.exists(), "only directories named like workspace ids are touched");
    drop(harness);
}
