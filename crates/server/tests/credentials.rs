//! Private repositories and secrets, against a real git server with Basic auth (`git
//! http-backend` behind a server of the test's own) and real bubblewrap sandboxes: a
//! clone without a credential fails saying how to add one; with the caller's credential
//! it clones, the agent commits and pushes from inside its sandbox, and `POST …/push`
//! pushes; no secret is ever written into the workspace, an answer, the init log, the
//! history, the database or a command line. A user's secrets reach their own agents only.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_sandbox::{Isolation, Network};
use berth_testkit::{GitHttpServer, SourceRepo, git, have_program};
use common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const INSTALLER: &str = "scripts/test.sh";
const GIT_SECRET: &str = "ghp_s3cret-0f-alice-never-shown";

fn ready() -> bool {
    have_program("bwrap", INSTALLER) && have_program("python3", INSTALLER)
}

/// Sandboxed with bubblewrap, on the host's network (the git server is on loopback).
fn sandboxed(config: &mut berth_engine::Config) {
    config.isolation = Isolation::Bwrap;
    config.network = Network::Host;
}

#[derive(Clone, Copy, Debug)]
enum Sandbox {
    Bwrap,
    Docker,
}

/// A server whose sandboxes are of `kind` (on the host's network), or `None` when this
/// machine cannot run them (a failure in CI).
async fn server_of(kind: Sandbox) -> Option<TestServer> {
    match kind {
        Sandbox::Bwrap if !ready() => return None,
        Sandbox::Docker if !berth_testkit::have_docker() || !ready() => return None,
        _ => {}
    }
    let image = matches!(kind, Sandbox::Docker)
        .then(|| berth_testkit::docker_test_image(&std::env::current_exe().unwrap()));
    Some(
        TestServer::start_with(|config| {
            sandboxed(config);
            if let Some(image) = image {
                config.sandbox_driver = berth_engine::config::SandboxDriverKind::Docker;
                config.image = image;
            }
        })
        .await,
    )
}

/// Waits (bounded) for a file the agent writes in its checkout (whole: the agents here
/// write a file beside it and move it into place).
async fn file_written(path: &Path) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} never written", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every file under `dir` (the checkout, `.git` included) whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Every process on the host whose command line holds `needle`.
fn command_lines_holding(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .filter(|line| line.contains(needle))
        .collect()
}

