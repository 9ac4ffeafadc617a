//! The workbench's git: each uncommitted file's diff (untracked and binary files included)
//! and a commit of everything, both in a bubblewrap sandbox of the workspace — the
//! checkout's own index untouched by reading, its hooks never run by committing.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_sandbox::{Isolation, Network};
use berth_testkit::{SourceRepo, git, have_program};
use common::TestServer;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn the_diff_shows_every_change_and_a_commit_takes_them_all_without_hooks() {
    if !have_program("bwrap", "scripts/test.sh") {
        return;
    }
    let server = TestServer::start_with(|config| {
        config.isolation = Isolation::Bwrap;
        config.network = Network::Isolated;
    })
    .await;
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let id = alice.ready_workspace(&source.url(), "work").await;
    let checkout = server.checkout(&id);
    std::fs::write(checkout.join("README.md"), "# demo\nadded line\n").unwrap();
    std::fs::write(checkout.join("notes.txt"), "new notes\n").unwrap();
    std::fs::write(checkout.join("image.bin"), [0u8, 159, 146, 150, 0, 1]).unwrap();
    // A hook the agent planted: committing must not run it.
    std::fs::write(checkout.join(".git/hooks/pre-commit"), "#!/bin/sh\ntouch \"$GIT_WORK_TREE/hook-ran\"\n")
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(checkout.join(".git/hooks/pre-commit"), std::fs::Permissions::from_mode(0o755))
        .unwrap();

    let (status, changes) = alice.get(&format!("/api/workspaces/{id}/diff")).await;
    assert_eq!(status, StatusCode::OK, "{changes}");
    let file = |path: &str| {
        changes["files"].as_array().unwrap().iter().find(|file| file["path"] == path).cloned().unwrap()
    };
    let readme = file("README.md");
    assert_eq!((readme["status"].as_str(), readme["additions"].as_u64()), (Some("modified"), Some(1)));
    assert!(readme["diff"].as_str().unwrap().contains("\n+added line\n"), "{readme}");
    let notes = file("notes.txt");
    assert_eq!(notes["status"], "added", "{notes}");
    assert!(notes["diff"].as_str().unwrap().contains("+new notes"), "{notes}");
    let image = file("image.bin");
    assert_eq!((image["binary"].as_bool(), image["diff"].is_null()), (Some(true), true), "{image}");
    assert_eq!(changes["unpushed"], json!([]));
    // Reading changed nothing: the untracked files are still untracked.
    let porcelain = git(&checkout, &["status", "--porcelain"]);
    assert!(porcelain.contains("?? notes.txt"), "{porcelain}");

    for (message, code) in [("", "invalid_message"), ("   \n", "invalid_message")] {
        let (status, body) =
            alice.post(&format!("/api/workspaces/{id}/commit"), json!({ "message": message })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)));
    }
    let (status, committed) = alice
        .post(&format!("/api/workspaces/{id}/commit"), json!({ "message": "Notes and a picture" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{committed}");
    assert_eq!(committed["head"], git(&checkout, &["rev-parse", "HEAD"]).as_str());
    assert_eq!(committed["branch"], "main");
    assert_eq!(git(&checkout, &["log", "-1", "--format=%an|%s"]), "alice|Notes and a picture");
    assert_eq!(git(&checkout, &["status", "--porcelain"]), "", "everything is committed");
    assert!(!checkout.join("hook-ran").exists(), "the checkout's hook ran");

    let (_, changes) = alice.get(&format!("/api/workspaces/{id}/diff")).await;
    assert_eq!(changes["files"], json!([]));
    assert_eq!(changes["unpushed"][0]["subject"], "Notes and a picture", "{changes}");
    let (status, body) =
        alice.post(&format!("/api/workspaces/{id}/commit"), json!({ "message": "again" })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("nothing_to_commit")));
    // Another user's workspace is nobody's business.
    let bob = server.member("bob").await;
    assert_eq!(bob.get(&format!("/api/workspaces/{id}/diff")).await.0, StatusCode::NOT_FOUND);
    server.stop().await;
}
