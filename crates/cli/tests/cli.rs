//! The `berth` binary end to end: `berth serve` on a fresh data directory, the client
//! commands against it, `berth user add` beside it, and a clean stop on SIGTERM.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use berth_testkit::SourceRepo;
use berth_testkit::process_runs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const ADMIN_TOKEN: &str = "berth_cli_test_admin_token_0123";

struct Served {
    child: Child,
    url: String,
    /// What `berth serve` printed before it listened.
    printed: Vec<String>,
}

impl Drop for Served {
    /// Stops the server the way an operator would (SIGTERM: every session ends and its
    /// sandbox powers off), so no agent outlives the test; SIGKILL if it does not stop.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        for _ in 0..1000 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
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
        .env("BERTH_GIT_LOCAL_ROOTS", std::env::temp_dir())
        .env("BERTH_ISOLATION", "none");
    command
}

fn serve(data: &Path) -> Served {
    serve_with(data, &[])
}

fn serve_with(data: &Path, env: &[(&str, &str)]) -> Served {
    serve_logging_to(data, env, Stdio::null())
}

/// `berth serve` with its log (standard error) going to `log`.
fn serve_logging_to(data: &Path, env: &[(&str, &str)], log: impl Into<Stdio>) -> Served {
    let mut child = berth(data)
        .arg("serve")
        .envs(env.iter().copied())
        .env("BERTH_LISTEN", "127.0.0.1:0")
        .env("BERTH_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // Dropping `Served` kills and waits for the server, whatever happens below.
    let mut served = Served { child, url: String::new(), printed: Vec::new() };
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("berth listening on ") {
            served.url = url.to_owned();
            return served;
        }
        served.printed.push(line);
    }
    panic!("berth serve stopped before listening: {:?}", served.printed);
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
    assert!(served.printed.iter().any(|line| line.contains("/login?token=")), "{:?}", served.printed);

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

/// An agent that ignores its input, starts a child of its own, and notes what it sees.
const STUBBORN_AGENT: &str = "mkdir -p .berth; env > .berth/env.txt; sleep 600 & echo $! > .berth/child.pid; echo $$ > .berth/agent.pid; wait";

fn pid_in(dir: &Path, name: &str) -> i32 {
    let path = dir.join(".berth").join(name);
    for _ in 0..2000 {
        if let Some(pid) = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok()) {
            return pid;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("no pid in {}", path.display());
}

fn eventually_gone(pid: i32) -> bool {
    for _ in 0..2000 {
        if !process_runs(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

#[test]
fn kill_9_then_restart_leaves_no_orphan_and_ends_the_session() {
    let data = tempfile::tempdir().unwrap();
    let source = SourceRepo::new();
    let agent = [("BERTH_AGENT", STUBBORN_AGENT)];
    let mut served = serve_with(data.path(), &agent);
    let created =
        client(data.path(), &served, ADMIN_TOKEN, &["workspace", "create", &source.url(), "--name", "demo"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let opened = client(data.path(), &served, ADMIN_TOKEN, &["open", "demo"]);
    assert!(opened.status.success(), "{}", text(&opened.stderr));
    let stdout = text(&opened.stdout);
    assert!(stdout.contains("berth attach s_"), "{stdout}");
    let checkout = std::fs::read_dir(data.path().join("workspaces")).unwrap().next().unwrap().unwrap().path();
    let (agent_pid, child_pid) = (pid_in(&checkout, "agent.pid"), pid_in(&checkout, "child.pid"));
    let env = std::fs::read_to_string(checkout.join(".berth/env.txt")).unwrap();
    assert!(!env.contains(ADMIN_TOKEN), "the agent must not see berth's admin token");

    let killed = Command::new("kill").arg("-KILL").arg(served.child.id().to_string()).status().unwrap();
    assert!(killed.success());
    served.child.wait().unwrap();
    assert!(process_runs(agent_pid) && process_runs(child_pid), "kill -9 leaves the sandbox running");

    let served = serve_with(data.path(), &agent);
    assert!(eventually_gone(agent_pid) && eventually_gone(child_pid), "the restart left an orphan");
    let sessions = client(data.path(), &served, ADMIN_TOKEN, &["sessions"]);
    assert!(text(&sessions.stdout).contains("No live sessions"), "{}", text(&sessions.stdout));
    let reopened = client(data.path(), &served, ADMIN_TOKEN, &["open", "demo"]);
    assert!(reopened.status.success(), "{}", text(&reopened.stderr));
}

#[test]
fn of_the_servers_environment_agents_get_only_the_base_set_and_the_names_passed() {
    let data = tempfile::tempdir().unwrap();
    let source = SourceRepo::new();
    let settings = [
        ("BERTH_AGENT", STUBBORN_AGENT),
        ("OPERATOR_SECRET", "operator-only-value"),
        ("OPERATOR_X", "another-operator-value"),
        ("MODEL_GATEWAY", "https://gateway.example.invalid"),
        ("LC_TIME", "C"),
        ("BERTH_AGENT_PASS_ENV", "MODEL_GATEWAY"),
    ];
    let served = serve_with(data.path(), &settings);
    let created =
        client(data.path(), &served, ADMIN_TOKEN, &["workspace", "create", &source.url(), "--name", "demo"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let opened = client(data.path(), &served, ADMIN_TOKEN, &["open", "demo"]);
    assert!(opened.status.success(), "{}", text(&opened.stderr));
    let checkout = std::fs::read_dir(data.path().join("workspaces")).unwrap().next().unwrap().unwrap().path();
    pid_in(&checkout, "agent.pid");
    let env = std::fs::read_to_string(checkout.join(".berth/env.txt")).unwrap();
    let names: Vec<&str> =
        env.lines().filter_map(|line| line.split_once('=')).map(|(name, _)| name).collect();
    assert!(!env.contains("operator-only-value") && !env.contains("another-operator-value"), "{env}");
    assert!(env.contains("MODEL_GATEWAY=https://gateway.example.invalid"), "{env}");
    assert!(env.contains("LC_TIME=C") && names.contains(&"PATH"), "{env}");
    assert!(!names.iter().any(|name| name.starts_with("BERTH_") && !name.ends_with("_ID")), "{env}");
}

#[test]
fn session_commands_print_the_outcome_words() {
    let data = tempfile::tempdir().unwrap();
    let source = SourceRepo::new();
    let served =
        serve_with(data.path(), &[("BERTH_AGENT", "exec sleep 600"), ("BERTH_SESSIONS_PER_USER", "2")]);
    for name in ["one", "two"] {
        let created = client(
            data.path(),
            &served,
            ADMIN_TOKEN,
            &["workspace", "create", &source.url(), "--name", name],
        );
        assert!(created.status.success(), "{}", text(&created.stderr));
    }
    let opened = client(data.path(), &served, ADMIN_TOKEN, &["open", "one"]);
    let session =
        text(&opened.stdout).split_whitespace().find(|word| word.starts_with("s_")).unwrap().to_owned();
    let resumed = client(data.path(), &served, ADMIN_TOKEN, &["open", "one"]);
    assert!(text(&resumed.stdout).contains("Session resumed"), "{}", text(&resumed.stdout));
    let listed = client(data.path(), &served, ADMIN_TOKEN, &["sessions"]);
    assert!(text(&listed.stdout).contains(&session));

    let closed = client(data.path(), &served, ADMIN_TOKEN, &["close", &session]);
    assert!(text(&closed.stdout).contains("Workspace closed"), "{}", text(&closed.stdout));

    client(data.path(), &served, ADMIN_TOKEN, &["open", "one"]);
    client(data.path(), &served, ADMIN_TOKEN, &["open", "two"]);
    let all = client(data.path(), &served, ADMIN_TOKEN, &["close-all"]);
    assert!(text(&all.stdout).contains("Active workspaces closed (2)"), "{}", text(&all.stdout));
    let nothing = client(data.path(), &served, ADMIN_TOKEN, &["close-all", "--retry-open", "two"]);
    let stdout = text(&nothing.stdout);
    assert!(stdout.contains("No active workspaces to close") && stdout.contains("Opened"), "{stdout}");
}

#[test]
fn attach_prompts_answers_by_number_and_shows_the_output() {
    use std::io::Write;
    let data = tempfile::tempdir().unwrap();
    let source = SourceRepo::new();
    // The default agent: the built-in one, `berth agent`.
    let served = serve(data.path());
    let created =
        client(data.path(), &served, ADMIN_TOKEN, &["workspace", "create", &source.url(), "--name", "demo"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let opened = client(data.path(), &served, ADMIN_TOKEN, &["open", "demo"]);
    let session =
        text(&opened.stdout).split_whitespace().find(|word| word.starts_with("s_")).unwrap().to_owned();

    let mut attach = berth(data.path())
        .env("BERTH_URL", &served.url)
        .env("BERTH_TOKEN", ADMIN_TOKEN)
        .args(["attach", &session])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let stdout = BufReader::new(attach.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut seen = Vec::new();
        while std::time::Instant::now() < deadline {
            if let Ok(line) = received.recv_timeout(std::time::Duration::from_millis(100)) {
                if line.contains(needle) {
                    return;
                }
                seen.push(line);
            }
        }
        panic!("no line with {needle:?} in {seen:?}");
    };
    let mut stdin = attach.stdin.take().unwrap();
    wait_for("agent_ready");
    writeln!(stdin, "$ echo attached > attached.txt").unwrap();
    wait_for("/1 Allow once");
    writeln!(stdin, "/1").unwrap();
    wait_for("(turn ended: end_turn)");
    drop(stdin);
    assert!(attach.wait().unwrap().success());
    let checkout = std::fs::read_dir(data.path().join("workspaces")).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::fs::read_to_string(checkout.join("attached.txt")).unwrap(), "attached\n");
}

/// Tokens and users from the terminal, against a server logging at debug level: no token
/// (the login link's, a new one, the admin's) ever reaches its log.
#[test]
fn tokens_and_users_from_the_cli_and_no_secret_in_the_debug_log() {
    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let served = serve_logging_to(data.path(), &[("BERTH_LOG", "debug")], log);
    let run = |token: &str, args: &[&str]| {
        let output = client(data.path(), &served, token, args);
        assert!(output.status.success(), "{args:?}: {}{}", text(&output.stdout), text(&output.stderr));
        text(&output.stdout)
    };
    let created = run(ADMIN_TOKEN, &["token", "create", "--name", "ci", "--expires-in", "1h"]);
    let secret = created.lines().find(|line| line.starts_with("berth_")).unwrap().to_owned();
    let id = created.split_whitespace().nth(1).unwrap().to_owned();
    assert!(created.contains("expires at"), "{created}");
    let listed = run(&secret, &["token", "list"]);
    assert!(listed.contains(&id) && listed.contains("ci") && !listed.contains(&secret), "{listed}");

    // The login link, as a browser follows it.
    let address = served.url.trim_start_matches("http://").to_owned();
    let mut connection = std::net::TcpStream::connect(&address).unwrap();
    use std::io::{Read, Write};
    write!(connection, "GET /login?token={secret} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    connection.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");

    let added = berth(data.path()).args(["user", "add", "carol"]).output().unwrap();
    assert!(added.status.success(), "{}", text(&added.stderr));
    let carol_token = text(&added.stdout).lines().find_map(|l| l.strip_prefix("Token: ")).unwrap().to_owned();
    assert!(run(ADMIN_TOKEN, &["user", "list"]).contains("carol"));
    assert!(run(ADMIN_TOKEN, &["user", "disable", "carol"]).contains("disabled"));
    let refused = client(data.path(), &served, &carol_token, &["token", "list"]);
    assert!(!refused.status.success(), "a disabled user's token still works");

    assert!(run(ADMIN_TOKEN, &["token", "revoke", &id]).contains("revoked"));
    let revoked = client(data.path(), &served, &secret, &["token", "list"]);
    assert!(!revoked.status.success(), "a revoked token still works");

    drop(served);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("/login") && log.contains("on_request"),
        "requests are traced at debug level: {log}"
    );
    for token in [secret.as_str(), ADMIN_TOKEN, carol_token.as_str()] {
        assert!(!log.contains(token), "a token reached the log");
    }
    let hexes = [&secret["berth_".len()..], &carol_token["berth_".len()..]];
    assert!(hexes.iter().all(|hex| !log.contains(*hex)), "a token's secret part reached the log");
}

/// Credentials and secrets from the terminal (values on stdin), against a server logging
/// at debug level: lists never show a value, and no value reaches the log.
#[test]
fn credentials_and_secrets_from_the_cli_and_no_value_in_the_debug_log() {
    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let served = serve_logging_to(data.path(), &[("BERTH_LOG", "debug")], log);
    let with_stdin = |args: &[&str], input: &str| {
        let mut child = berth(data.path())
            .env("BERTH_URL", &served.url)
            .env("BERTH_TOKEN", ADMIN_TOKEN)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{args:?}: {}{}", text(&output.stdout), text(&output.stderr));
        text(&output.stdout)
    };
    let run = |args: &[&str]| {
        let output = client(data.path(), &served, ADMIN_TOKEN, args);
        assert!(output.status.success(), "{args:?}: {}{}", text(&output.stdout), text(&output.stderr));
        text(&output.stdout)
    };
    const GIT_SECRET: &str = "ghp_cli-credential-value-0042";
    const SECRET_VALUE: &str = "sk-cli-secret-value-0042";
    let added =
        with_stdin(&["credential", "add", "github.com", "--username", "me"], &format!("{GIT_SECRET}\n"));
    assert!(added.contains("github.com") && !added.contains(GIT_SECRET), "{added}");
    let listed = run(&["credential", "list"]);
    assert!(
        listed.contains("github.com") && listed.contains("me") && !listed.contains(GIT_SECRET),
        "{listed}"
    );
    let id = listed.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();

    let set = with_stdin(&["secret", "set", "OPENAI_API_KEY"], &format!("{SECRET_VALUE}\n"));
    assert!(set.contains("OPENAI_API_KEY"), "{set}");
    let listed = run(&["secret", "list"]);
    assert!(listed.contains("OPENAI_API_KEY") && !listed.contains(SECRET_VALUE), "{listed}");
    let refused = client(data.path(), &served, ADMIN_TOKEN, &["secret", "remove", "NOT_THERE"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("not_found") || text(&refused.stderr).contains("no such"),
        "{}",
        text(&refused.stderr)
    );
    assert!(run(&["secret", "remove", "OPENAI_API_KEY"]).contains("removed"));
    assert!(run(&["credential", "remove", &id]).contains("removed"));

    drop(served);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("/api/secrets"), "requests are traced at debug level: {log}");
    for value in [GIT_SECRET, SECRET_VALUE] {
        assert!(!log.contains(value), "a value reached the log");
    }
}