/// The agent of workspace `id` commits (an empty commit, `message`) and pushes to `origin`
/// from inside its sandbox — with no credential of its own — then idles; returns its
/// session once the push finished, having checked that it worked.
async fn the_agent_commits_and_pushes(
    server: &TestServer,
    api: &common::Api,
    id: &str,
    message: &str,
) -> String {
    let agent = format!(
        "mkdir -p .berth; \
         (git -c user.name=agent -c user.email=agent@example.invalid commit -q --allow-empty -m {message} \
          && git push -q origin HEAD:refs/heads/main) > .berth/push.log 2>&1; echo $? > .berth/push.status; \
         echo $$ > .berth/agent.pid; exec sleep 600"
    );
    let patch = api
        .request(reqwest::Method::PATCH, &format!("/api/workspaces/{id}"))
        .json(&json!({ "agent": agent }));
    assert_eq!(api.send(patch).await.0, StatusCode::OK);
    let (status, opened) = api.open(id).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let checkout = server.checkout(id);
    let pushed = file_written(&checkout.join(".berth/push.status")).await;
    let push_log = std::fs::read_to_string(checkout.join(".berth/push.log")).unwrap_or_default();
    assert_eq!(pushed.trim(), "0", "the agent's push failed: {push_log}");
    opened["session"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_private_repository_clones_and_pushes_with_the_callers_credential_only_bwrap() {
    a_private_repository_clones_and_pushes_with_the_callers_credential_only(Sandbox::Bwrap).await;
}

#[tokio::test]
async fn a_private_repository_clones_and_pushes_with_the_callers_credential_only_docker() {
    a_private_repository_clones_and_pushes_with_the_callers_credential_only(Sandbox::Docker).await;
}

async fn a_private_repository_clones_and_pushes_with_the_callers_credential_only(kind: Sandbox) {
    let Some(server) = server_of(kind).await else { return };
    let source = SourceRepo::new();
    let remote = GitHttpServer::start(&source, "alice-git", GIT_SECRET);
    let host = format!("127.0.0.1:{}", remote.port);
    let alice = server.member("alice").await;

    // Without a credential: the clone fails and the log says how to add one.
    let failed = alice.create_settled(json!({ "repo": remote.url(), "name": "private" })).await;
    assert_eq!(failed["state"], "error", "{failed}");
    let id = failed["id"].as_str().unwrap().to_owned();
    let (_, log) = alice.get(&format!("/api/workspaces/{id}/init-log")).await;
    let log = log.as_str().unwrap().to_owned();
    assert!(log.contains(&format!("needs a credential for {host}")), "{log}");
    assert!(log.contains(&format!("berth credential add {host}")), "{log}");
    // The headline is what to do, not git's "could not read Username"; git's words stay
    // in the log.
    let headline = failed["error"].as_str().unwrap();
    assert!(headline.starts_with(&format!("this repository needs a credential for {host}")), "{headline}");
    assert!(log.contains("initialisation failed: "), "{log}");

    // Bad credentials are refused with stable codes.
    for (body, code) in [
        (json!({ "host": "https://x", "username": "u", "secret": "s" }), "invalid_host"),
        (json!({ "host": &host, "username": "u", "secret": "a\nprotocol=evil" }), "invalid_credential"),
        (json!({ "host": &host, "username": "", "secret": "s" }), "invalid_credential"),
    ] {
        let (status, answer) = alice.post("/api/credentials", body).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)));
    }
    let (status, created) = alice
        .post("/api/credentials", json!({ "host": &host, "username": "alice-git", "secret": GIT_SECRET }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(!created.to_string().contains(GIT_SECRET), "{created}");
    let (_, listed) = alice.get("/api/credentials").await;
    assert_eq!(listed["credentials"][0]["host"], host.as_str());
    assert!(!listed.to_string().contains(GIT_SECRET), "{listed}");

    // With it: the clone works.
    let (status, _) = alice.post(&format!("/api/workspaces/{id}/retry"), Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let ready = alice.settled(&id).await;
    assert_eq!(ready["state"], "ready", "{ready}");
    assert_eq!(ready["pushable"], true, "a remote repository takes pushes");

    // The agent commits and pushes from inside its sandbox, with no credential of its own.
    let checkout = server.checkout(&id);
    let session = the_agent_commits_and_pushes(&server, &alice, &id, "from-the-sandbox").await;
    assert_eq!(remote.head_of("main"), git(&checkout, &["rev-parse", "HEAD"]));
    assert!(command_lines_holding(GIT_SECRET).is_empty(), "the secret is on a command line");
    let (status, _) = alice.post(&format!("/api/sessions/{session}/close"), Value::Null).await;
    assert_eq!(status, StatusCode::OK);

    // berth's own push, of a commit made in the checkout.
    git(&checkout, &["commit", "-q", "--allow-empty", "-m", "second"]);
    let (status, body) = alice.post(&format!("/api/workspaces/{id}/push"), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["branch"], "main");
    assert_eq!(body["head"], git(&checkout, &["rev-parse", "HEAD"]).as_str());
    assert_eq!(remote.head_of("main"), body["head"].as_str().unwrap());

    // A wrong credential: push_failed with git's reason, and no secret in it.
    let wrong = "wrong-secret-value-123";
    let (status, _) = alice
        .post("/api/credentials", json!({ "host": &host, "username": "alice-git", "secret": wrong }))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    git(&checkout, &["commit", "-q", "--allow-empty", "-m", "third"]);
    let (status, body) = alice.post(&format!("/api/workspaces/{id}/push"), Value::Null).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("push_failed")),
        "{body}"
    );
    assert!(!body.to_string().contains(wrong), "{body}");

    // Another user gets nothing of alice's: their clone of the same repository fails.
    let bob = server.member("bob").await;
    let theirs = bob.create_settled(json!({ "repo": remote.url(), "name": "private" })).await;
    assert_eq!(theirs["state"], "error", "{theirs}");

    // The secret is nowhere: not in the checkout (`.git/config` included), the history,
    // the init log, the database.
    assert_eq!(files_holding(&checkout, GIT_SECRET), Vec::<String>::new());
    let (_, events) = alice.get(&format!("/api/workspaces/{id}/events")).await;
    assert!(!events.to_string().contains(GIT_SECRET));
    let (_, log) = alice.get(&format!("/api/workspaces/{id}/init-log")).await;
    assert!(!log.to_string().contains(GIT_SECRET));
    let data = server.stop().await;
    assert_eq!(
        files_holding(data.path(), GIT_SECRET),
        Vec::<String>::new(),
        "stored sealed, never in the clear"
    );
}

