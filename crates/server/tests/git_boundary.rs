//! The sandbox is the boundary for everything that touches a workspace's files: what an
//! attacker's agent can write in its own checkout (`.git` included) never makes berth's
//! git run a command on the host, write or list host files, or read another user's
//! repository; and no spelling of a local path clones another user's workspace. Each
//! attack runs against a server with bubblewrap sandboxes and, where git on a checkout is
//! involved, with the docker driver. The test writes into the checkout directly: that is
//! exactly what an agent with `$ cmd` approved can do.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_engine::config::SandboxDriverKind;
use berth_sandbox::{Isolation, Network};
use berth_testkit::{SourceRepo, git, have_docker, have_program};
use common::{Api, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const INSTALLER: &str = "scripts/test.sh";

#[derive(Clone, Copy, Debug)]
enum Sandbox {
    Bwrap,
    Docker,
}

/// A server whose sandboxes are of `kind`, or `None` (with the reason printed, or a
/// failure in CI) when this machine cannot run them.
async fn server(kind: Sandbox) -> Option<TestServer> {
    match kind {
        Sandbox::Bwrap if !have_program("bwrap", INSTALLER) => return None,
        Sandbox::Docker if !have_docker() => return None,
        _ => {}
    }
    let image = matches!(kind, Sandbox::Docker)
        .then(|| berth_testkit::docker_test_image(&std::env::current_exe().unwrap()));
    Some(
        TestServer::start_with(|config| {
            config.isolation = Isolation::Bwrap;
            config.network = Network::Isolated;
            if let Some(image) = image {
                config.sandbox_driver = SandboxDriverKind::Docker;
                config.image = image;
            }
        })
        .await,
    )
}

/// Runs git as the attacker inside their own checkout.
fn attacker_git(checkout: &Path, args: &[&str]) -> String {
    git(checkout, args)
}

async fn patch(api: &Api, id: &str, body: Value) -> (StatusCode, Value) {
    api.send(api.request(Method::PATCH, &format!("/api/workspaces/{id}")).json(&body)).await
}

/// Bob's workspace, holding a commit and a file nobody else has.
async fn bobs_workspace(server: &TestServer, source: &SourceRepo) -> (Api, String, PathBuf, String) {
    let bob = server.member("bob").await;
    let id = bob.ready_workspace(&source.url(), "bobs").await;
    let checkout = server.checkout(&id);
    std::fs::write(checkout.join("bob-secret.txt"), "bob's secret\n").unwrap();
    attacker_git(&checkout, &["add", "bob-secret.txt"]);
    attacker_git(&checkout, &["commit", "--quiet", "-m", "bob's own work"]);
    let head = attacker_git(&checkout, &["rev-parse", "HEAD"]);
    (bob, id, checkout, head)
}

async fn a_submodule_filter_never_runs_on_the_host(kind: Sandbox) {
    let Some(server) = server(kind).await else { return };
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let id = alice.ready_workspace(&source.url(), "demo").await;
    let checkout = server.checkout(&id);
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("pwned");

    // A repository whose every file goes through filter `x`, as a submodule on `withsub`.
    let sub_source = outside.path().join("s");
    std::fs::create_dir(&sub_source).unwrap();
    git(&sub_source, &["init", "--quiet"]);
    std::fs::write(sub_source.join(".gitattributes"), "* filter=x\n").unwrap();
    std::fs::write(sub_source.join("f.txt"), "data\n").unwrap();
    git(&sub_source, &["add", "."]);
    git(&sub_source, &["commit", "--quiet", "-m", "filtered"]);
    attacker_git(&checkout, &["checkout", "--quiet", "-b", "withsub"]);
    let sub_url = sub_source.to_string_lossy().into_owned();
    attacker_git(
        &checkout,
        &["-c", "protocol.file.allow=always", "submodule", "--quiet", "add", &sub_url, "sub"],
    );
    attacker_git(&checkout, &["commit", "--quiet", "-m", "submodule"]);
    let smudge = format!("touch '{}'; cat", marker.display());
    attacker_git(&checkout.join("sub"), &["config", "filter.x.smudge", &smudge]);
    attacker_git(&checkout, &["checkout", "--quiet", "main"]);
    std::fs::remove_dir_all(checkout.join("sub")).unwrap();
    attacker_git(&checkout, &["config", "submodule.recurse", "true"]);

    let (status, body) = patch(&alice, &id, json!({ "branch": "withsub" })).await;
    assert!(status == StatusCode::OK || status == StatusCode::CONFLICT, "{kind:?}: {status} {body}");
    assert!(!marker.exists(), "{kind:?}: the submodule's filter ran on the host");
    let (status, read) = alice.get(&format!("/api/workspaces/{id}/git")).await;
    assert!(!status.is_server_error(), "{kind:?}: {status} {read}");
    assert!(!marker.exists(), "{kind:?}: the submodule's filter ran on the host");
}

async fn core_worktree_neither_writes_nor_lists_host_files(kind: Sandbox) {
    let Some(server) = server(kind).await else { return };
    let source = SourceRepo::new();
    let (_bob, _, bobs_checkout, _) = bobs_workspace(&server, &source).await;
    let alice = server.member("alice").await;
    let id = alice.ready_workspace(&source.url(), "demo").await;
    let checkout = server.checkout(&id);

    // Write: a file on branch `evil`, and core.worktree pointing at bob's checkout.
    attacker_git(&checkout, &["checkout", "--quiet", "-b", "evil"]);
    std::fs::write(checkout.join("planted.txt"), "alice was here\n").unwrap();
    attacker_git(&checkout, &["add", "planted.txt"]);
    attacker_git(&checkout, &["commit", "--quiet", "-m", "plant"]);
    attacker_git(&checkout, &["checkout", "--quiet", "main"]);
    let bobs = bobs_checkout.to_string_lossy().into_owned();
    attacker_git(&checkout, &["config", "core.worktree", &bobs]);
    let (status, body) = patch(&alice, &id, json!({ "branch": "evil" })).await;
    assert_eq!(status, StatusCode::OK, "{kind:?}: {body}");
    assert!(!bobs_checkout.join("planted.txt").exists(), "{kind:?}: written into another user's checkout");
    assert!(checkout.join("planted.txt").is_file(), "{kind:?}: the switch happened in the checkout itself");

    // List: core.worktree at the data directory.
    let data_dir = server.checkout(&id).parent().unwrap().parent().unwrap().to_string_lossy().into_owned();
    attacker_git(&checkout, &["config", "core.worktree", &data_dir]);
    let (status, read) = alice.get(&format!("/api/workspaces/{id}/git")).await;
    assert_eq!(status, StatusCode::OK, "{kind:?}: {read}");
    let listed = read.to_string();
    assert!(!listed.contains("berth.db") && !listed.contains("workspaces/"), "{kind:?}: {listed}");
    let (status, refused) = alice.delete(&format!("/api/workspaces/{id}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{kind:?}: {refused}");
    assert!(!refused.to_string().contains("berth.db"), "{kind:?}: {refused}");
}

async fn a_gitfile_or_alternates_never_reach_another_users_repository(kind: Sandbox) {
    let Some(server) = server(kind).await else { return };
    let source = SourceRepo::new();
    let (_bob, _, bobs_checkout, bobs_head) = bobs_workspace(&server, &source).await;
    let alice = server.member("alice").await;

    // Alternates: borrow bob's objects and point a branch at his commit.
    let id = alice.ready_workspace(&source.url(), "borrowing").await;
    let checkout = server.checkout(&id);
    let objects = bobs_checkout.join(".git/objects");
    std::fs::write(checkout.join(".git/objects/info/alternates"), format!("{}\n", objects.display()))
        .unwrap();
    std::fs::write(checkout.join(".git/refs/heads/stolen"), format!("{bobs_head}\n")).unwrap();
    let (status, body) = patch(&alice, &id, json!({ "branch": "stolen" })).await;
    assert!(!checkout.join("bob-secret.txt").exists(), "{kind:?}: bob's files checked out: {status} {body}");
    assert_eq!(status, StatusCode::CONFLICT, "{kind:?}: {body}");

    // A gitfile: the checkout's .git names bob's.
    let id = alice.ready_workspace(&source.url(), "gitfile").await;
    let checkout = server.checkout(&id);
    std::fs::remove_dir_all(checkout.join(".git")).unwrap();
    std::fs::write(checkout.join(".git"), format!("gitdir: {}/.git\n", bobs_checkout.display())).unwrap();
    let (status, read) = alice.get(&format!("/api/workspaces/{id}/git")).await;
    assert!(!read.to_string().contains(&bobs_head), "{kind:?}: bob's head shown: {read}");
    assert_eq!(status, StatusCode::CONFLICT, "{kind:?}: {read}");
    assert_eq!(read["error"]["code"], "git_failed");
}

#[tokio::test]
async fn a_submodule_filter_never_runs_on_the_host_bwrap() {
    a_submodule_filter_never_runs_on_the_host(Sandbox::Bwrap).await;
}

#[tokio::test]
async fn a_submodule_filter_never_runs_on_the_host_docker() {
    a_submodule_filter_never_runs_on_the_host(Sandbox::Docker).await;
}

#[tokio::test]
async fn core_worktree_neither_writes_nor_lists_host_files_bwrap() {
    core_worktree_neither_writes_nor_lists_host_files(Sandbox::Bwrap).await;
}

#[tokio::test]
async fn core_worktree_neither_writes_nor_lists_host_files_docker() {
    core_worktree_neither_writes_nor_lists_host_files(Sandbox::Docker).await;
}

#[tokio::test]
async fn a_gitfile_or_alternates_never_reach_another_users_repository_bwrap() {
    a_gitfile_or_alternates_never_reach_another_users_repository(Sandbox::Bwrap).await;
}

#[tokio::test]
async fn a_gitfile_or_alternates_never_reach_another_users_repository_docker() {
    a_gitfile_or_alternates_never_reach_another_users_repository(Sandbox::Docker).await;
}

/// `git.local_roots` holds the temporary directory, which holds the data directory: every
/// spelling of bob's workspace that reaches it is refused, and nothing is created.
#[tokio::test]
async fn no_spelling_of_a_local_path_clones_another_users_workspace() {
    let Some(server) = server(Sandbox::Bwrap).await else { return };
    let source = SourceRepo::new();
    let (_bob, _, bobs_checkout, _) = bobs_workspace(&server, &source).await;
    let alice = server.member("alice").await;
    let bobs = bobs_checkout.to_string_lossy().into_owned();
    assert!(bobs.starts_with(&*std::env::temp_dir().to_string_lossy()), "the data directory is under a root");

    let outside = tempfile::tempdir().unwrap();
    let link = outside.path().join("link");
    std::os::unix::fs::symlink(&bobs_checkout, &link).unwrap();
    let holder = outside.path().join("holder");
    std::fs::create_dir(&holder).unwrap();
    std::fs::write(holder.join(".git"), format!("gitdir: {bobs}/.git\n")).unwrap();
    let borrower = outside.path().join("borrower");
    std::fs::create_dir(&borrower).unwrap();
    git(&borrower, &["init", "--quiet"]);
    std::fs::write(borrower.join(".git/objects/info/alternates"), format!("{bobs}/.git/objects\n")).unwrap();
    let escaped_letters: String = bobs
        .chars()
        .map(|c| if c.is_ascii_alphabetic() { format!("%{:02x}", c as u32) } else { c.to_string() })
        .collect();
    let escaped_slashes = format!("/{}", bobs.trim_start_matches('/').replace('/', "%2f"));

    for spelling in [
        bobs.clone(),
        format!("file://{escaped_letters}"),
        format!("file://{escaped_slashes}"),
        format!("/proc/self/root{bobs}"),
        format!("/proc/self/cwd/../../../../../../../..{bobs}"),
        link.to_string_lossy().into_owned(),
        holder.to_string_lossy().into_owned(),
        borrower.to_string_lossy().into_owned(),
    ] {
        let (status, body) = alice.post("/api/workspaces", json!({ "repo": spelling })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{spelling}: {body}");
        assert_eq!(body["error"]["code"], "invalid_repo", "{spelling}: {body}");
    }
    let (_, listed) = alice.get("/api/workspaces").await;
    assert_eq!(listed["workspaces"], json!([]), "nothing was created");
}

#[tokio::test]
async fn members_clone_local_paths_only_under_local_roots() {
    let Some(server) = server(Sandbox::Bwrap).await else { return };
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    // The test server's roots are the temporary directory: a clone from there works, in
    // the sandbox, and the checkout is alice's.
    let id = alice.ready_workspace(&source.url(), "demo").await;
    assert!(server.checkout(&id).join("README.md").is_file());
    let admin = server.admin();
    for repo in ["/usr/share", "/etc"] {
        let (status, body) = alice.post("/api/workspaces", json!({ "repo": repo })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("git.local_roots"), "{body}");
    }
    // An administrator may clone any path outside the data directory; `/etc` is no
    // repository, so that clone ends in error with git's reason in the log.
    let refused = admin.create_settled(json!({ "repo": "/etc" })).await;
    assert_eq!(refused["state"], "error", "{refused}");
}

#[tokio::test]
async fn a_password_in_a_repository_url_is_refused_and_not_repeated() {
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    for repo in [
        "https://alice:hunter2@example.com/o/r.git",
        "https://alice%3Ahunter2@example.com/o/r.git",
        "https://alice%3ahunter2@example.com/o/r.git",
    ] {
        let (status, body) = alice.post("/api/workspaces", json!({ "repo": repo })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{repo}: {body}");
        assert_eq!(body["error"]["code"], "credentials_in_url", "{repo}");
        assert!(!body.to_string().contains("hunter2"), "{body}");
    }
    let (_, listed) = alice.get("/api/workspaces").await;
    assert!(!listed.to_string().contains("hunter2"), "nothing was stored: {listed}");
}

/// Deleting removes the checkout's own entries: a symlink the agent left there is
/// unlinked, never followed into what it points to.
#[tokio::test]
async fn deleting_a_workspace_never_follows_its_symlinks() {
    let server = TestServer::start().await;
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let id = alice.ready_workspace(&source.url(), "demo").await;
    let checkout = server.checkout(&id);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("keep.txt"), "not alice's\n").unwrap();
    std::os::unix::fs::symlink(outside.path(), checkout.join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.path(), checkout.join(".berth")).unwrap();
    let (status, body) = alice.delete(&format!("/api/workspaces/{id}?force=true")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!checkout.exists());
    assert_eq!(std::fs::read_to_string(outside.path().join("keep.txt")).unwrap(), "not alice's\n");
}

#[tokio::test]
async fn git_status_of_a_docker_workspace_runs_in_bubblewrap_not_a_container_each() {
    let Some(server) = server(Sandbox::Docker).await else { return };
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let id = &alice.ready_workspace(&source.url(), "quick").await;
    let unix_now = || {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
    };
    let since = unix_now();
    for _ in 0..3 {
        let (status, git) = alice.get(&format!("/api/workspaces/{id}/git")).await;
        assert_eq!(status, StatusCode::OK, "{git}");
        assert!(git["branch"].is_string(), "{git}");
    }
    let until = unix_now();
    let created = std::process::Command::new("docker")
        .args(["events", "--since", &since, "--until", &until, "--format", "{{.Actor.ID}}"])
        .args(["--filter", "type=container", "--filter", "event=create"])
        .args(["--filter", &format!("label=berth.workspace={id}")])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let created = String::from_utf8_lossy(&created.stdout);
    assert!(created.trim().is_empty(), "git status started containers: {created}");
}
