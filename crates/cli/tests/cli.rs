//! The `berth` binary end to end: `berth serve` on a fresh data directory, the client
//! commands against it, `berth user add` beside it, and a clean stop on SIGTERM.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use berth_testkit::SourceRepo;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const ADMIN_TOKEN: &str = "berth_cli_test_admin_token_0123";

struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn berth(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", data)
        .env("BERTH_DATA", data)
        .env("BERTH_ISOLATION", "none");
    command
}

fn serve(data: &Path) -> Served {
    let mut child = berth(data)
        .arg("serve")
        .env("BERTH_LISTEN", "127.0.0.1:0")
        .env("BERTH_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("berth listening on ") {
            assert!(
                printed.iter().any(|l: &String| l.contains("/login?token=")),
                "no login URL printed before: {printed:?}"
            );
            // Dropping `Served` kills and waits for the server.
            return Served { child, url: url.to_owned() };
        }
        printed.push(line);
    }
    let _ = child.wait();
    panic!("berth serve stopped before listening: {printed:?}");
}

fn client(data: &Path, served: &Served, token: &str, args: &[&str]) -> Output {
    berth(data).env("BERTH_URL", &served.url).env("BERTH_TOKEN", token).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn serve_then_create_list_show_and_delete_a_workspace() {
    let data = tempfile::tempdir().unwrap();
    let source = SourceRepo::new();
    let served = serve(data.path());

    let created =
        client(data.path(), &served, ADMIN_TOKEN, &["workspace", "create", &source.url(), "--name", "demo"]);
    assert!(created.status.success(), "{}{}", text(&created.stdout), text(&created.stderr));
    assert!(
        text(&created.stdout).contains("Workspace demo is ready on branch main"),
        "{}",
        text(&created.stdout)
    );

    let listed = client(data.path(), &served, ADMIN_TOKEN, &["workspace", "list"]);
    assert!(text(&listed.stdout).contains("demo"), "{}", text(&listed.stdout));

    let workspace_dir =
        std::fs::read_dir(data.path().join("workspaces")).unwrap().next().unwrap().unwrap().path();
    std::fs::write(workspace_dir.join("draft.txt"), "unsaved").unwrap();
    let shown = client(data.path(), &served, ADMIN_TOKEN, &["workspace", "show", "demo"]);
    assert!(text(&shown.stdout).contains("uncommitted: draft.txt"), "{}", text(&shown.stdout));

    let refused = client(data.path(), &served, ADMIN_TOKEN, &["workspace", "delete", "demo"]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("Not deleted"), "{}", text(&refused.stderr));
    assert!(workspace_dir.exists());

    let deleted = client(data.path(), &served, ADMIN_TOKEN, &["workspace", "delete", "demo", "--force"]);
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    assert!(!workspace_dir.exists());
}

#[test]
fn a_failed_clone_exits_non_zero_with_the_log() {
    let data = tempfile::tempdir().unwrap();
    let source = SourceRepo::new();
    let served = serve(data.path());
    let failed = client(
        data.path(),
        &served,
        ADMIN_TOKEN,
        &["workspace", "create", &source.url(), "--branch", "nope"],
    );
    assert!(!failed.status.success());
    let stderr = text(&failed.stderr);
    assert!(stderr.contains("nope") && stderr.contains("failed to initialise"), "{stderr}");
}

#[test]
fn user_add_works_offline_beside_a_running_server() {
    let data = tempfile::tempdir().unwrap();
    let served = serve(data.path());
    let added = berth(data.path()).args(["user", "add", "bob"]).output().unwrap();
    assert!(added.status.success(), "{}", text(&added.stderr));
    let stdout = text(&added.stdout);
    let token =
        stdout.lines().find_map(|line| line.strip_prefix("Token: ")).expect("a token line").to_owned();
    assert!(stdout.contains("Created member 'bob'"), "{stdout}");
    let listed = client(data.path(), &served, &token, &["workspace", "list"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(text(&listed.stdout).contains("No workspaces yet"));

    let bad = client(data.path(), &served, "berth_wrong", &["workspace", "list"]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("(unauthorized)"), "{}", text(&bad.stderr));
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let mut served = serve(data.path());
    let killed = Command::new("kill").arg("-TERM").arg(served.child.id().to_string()).status().unwrap();
    assert!(killed.success());
    let status = served.child.wait().unwrap();
    assert!(status.success(), "berth serve exited with {status}");
}

#[test]
fn a_bad_configuration_is_refused_with_the_key_named() {
    let data = tempfile::tempdir().unwrap();
    let output = berth(data.path()).arg("serve").env("BERTH_ON_USER_LIMIT", "evict").output().unwrap();
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("limits.on_user_limit"), "{}", text(&output.stderr));
}