#[tokio::test]
async fn a_users_secrets_reach_their_own_agents_and_never_come_back() {
    if !ready() {
        return;
    }
    const VALUE: &str = "sk-alice-only-'quoted' $(not run)";
    let server = TestServer::start_with(|config| {
        sandboxed(config);
        config.agent_command = Some(
            "mkdir -p .berth; (printenv MODEL_API_KEY; echo) > .berth/seen.part; mv .berth/seen.part .berth/seen; \
             echo $$ > .berth/agent.pid; exec sleep 600"
                .into(),
        );
    })
    .await;
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let bob = server.member("bob").await;

    for (name, code) in [
        ("lower", "invalid_secret_name"),
        ("BERTH_ADMIN_TOKEN", "invalid_secret_name"),
        ("1X", "invalid_secret_name"),
    ] {
        let (status, body) = alice
            .send(
                alice
                    .request(reqwest::Method::PUT, &format!("/api/secrets/{name}"))
                    .json(&json!({ "value": "v" })),
            )
            .await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{name}");
    }
    let put =
        alice.request(reqwest::Method::PUT, "/api/secrets/MODEL_API_KEY").json(&json!({ "value": VALUE }));
    let (status, _) = alice.send(put).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, listed) = alice.get("/api/secrets").await;
    assert_eq!(listed["secrets"][0]["name"], "MODEL_API_KEY");
    assert!(!listed.to_string().contains("sk-alice"), "{listed}");
    let (_, theirs) = bob.get("/api/secrets").await;
    assert_eq!(theirs["secrets"], json!([]));

    let mut seen = Vec::new();
    for user in [&alice, &bob] {
        let id = user.ready_workspace(&source.url(), "demo").await;
        let (status, opened) = user.open(&id).await;
        assert_eq!(status, StatusCode::CREATED, "{opened}");
        seen.push(file_written(&server.checkout(&id).join(".berth/seen")).await);
    }
    assert_eq!(seen[0], format!("{VALUE}\n\n"), "alice's agent has her secret, exactly");
    assert_eq!(seen[1], "\n", "bob's agent has none of it");
    assert!(command_lines_holding("sk-alice-only").is_empty(), "the secret is on a command line");

    let (status, _) = alice.delete("/api/secrets/MODEL_API_KEY").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = alice.delete("/api/secrets/MODEL_API_KEY").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let data = server.stop().await;
    // Only the file the agent wrote itself holds it.
    let held: Vec<String> = files_holding(data.path(), "sk-alice-only")
        .into_iter()
        .filter(|path| !path.ends_with(".berth/seen"))
        .collect();
    assert_eq!(held, Vec::<String>::new(), "nothing left in the clear");
}

