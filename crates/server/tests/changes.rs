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

/// A server whose sandboxes are bubblewrap without a network, and alice's ready
/// workspace on it (`None`, said why, where bubblewrap is missing outside CI).
async fn a_sandboxed_workspace() -> Option<(TestServer, SourceRepo, common::Api, String)> {
    if !have_program("bwrap", "scripts/test.sh") {
        return None;
    }
    let server = TestServer::start_with(|config| {
        config.isolation = Isolation::Bwrap;
        config.network = Network::Isolated;
    })
    .await;
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let id = alice.ready_workspace(&source.url(), "work").await;
    Some((server, source, alice, id))
}

#[tokio::test]
async fn the_diff_shows_every_change_and_a_commit_takes_them_all_without_hooks() {
    let Some((server, _source, alice, id)) = a_sandboxed_workspace().await else { return };
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

#[tokio::test]
async fn the_file_browser_lists_and_shows_text_and_follows_no_link() {
    let Some((server, _source, alice, id)) = a_sandboxed_workspace().await else { return };
    let checkout = server.checkout(&id);
    std::fs::create_dir_all(checkout.join("src/deep")).unwrap();
    std::fs::create_dir_all(checkout.join(".berth/home")).unwrap();
    std::fs::create_dir_all(checkout.join("src/.berth")).unwrap();
    std::fs::write(checkout.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(checkout.join("tab\tname.txt"), "odd name\n").unwrap();
    std::fs::write(checkout.join("image.bin"), [0x89, b'P', b'N', b'G', 0, 0, 1]).unwrap();
    std::fs::write(checkout.join("big.txt"), "x".repeat(berth_git::MAX_FILE_BYTES + 10)).unwrap();
    // Links the agent planted to what berth's host holds: a file of the data directory,
    // the data directory, the host's own files.
    let data = server.data_dir();
    const CANARY: &str = "host-only-canary";
    std::fs::write(data.join("canary.txt"), CANARY).unwrap();
    std::os::unix::fs::symlink(data.join("canary.txt"), checkout.join("key")).unwrap();
    std::os::unix::fs::symlink(data, checkout.join("data")).unwrap();
    std::os::unix::fs::symlink("/etc", checkout.join("etc")).unwrap();

    let files = |path: &str| {
        let path = path.to_owned();
        let alice = &alice;
        let id = id.clone();
        async move {
            let query: String = url_encode(&path);
            alice.get(&format!("/api/workspaces/{id}/files?path={query}")).await
        }
    };
    let (status, root) = files("").await;
    assert_eq!(status, StatusCode::OK, "{root}");
    assert_eq!(root["kind"], "dir");
    let names: Vec<(&str, &str)> = root["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["name"].as_str().unwrap(), entry["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(names[0], ("src", "dir"), "directories first: {names:?}");
    for expected in
        [("README.md", "file"), ("tab\tname.txt", "file"), ("key", "symlink"), ("data", "symlink")]
    {
        assert!(names.contains(&expected), "{expected:?} in {names:?}");
    }
    assert!(!names.iter().any(|(name, _)| *name == ".git"), ".git is left out: {names:?}");
    // The agent's own folder is not the person's work; a folder of that name deeper is.
    assert!(!names.iter().any(|(name, _)| *name == ".berth"), ".berth is left out: {names:?}");
    let (_, src) = files("src").await;
    assert!(src["entries"].as_array().unwrap().iter().any(|entry| entry["name"] == ".berth"), "{src}");

    let (status, main) = files("src/main.rs").await;
    assert_eq!(status, StatusCode::OK, "{main}");
    assert_eq!(
        (main["kind"].as_str(), main["content"].as_str(), main["size"].as_u64()),
        (Some("file"), Some("fn main() {}\n"), Some(13))
    );
    let (_, odd) = files("tab\tname.txt").await;
    assert_eq!(odd["content"], "odd name\n", "{odd}");
    let (_, big) = files("big.txt").await;
    assert_eq!(
        (big["truncated"].as_bool(), big["content"].as_str().map(str::len)),
        (Some(true), Some(berth_git::MAX_FILE_BYTES))
    );
    let (status, image) = files("image.bin").await;
    assert_eq!(
        (status, image["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("binary_file"))
    );

    // A link is shown as one, never followed: not to a file, not through a directory.
    let (status, key) = files("key").await;
    assert_eq!(status, StatusCode::OK, "{key}");
    assert_eq!((key["kind"].as_str(), key["content"].as_str()), (Some("symlink"), None), "{key}");
    for path in ["data/canary.txt", "data", "etc/passwd"] {
        let (status, body) = files(path).await;
        assert!(!body.to_string().contains(CANARY), "{path}: {body}");
        if path == "data" {
            assert_eq!(body["kind"], "symlink", "{body}");
        } else {
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (StatusCode::NOT_FOUND, Some("not_found")),
                "{path}: {body}"
            );
        }
    }
    for path in ["..", "../../etc/passwd", ".git/config", "src/../..", "a\0b"] {
        let (status, body) = files(path).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_path")),
            "{path:?}"
        );
    }
    let (status, _) = files("nothing/here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let bob = server.member("bob").await;
    assert_eq!(bob.get(&format!("/api/workspaces/{id}/files")).await.0, StatusCode::NOT_FOUND);
    server.stop().await;
}

/// `value` percent-encoded for a query string.
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn files_are_written_over_the_version_read_and_no_link_is_followed() {
    let Some((server, _source, alice, id)) = a_sandboxed_workspace().await else { return };
    let checkout = server.checkout(&id);
    let data = server.data_dir();
    const CANARY: &str = "host-only-canary";
    std::fs::write(data.join("canary.txt"), CANARY).unwrap();
    // What the agent planted: a link to a host file, a link to the data directory.
    std::os::unix::fs::symlink(data.join("canary.txt"), checkout.join("key")).unwrap();
    std::os::unix::fs::symlink(data, checkout.join("data")).unwrap();
    let put = |path: &str, body: serde_json::Value| {
        let request = alice
            .request(reqwest::Method::PUT, &format!("/api/workspaces/{id}/files?path={}", url_encode(path)));
        alice.send(request.json(&body))
    };
    let code = |answer: &(StatusCode, serde_json::Value)| {
        (answer.0, answer.1["error"]["code"].as_str().map(str::to_owned))
    };

    // A new file, its directories made; only once as a new file.
    let (status, written) =
        put("src/new/lib.rs", json!({"content": "pub fn a() {}\n", "expected_sha": null})).await;
    assert_eq!(status, StatusCode::OK, "{written}");
    assert_eq!(std::fs::read_to_string(checkout.join("src/new/lib.rs")).unwrap(), "pub fn a() {}\n");
    let first = written["sha"].as_str().unwrap().to_owned();
    let again = put("src/new/lib.rs", json!({"content": "x", "expected_sha": null})).await;
    assert_eq!(code(&again), (StatusCode::CONFLICT, Some("file_changed".into())), "{}", again.1);
    assert_eq!(again.1["error"]["sha"], json!(first));

    // The version read is what a save replaces; the agent's change in between is a
    // conflict that names the version there now, and nothing is overwritten.
    let (_, read) = alice.get(&format!("/api/workspaces/{id}/files?path=src/new/lib.rs")).await;
    assert_eq!(read["sha"], json!(first), "{read}");
    std::fs::write(checkout.join("src/new/lib.rs"), "pub fn agent() {}\n").unwrap();
    let conflict =
        put("src/new/lib.rs", json!({"content": "pub fn mine() {}\n", "expected_sha": first})).await;
    assert_eq!(code(&conflict), (StatusCode::CONFLICT, Some("file_changed".into())));
    assert_eq!(std::fs::read_to_string(checkout.join("src/new/lib.rs")).unwrap(), "pub fn agent() {}\n");
    let theirs = conflict.1["error"]["sha"].as_str().unwrap().to_owned();
    let (status, saved) =
        put("src/new/lib.rs", json!({"content": "pub fn mine() {}\n", "expected_sha": theirs})).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(std::fs::read_to_string(checkout.join("src/new/lib.rs")).unwrap(), "pub fn mine() {}\n");

    // A link is replaced, never written through: not at the end, not on the way.
    let (status, body) = put("key", json!({"content": "overwritten"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_path")),
        "{body}"
    );
    let (status, body) = put("data/planted.txt", json!({"content": "planted"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_path")),
        "{body}"
    );
    assert_eq!(std::fs::read_to_string(data.join("canary.txt")).unwrap(), CANARY);
    assert!(!data.join("planted.txt").exists());
    for path in
        ["../escape.txt", "a/../../escape.txt", ".git/config", "src/.git/hooks/x", ".berth/home/.bashrc", ""]
    {
        let answer = put(path, json!({"content": "x"})).await;
        assert_eq!(
            code(&answer),
            (StatusCode::BAD_REQUEST, Some("invalid_path".into())),
            "{path}: {}",
            answer.1
        );
    }
    assert!(!checkout.parent().unwrap().join("escape.txt").exists());
    let big = put("big.txt", json!({"content": "x".repeat(berth_git::MAX_FILE_BYTES + 1)})).await;
    assert_eq!(code(&big), (StatusCode::PAYLOAD_TOO_LARGE, Some("file_too_large".into())));
    let unknown = put("a.txt", json!({"content": "x", "mode": "0777"})).await;
    assert_eq!(code(&unknown), (StatusCode::BAD_REQUEST, Some("invalid_request".into())));

    // Rename and delete, under the same rules.
    let rename_path = format!("/api/workspaces/{id}/files/rename");
    let rename = |from: &str, to: &str| alice.post(&rename_path, json!({"from": from, "to": to}));
    let (status, renamed) = rename("src/new/lib.rs", "src/lib.rs").await;
    assert_eq!((status, renamed["path"].as_str()), (StatusCode::OK, Some("src/lib.rs")), "{renamed}");
    assert!(checkout.join("src/lib.rs").is_file() && !checkout.join("src/new/lib.rs").exists());
    std::fs::write(checkout.join("taken.txt"), "taken").unwrap();
    assert_eq!(
        code(&rename("src/lib.rs", "taken.txt").await),
        (StatusCode::CONFLICT, Some("file_exists".into()))
    );
    assert_eq!(
        code(&rename("src/lib.rs", "data/lib.rs").await),
        (StatusCode::BAD_REQUEST, Some("invalid_path".into()))
    );
    assert_eq!(
        code(&rename("src/lib.rs", ".git/lib.rs").await),
        (StatusCode::BAD_REQUEST, Some("invalid_path".into()))
    );
    assert_eq!(code(&rename("nothing.txt", "b.txt").await).0, StatusCode::NOT_FOUND);
    let delete = |path: &str| {
        alice.send(alice.request(
            reqwest::Method::DELETE,
            &format!("/api/workspaces/{id}/files?path={}", url_encode(path)),
        ))
    };
    assert_eq!(delete("src/lib.rs").await.0, StatusCode::NO_CONTENT);
    assert!(!checkout.join("src/lib.rs").exists());
    assert_eq!(delete("src/lib.rs").await.0, StatusCode::NOT_FOUND);
    // Deleting a link removes the link, not what it points at.
    assert_eq!(delete("key").await.0, StatusCode::NO_CONTENT);
    assert_eq!(std::fs::read_to_string(data.join("canary.txt")).unwrap(), CANARY);
    assert_eq!(
        code(&delete("data/canary.txt").await),
        (StatusCode::BAD_REQUEST, Some("invalid_path".into()))
    );
    assert_eq!(code(&delete("src").await), (StatusCode::BAD_REQUEST, Some("invalid_path".into())));

    // Another user's workspace does not exist for them.
    let bob = server.member("bob").await;
    let request = bob.request(reqwest::Method::PUT, &format!("/api/workspaces/{id}/files?path=taken.txt"));
    let (status, _) = bob.send(request.json(&json!({"content": "bob was here"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = bob
        .post(&format!("/api/workspaces/{id}/files/rename"), json!({"from": "taken.txt", "to": "b"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = bob
        .send(bob.request(reqwest::Method::DELETE, &format!("/api/workspaces/{id}/files?path=taken.txt")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(std::fs::read_to_string(checkout.join("taken.txt")).unwrap(), "taken");
    server.stop().await;
}
