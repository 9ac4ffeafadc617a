//! git through a real sandbox driver (the local one, without isolation, so the test needs
//! nothing installed; the bubblewrap and docker drivers are tested through the server):
//! status, unpushed commits, a filter the checkout names never run, a branch switch.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use berth_core::WorkspaceId;
use berth_git::{Checkout, status, switch_branch};
use berth_sandbox::{DEFAULT_STOP_TIMEOUT, LocalDriver};
use berth_testkit::{SourceRepo, git};

fn cloned() -> (tempfile::TempDir, std::path::PathBuf, SourceRepo) {
    let source = SourceRepo::new();
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("checkout");
    git(dir.path(), &["clone", "--quiet", &source.url(), "checkout"]);
    (dir, checkout, source)
}

#[tokio::test]
async fn status_counts_changes_and_commits_no_remote_has() {
    let (dir, checkout, _source) = cloned();
    let driver = LocalDriver::new(&dir.path().join("sandboxes"), DEFAULT_STOP_TIMEOUT).unwrap();
    let id = WorkspaceId::generate();
    let read = status(&driver, Checkout { workspace_id: &id, dir: &checkout, format: Default::default() })
        .await
        .unwrap();
    assert!(read.clean && read.unpushed_commits == 0, "{read:?}");
    assert_eq!(read.branch.as_deref(), Some("main"));

    std::fs::write(checkout.join("new.txt"), "x").unwrap();
    git(&checkout, &["add", "new.txt"]);
    git(&checkout, &["commit", "--quiet", "-m", "local"]);
    std::fs::write(checkout.join("untracked.txt"), "y").unwrap();
    let read = status(&driver, Checkout { workspace_id: &id, dir: &checkout, format: Default::default() })
        .await
        .unwrap();
    assert_eq!((read.uncommitted.as_slice(), read.unpushed_commits), (&["untracked.txt".to_owned()][..], 1));
}

#[tokio::test]
async fn a_filter_driver_the_checkout_names_never_runs() {
    let (dir, checkout, _source) = cloned();
    let driver = LocalDriver::new(&dir.path().join("sandboxes"), DEFAULT_STOP_TIMEOUT).unwrap();
    let id = WorkspaceId::generate();
    // What an agent could write: a filter that runs a command, on every file.
    let marker = dir.path().join("filter-ran");
    let command = format!("touch '{}'; cat", marker.display());
    git(&checkout, &["config", "filter.evil.clean", &command]);
    git(&checkout, &["config", "filter.evil.smudge", &command]);
    git(&checkout, &["config", "filter.evil.process", &command]);
    std::fs::write(checkout.join(".git/info/attributes"), "* filter=evil\n").unwrap();
    // A new modification time makes git compare the content, through the filter.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(checkout.join("README.md"))
        .unwrap()
        .set_modified(later)
        .unwrap();

    let read = status(&driver, Checkout { workspace_id: &id, dir: &checkout, format: Default::default() })
        .await
        .unwrap();
    assert!(read.clean, "{read:?}");
    switch_branch(
        &driver,
        Checkout { workspace_id: &id, dir: &checkout, format: Default::default() },
        "feature",
    )
    .await
    .unwrap();
    assert!(!marker.exists(), "git ran the checkout's filter command");
    assert_eq!(git(&checkout, &["branch", "--show-current"]), "feature");
}