#[tokio::test]
async fn the_agents_catalogue_says_what_each_agent_lacks_and_a_workspace_runs_one_by_name() {
    let server = TestServer::start_with(|config| {
        config.agents.push(berth_engine::AgentEntry {
            name: "scribe".into(),
            command: Some("mkdir -p .berth; printenv SCRIBE_KEY SCRIBE_GATEWAY > .berth/seen.part; mv .berth/seen.part .berth/seen; echo $$ > .berth/agent.pid; exec sleep 600"
                .into()),
            needs: vec!["SCRIBE_KEY".into()],
            description: "writes things down".into(),
            // A fixed setting reaches the agent; the person's own secret wins over one.
            env: vec![
                ("SCRIBE_GATEWAY".into(), "https://gateway.example.invalid".into()),
                ("SCRIBE_KEY".into(), "the-installations-placeholder".into()),
            ],
            settings: vec!["SCRIBE_GATEWAY".into()],
            package: None,
        });
    })
    .await;
    let alice = server.member("alice").await;
    let (status, offered) = alice.get("/api/agents").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> =
        offered["agents"].as_array().unwrap().iter().map(|agent| agent["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["builtin", "claude", "codex", "gemini", "scribe"],
        "the real agents are offered out of the box"
    );
    let agent = |offered: &Value, name: &str| {
        offered["agents"].as_array().unwrap().iter().find(|agent| agent["name"] == name).unwrap().clone()
    };
    let scribe = agent(&offered, "scribe");
    assert_eq!(
        (scribe["missing"].clone(), scribe["installed"].clone()),
        (json!(["SCRIBE_KEY"]), json!(true))
    );
    let claude = agent(&offered, "claude");
    assert_eq!(claude["needs"], json!(["ANTHROPIC_API_KEY"]), "{claude}");
    assert_eq!(claude["settings"], json!(["ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL"]));
    if claude["installed"] == false {
        assert!(claude["install"].as_str().unwrap().contains("berth agents install claude"), "{claude}");
    }

    // Without the secret it needs, the agent does not start, and the answer says which.
    let source = SourceRepo::new();
    let early =
        alice.create_settled(json!({ "repo": source.url(), "name": "early", "agent": "scribe" })).await;
    let (status, refused) = alice.open(early["id"].as_str().unwrap()).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str(), refused["error"]["missing"].clone()),
        (StatusCode::CONFLICT, Some("agent_needs_secrets"), json!(["SCRIBE_KEY"])),
        "{refused}"
    );
    assert!(refused["error"]["message"].as_str().unwrap().contains("SCRIBE_KEY"), "{refused}");

    let put =
        alice.request(reqwest::Method::PUT, "/api/secrets/SCRIBE_KEY").json(&json!({ "value": "k-123" }));
    assert_eq!(alice.send(put).await.0, StatusCode::NO_CONTENT);
    let (_, offered) = alice.get("/api/agents").await;
    assert_eq!(agent(&offered, "scribe")["missing"], json!([]), "{offered}");

    let workspace =
        alice.create_settled(json!({ "repo": source.url(), "name": "notes", "agent": "scribe" })).await;
    let id = workspace["id"].as_str().unwrap();
    let (status, opened) = alice.open(id).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    assert_eq!(
        file_written(&server.checkout(id).join(".berth/seen")).await,
        "k-123\nhttps://gateway.example.invalid\n"
    );
    server.stop().await;
}

