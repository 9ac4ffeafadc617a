//! berth's own git reads nothing the agent wrote in its checkout's configuration. The
//! agent (here: the test, writing into the checkout as an agent with `$ cmd` approved
//! can) plants programs (`core.askPass`, `core.gitProxy`, `core.sshCommand`,
//! `credential.helper`, `gpg.program`), places (`url.*.insteadOf`, `pushInsteadOf` to a
//! listener on a loopback port), a header (`http.extraHeader`) and an `include.path`
//! that names more. Then the owner pushes, commits and reads the diff: nothing planted
//! runs (each program would leave a file in the checkout), the listener sees no
//! connection, and the push lands in the repository berth recorded — over HTTP with a
//! credential and over SSH (Debian's sshd), with bubblewrap and with the docker driver.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_engine::config::SandboxDriverKind;
use berth_sandbox::{Isolation, Network};
use berth_testkit::{GitHttpServer, SourceRepo, SshGitServer, git, have_docker, have_program};
use common::TestServer;
use reqwest::StatusCode;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const INSTALLER: &str = "scripts/test.sh";
const GIT_SECRET: &str = "ghp_planted-config-test-secret";

#[derive(Clone, Copy, Debug)]
enum Sandbox {
    Bwrap,
    Docker,
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    HttpWithCredential,
    Ssh,
}

/// What every planted program does: leave a file in the checkout (where it runs, the
/// job's `/workspace`), then print something a caller might take as an answer.
const PLANTED_PROGRAM: &str = "#!/bin/sh\ntouch /workspace/planted-program-ran\necho planted\n";

/// A loopback listener that counts the connections it gets.
fn listener() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, connections)
}

/// Writes the agent's configuration into `checkout`: every key that names a program
/// points at the planted one, and the recorded repository is redirected to `port`.
fn plant(checkout: &Path, repository: &str, port: u16) {
    let program = checkout.join("a.sh");
    std::fs::write(&program, PLANTED_PROGRAM).unwrap();
    std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        checkout.join("more.config"),
        "[core]\n\taskPass = /workspace/a.sh\n[gpg]\n\tprogram = /workspace/a.sh\n\
         [commit]\n\tgpgSign = true\n[log]\n\tshowSignature = true\n",
    )
    .unwrap();
    for (key, value) in [
        ("core.askPass", "/workspace/a.sh".to_owned()),
        ("core.gitProxy", "/workspace/a.sh".to_owned()),
        ("core.sshCommand", "/workspace/a.sh".to_owned()),
        ("credential.helper", "!/workspace/a.sh".to_owned()),
        ("http.extraHeader", "X-Planted: yes".to_owned()),
        ("include.path", "/workspace/more.config".to_owned()),
        (&format!("url.http://127.0.0.1:{port}/.pushInsteadOf"), repository.to_owned()),
        (&format!("url.git://127.0.0.1:{port}/.insteadOf"), repository.to_owned()),
    ] {
        // `--file`: writing configuration runs nothing, whatever it already holds.
        git(checkout, &["config", "--file", ".git/config", "--add", key, &value]);
    }
}

/// A commit object carrying a (fake) signature, made the current branch's head, so that
/// `log.showSignature` would hand it to `gpg.program`.
fn signed_commit(checkout: &Path) {
    let tree = git(checkout, &["rev-parse", "HEAD^{tree}"]);
    let parent = git(checkout, &["rev-parse", "HEAD"]);
    let object = format!(
        "tree {tree}\nparent {parent}\nauthor a <a@example.invalid> 1700000000 +0000\n\
         committer a <a@example.invalid> 1700000000 +0000\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n \
         iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\nsigned\n"
    );
    let file = checkout.join(".git/signed-commit");
    std::fs::write(&file, object).unwrap();
    let sha = git(checkout, &["hash-object", "-t", "commit", "-w", ".git/signed-commit"]);
    git(checkout, &["update-ref", "refs/heads/main", &sha]);
}