/// SSH repositories against Debian's sshd: the caller's berth-made key (never the
/// server's), the server's host key recorded at first use and a changed one refused.
#[tokio::test]
async fn an_ssh_repository_uses_the_callers_berth_key_and_refuses_a_changed_host_key() {
    if !ready() || !have_program("sshd", INSTALLER) && !Path::new("/usr/sbin/sshd").exists() {
        return;
    }
    let source = SourceRepo::new();
    let mut remote = berth_testkit::SshGitServer::start(&source);
    let server = TestServer::start_with(sandboxed).await;
    let alice = server.member("alice").await;

    let (status, key) = alice.get("/api/me/ssh-key").await;
    assert_eq!(status, StatusCode::OK, "{key}");
    let public_key = key["public_key"].as_str().unwrap().to_owned();
    assert!(public_key.starts_with("ssh-ed25519 ") && public_key.ends_with("berth:alice"), "{public_key}");
    assert!(key["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
    assert_eq!(alice.get("/api/me/ssh-key").await.1, key, "made once");
    let (_, bobs) = server.member("bob").await.get("/api/me/ssh-key").await;
    assert_ne!(bobs["public_key"], key["public_key"], "one key per user");

    // Not yet authorised there: refused, and the log says what to do.
    let failed = alice.create_settled(json!({ "repo": remote.url(), "name": "over-ssh" })).await;
    assert_eq!(failed["state"], "error", "{failed}");
    let id = failed["id"].as_str().unwrap().to_owned();
    let (_, log) = alice.get(&format!("/api/workspaces/{id}/init-log")).await;
    assert!(log.as_str().unwrap().contains("refused your berth SSH key"), "{log}");

    remote.authorize(&public_key);
    let (status, _) = alice.post(&format!("/api/workspaces/{id}/retry"), Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let ready = alice.settled(&id).await;
    assert_eq!(ready["state"], "ready", "{ready}");

    // The agent pushes over SSH from inside its sandbox.
    let checkout = server.checkout(&id);
    let session = the_agent_commits_and_pushes(&server, &alice, &id, "over-ssh").await;
    assert_eq!(remote.head_of("main"), git(&checkout, &["rev-parse", "HEAD"]));
    assert!(command_lines_holding("PRIVATE KEY").is_empty(), "the key is on a command line");
    let (status, _) = alice.post(&format!("/api/sessions/{session}/close"), Value::Null).await;
    assert_eq!(status, StatusCode::OK);

    git(&checkout, &["commit", "-q", "--allow-empty", "-m", "pushed by berth"]);
    let (status, body) = alice.post(&format!("/api/workspaces/{id}/push"), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(remote.head_of("main"), body["head"].as_str().unwrap());

    // Someone in between: the same address answers with another host key. Refused.
    remote.restart_with_a_new_host_key();
    git(&checkout, &["commit", "-q", "--allow-empty", "-m", "never sent"]);
    let (status, body) = alice.post(&format!("/api/workspaces/{id}/push"), Value::Null).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("push_failed")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("Host key verification failed"), "{body}");
    let second = alice.create_settled(json!({ "repo": remote.url(), "name": "second" })).await;
    assert_eq!(second["state"], "error", "{second}");
    let (_, log) = alice.get(&format!("/api/workspaces/{}/init-log", second["id"].as_str().unwrap())).await;
    assert!(log.as_str().unwrap().contains("is not the one berth recorded"), "{log}");

    assert_eq!(files_holding(&checkout, "PRIVATE KEY"), Vec::<String>::new());
    let data = server.stop().await;
    assert_eq!(files_holding(data.path(), "PRIVATE KEY"), Vec::<String>::new(), "sealed, never in the clear");
}

/// An ACP agent that will not open a session without credentials (`auth_required`).
const NEEDY_AGENT: &str = r#"
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("method") == "initialize":
        reply = {"protocolVersion": 1, "agentCapabilities": {}, "authMethods": []}
        print(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": reply}), flush=True)
    elif message.get("method") == "session/new":
        error = {"code": -32000, "message": "Authentication required"}
        print(json.dumps({"jsonrpc": "2.0", "id": message["id"], "error": error}), flush=True)
"#;

#[tokio::test]
async fn an_agent_asking_for_credentials_is_told_which_secret_to_add() {
    if !have_program("python3", INSTALLER) {
        return;
    }
    let server = TestServer::start_with(|config| {
        config.agents = vec![berth_engine::AgentEntry {
            name: "needy".into(),
            command: Some("exec python3 needy.py".into()),
            // Not declared: a declared secret the person lacks refuses the open before
            // the agent starts (`agent_needs_secrets`); this agent finds out itself.
            needs: Vec::new(),
            description: String::new(),
            env: Vec::new(),
            settings: Vec::new(),
            package: None,
        }];
    })
    .await;
    let source = SourceRepo::new();
    std::fs::write(source.path.join("needy.py"), NEEDY_AGENT).unwrap();
    git(&source.path, &["add", "needy.py"]);
    git(&source.path, &["commit", "-q", "-m", "agent"]);
    let alice = server.member("alice").await;
    let workspace =
        alice.create_settled(json!({ "repo": source.url(), "name": "needy", "agent": "needy" })).await;
    let id = workspace["id"].as_str().unwrap();
    let (status, opened) = alice.open(id).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let said = loop {
        let (_, page) = alice.get(&format!("/api/workspaces/{id}/events")).await;
        let found = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|event| event["data"]["code"] == "agent_needs_credentials")
            .cloned();
        if let Some(event) = found {
            break event;
        }
        assert!(tokio::time::Instant::now() < deadline, "no word of the missing credentials: {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(said["data"]["missing"], json!([]), "{said}");
    let message = said["data"]["message"].as_str().unwrap();
    assert!(message.contains("credentials") && message.contains("account page"), "{message}");
    assert!(!message.contains("{") && !message.contains("-32000"), "no raw protocol text: {message}");
    server.stop().await;
}

/// A real third-party ACP agent (`elizacp`, from crates.io) gets the key its catalogue
/// entry needs from its user's secret: it is in that agent process's environment, which
/// the server's own environment is not.
#[tokio::test]
async fn a_real_agent_gets_its_key_from_its_users_secret_not_the_servers_environment() {
    let installed = std::process::Command::new("elizacp")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !installed {
        assert!(std::env::var("CI").is_err(), "elizacp is not installed; scripts/test.sh installs it");
        eprintln!("skipped: elizacp is not installed (cargo install elizacp)");
        return;
    }
    const KEY: &str = "eliza-key-from-alice-0042";
    assert!(std::env::var("ELIZA_API_KEY").is_err(), "the test's own environment has no key");
    let server = TestServer::start_with(|config| {
        config.agents = vec![berth_engine::AgentEntry {
            name: "eliza".into(),
            command: Some("exec elizacp --deterministic acp".into()),
            needs: vec!["ELIZA_API_KEY".into()],
            description: "a therapist".into(),
            env: Vec::new(),
            settings: Vec::new(),
            package: None,
        }];
    })
    .await;
    let alice = server.member("alice").await;
    let put =
        alice.request(reqwest::Method::PUT, "/api/secrets/ELIZA_API_KEY").json(&json!({ "value": KEY }));
    assert_eq!(alice.send(put).await.0, StatusCode::NO_CONTENT);
    let source = SourceRepo::new();
    let workspace =
        alice.create_settled(json!({ "repo": source.url(), "name": "eliza", "agent": "eliza" })).await;
    let (status, opened) = alice.open(workspace["id"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let session = opened["session"]["id"].as_str().unwrap();
    let marker = format!("BERTH_SESSION_ID={session}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let environment = loop {
        let found = std::fs::read_dir("/proc").unwrap().flatten().find_map(|entry| {
            let command = std::fs::read(entry.path().join("cmdline")).ok()?;
            let environment =
                String::from_utf8_lossy(&std::fs::read(entry.path().join("environ")).ok()?).into_owned();
            (String::from_utf8_lossy(&command).contains("elizacp") && environment.contains(&marker))
                .then_some(environment)
        });
        if let Some(environment) = found {
            break environment;
        }
        assert!(tokio::time::Instant::now() < deadline, "no elizacp process for {session}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        environment.split('\0').any(|pair| pair == format!("ELIZA_API_KEY={KEY}")),
        "the key is not in elizacp's environment"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_agent_that_prints_a_secret_as_it_fails_never_puts_it_in_the_conversation() {
    const VALUE: &str = "sk-alice-leaky-4711";
    let server = TestServer::start_with(|config| {
        config.agent_command = Some("echo \"starting with $MODEL_API_KEY\" >&2; exit 3".into());
    })
    .await;
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let put =
        alice.request(reqwest::Method::PUT, "/api/secrets/MODEL_API_KEY").json(&json!({ "value": VALUE }));
    assert_eq!(alice.send(put).await.0, StatusCode::NO_CONTENT);
    let id = alice.ready_workspace(&source.url(), "leaky").await;
    let (status, opened) = alice.open(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let session = opened["session"]["id"].as_str().unwrap().to_owned();
    // The agent's error output is in the conversation, its secret is not.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let events = loop {
        let (_, page) = alice.get(&format!("/api/sessions/{session}/events")).await;
        let failed = page["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|event| event["data"]["code"] == "agent_error");
        if failed {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "the agent's exit was never told: {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let failed = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["data"]["code"] == "agent_error")
        .unwrap();
    assert_eq!(failed["data"]["stderr_tail"], "starting with [secret]\n", "{failed}");
    assert!(!events.to_string().contains(VALUE), "{events}");
}