async fn planted_configuration_steers_nothing(kind: Sandbox, transport: Transport) {
    match kind {
        Sandbox::Bwrap if !have_program("bwrap", INSTALLER) => return,
        Sandbox::Docker if !have_docker() => return,
        _ => {}
    }
    if matches!(transport, Transport::Ssh) && !have_program("ssh", INSTALLER) {
        return;
    }
    let image = matches!(kind, Sandbox::Docker)
        .then(|| berth_testkit::docker_test_image(&std::env::current_exe().unwrap()));
    let server = TestServer::start_with(|config| {
        config.isolation = Isolation::Bwrap;
        config.network = Network::Isolated;
        if let Some(image) = image {
            config.sandbox_driver = SandboxDriverKind::Docker;
            config.image = image;
        }
    })
    .await;
    let alice = server.member("alice").await;
    let source = SourceRepo::new();
    let (http_remote, ssh_remote);
    let (repository, head_of): (String, Box<dyn Fn() -> String>) = match transport {
        Transport::HttpWithCredential => {
            http_remote = GitHttpServer::start(&source, "alice-git", GIT_SECRET);
            let host = format!("127.0.0.1:{}", http_remote.port);
            let (status, _) = alice
                .post(
                    "/api/credentials",
                    json!({ "host": host, "username": "alice-git", "secret": GIT_SECRET }),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED);
            (http_remote.url(), Box::new(|| http_remote.head_of("main")))
        }
        Transport::Ssh => {
            ssh_remote = SshGitServer::start(&source);
            let (_, key) = alice.get("/api/me/ssh-key").await;
            ssh_remote.authorize(key["public_key"].as_str().unwrap());
            (ssh_remote.url(), Box::new(|| ssh_remote.head_of("main")))
        }
    };
    let created = alice.create_settled(json!({ "repo": &repository, "name": "planted" })).await;
    assert_eq!(created["state"], "ready", "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let checkout = server.checkout(&id);
    git(&checkout, &["commit", "-q", "--allow-empty", "-m", "to push"]);
    let (port, connections) = listener();
    plant(&checkout, &repository, port);
    let marker = checkout.join("planted-program-ran");

    // Push: to the recorded repository, with nothing planted used on the way.
    let (status, pushed) = alice.post(&format!("/api/workspaces/{id}/push"), json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{pushed}");
    assert_eq!(
        head_of(),
        git(&checkout, &["rev-parse", "HEAD"]),
        "the push landed in the recorded repository"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the push went where the checkout said");
    assert!(!marker.exists(), "a planted program ran in berth's push");

    // Commit with `commit.gpgSign` (through the include): no signing program runs.
    std::fs::write(checkout.join("change.txt"), "changed\n").unwrap();
    let (status, committed) =
        alice.post(&format!("/api/workspaces/{id}/commit"), json!({ "message": "unsigned" })).await;
    assert_eq!(status, StatusCode::OK, "{committed}");
    assert!(!marker.exists(), "gpg.program ran in berth's commit");
    let object = git(&checkout, &["cat-file", "commit", "HEAD"]);
    assert!(!object.contains("gpgsig"), "{object}");

    // The diff lists unpushed commits with `log.showSignature`: nothing verifies them.
    signed_commit(&checkout);
    let (status, diff) = alice.get(&format!("/api/workspaces/{id}/diff")).await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    assert!(diff.to_string().contains(r#""signed""#), "the signed commit is listed: {diff}");
    let (status, _) = alice.get(&format!("/api/workspaces/{id}/git")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!marker.exists(), "gpg.program ran in berth's diff");
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn planted_git_configuration_steers_nothing_http_bwrap() {
    planted_configuration_steers_nothing(Sandbox::Bwrap, Transport::HttpWithCredential).await;
}

#[tokio::test]
async fn planted_git_configuration_steers_nothing_ssh_bwrap() {
    planted_configuration_steers_nothing(Sandbox::Bwrap, Transport::Ssh).await;
}

#[tokio::test]
async fn planted_git_configuration_steers_nothing_http_docker() {
    planted_configuration_steers_nothing(Sandbox::Docker, Transport::HttpWithCredential).await;
}

#[tokio::test]
async fn planted_git_configuration_steers_nothing_ssh_docker() {
    planted_configuration_steers_nothing(Sandbox::Docker, Transport::Ssh).await;
}

/// A link planted where berth's configuration goes leads nowhere outside the sandbox: the
/// job fails (or reads berth's file through the link inside), and no file appears on the
/// host where the link points.
#[tokio::test]
async fn a_link_in_place_of_git_config_creates_nothing_on_the_host() {
    if !have_program("bwrap", INSTALLER) {
        return;
    }
    let server = TestServer::start_with(|config| {
        config.isolation = Isolation::Bwrap;
        config.network = Network::Isolated;
    })
    .await;
    let alice = server.member("alice").await;
    let source = SourceRepo::new();
    let id = alice.ready_workspace(&source.url(), "linked").await;
    let checkout = server.checkout(&id);
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("planted");
    std::fs::remove_file(checkout.join(".git/config")).unwrap();
    // Both spellings bubblewrap would resolve on the host before its root is pivoted.
    for (index, link) in
        [format!("../../../oldroot{}", target.display()), format!("/oldroot{}", target.display())]
            .into_iter()
            .enumerate()
    {
        let _ = std::fs::remove_file(checkout.join(".git/config"));
        std::os::unix::fs::symlink(&link, checkout.join(".git/config")).unwrap();
        let (status, _) = alice.get(&format!("/api/workspaces/{id}/git")).await;
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "attempt {index}");
        assert!(!target.exists(), "a job created {} on the host", target.display());
    }
}
