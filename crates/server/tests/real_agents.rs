//! Real coding agents through berth: the ACP adapters of Claude Code and Codex, and Gemini CLI (npm
//! packages installed by `berth agents install` into `BERTH_TEST_AGENTS`, which
//! `scripts/test.sh` fills and keeps between runs), each against a loopback stand-in of
//! its provider's API (`berth_testkit::ModelStandIn`): streamed text and one tool call. A prompt → the agent asks to run a command → berth's question →
//! allowed → the command's file appears in the checkout → the turn ends. The stand-in
//! sees the person's own key; a person without one is told which to add, and nothing
//! starts.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_testkit::{ModelStandIn, STAND_IN_FILE};
use common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn claude_code_runs_a_command_the_person_allowed_against_a_stand_in_of_its_provider() {
    let Some(claude) = berth_testkit::installed_agent("claude", "claude-agent-acp") else { return };
    let provider = ModelStandIn::anthropic().await;
    let server = TestServer::start_with(|config| {
        let entry = config.agents.iter_mut().find(|agent| agent.name == "claude").unwrap();
        entry.command = Some(berth_core::agents::command_line(&claude.to_string_lossy(), &[]));
        entry.env = vec![("ANTHROPIC_BASE_URL".into(), provider.url.clone())];
    })
    .await;
    // The project asks before each command: the person's answer lets it run.
    let source = berth_testkit::claude_project();
    let alice = server.member("alice").await;
    let id = agent_workspace(&alice, &source, "with-claude", "claude").await;

    // No key yet: nothing starts, and the answer says which to add.
    let (status, refused) = alice.open(&id).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str(), refused["error"]["missing"].clone()),
        (StatusCode::CONFLICT, Some("agent_needs_secrets"), json!(["ANTHROPIC_API_KEY"])),
        "{refused}"
    );
    set_secret(&alice, "ANTHROPIC_API_KEY", "sk-ant-alice-7").await;

    a_turn_runs_the_command_once_allowed(&alice, &server, &id).await;
    provider_saw_only(&provider, "sk-ant-alice-7");

    // Claude Code's own settings and history live in the agent's home, kept across opens.
    let claude_home = server.checkout(&id).join(".berth/home/.claude");
    // (Its conversations, under projects/; it removes its own scratch files as it ends.)
    let kept: Vec<_> =
        files_under(&claude_home).into_iter().filter(|file| file.starts_with("projects")).collect();
    assert!(!kept.is_empty(), "Claude Code kept no conversation in {}", claude_home.display());
    // The person left (their page went): the session ends, and the next open starts anew.
    server.until_no_sandbox_runs().await;
    let (status, reopened) = alice.open(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{reopened}");
    let session = reopened["session"]["id"].as_str().unwrap().to_owned();
    let mut socket = attach(&alice, &session).await;
    frame_where(&mut socket, "the agent is ready again", |frame| {
        frame["type"] == "event" && frame["event"]["data"]["code"] == "agent_ready"
    })
    .await;
    let now = files_under(&claude_home);
    assert!(kept.iter().all(|file| now.contains(file)), "lost across opens: {kept:?} → {now:?}");
    server.stop().await;
}

/// Opens workspace `id` as `api`'s user, prompts, allows the command the agent asks to
/// run (once), and checks that the turn ended as it should with the command's file made.
async fn a_turn_runs_the_command_once_allowed(api: &common::Api, server: &TestServer, id: &str) {
    let (status, opened) = api.open(id).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let session = opened["session"]["id"].as_str().unwrap().to_owned();
    let mut socket = attach(api, &session).await;
    frame_where(&mut socket, "the agent is ready", |frame| {
        frame["type"] == "event" && frame["event"]["data"]["code"] == "agent_ready"
    })
    .await;
    send(&mut socket, json!({ "type": "prompt", "text": "Make the file" })).await;
    let question = frame_where(&mut socket, "berth's question", |frame| frame["type"] == "question").await;
    let question = &question["question"];
    let allow =
        question["options"].as_array().unwrap().iter().find(|option| option["kind"] == "allow_once").unwrap();
    send(&mut socket, json!({ "type": "answer", "question_id": question["id"], "option_id": allow["id"] }))
        .await;
    let ended = frame_where(&mut socket, "the turn's end", |frame| {
        frame["type"] == "event" && frame["event"]["kind"] == "turn_end"
    })
    .await;
    assert_eq!(ended["event"]["data"]["stop_reason"], "end_turn", "{ended}");
    let made = std::fs::read_to_string(server.checkout(id).join(STAND_IN_FILE)).unwrap();
    assert_eq!(made, "made-by-the-agent\n");
}

/// The files under `dir`, relative to it.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pending.push(path);
            } else {
                files.push(path.strip_prefix(dir).unwrap().to_owned());
            }
        }
    }
    files
}

async fn set_secret(api: &common::Api, name: &str, value: &str) {
    let put =
        api.request(reqwest::Method::PUT, &format!("/api/secrets/{name}")).json(&json!({ "value": value }));
    assert_eq!(api.send(put).await.0, StatusCode::NO_CONTENT);
}

/// A ready workspace of `api`'s user, cloned from `source`, that runs `agent`.
async fn agent_workspace(
    api: &common::Api,
    source: &berth_testkit::SourceRepo,
    name: &str,
    agent: &str,
) -> String {
    let workspace = api.create_settled(json!({ "repo": source.url(), "name": name, "agent": agent })).await;
    workspace["id"].as_str().unwrap().to_owned()
}

/// Every request the provider had came with `key`, and there was one at least.
fn provider_saw_only(provider: &ModelStandIn, key: &str) {
    let keys = provider.keys();
    assert!(!keys.is_empty() && keys.iter().all(|seen| seen == key), "the provider saw {keys:?}");
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn attach(api: &common::Api, session: &str) -> Socket {
    let url = format!("{}/api/sessions/{session}/live", api.base.replace("http://", "ws://"));
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {}", api.token().unwrap()).parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(api.base.trim_start_matches("http://")).await.unwrap();
    tokio_tungstenite::client_async(request, tcp).await.unwrap().0
}

async fn send(socket: &mut Socket, command: Value) {
    use futures::SinkExt;
    socket.send(tokio_tungstenite::tungstenite::Message::text(command.to_string())).await.unwrap();
}

/// The next frame that `matches` (bounded in time: a real agent starts in seconds).
async fn frame_where(socket: &mut Socket, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let message = socket.next().await.expect("the channel is open").unwrap();
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                let frame: Value = serde_json::from_str(&text).unwrap();
                eprintln!("frame: {}", text.chars().take(300).collect::<String>());
                if matches(&frame) {
                    return frame;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no frame: {what}"))
}

#[tokio::test]
async fn gemini_cli_runs_a_command_the_person_allowed_against_a_stand_in_of_its_provider() {
    let Some(gemini) = berth_testkit::installed_agent("gemini", "gemini") else { return };
    let provider = ModelStandIn::gemini().await;
    let server = TestServer::start_with(|config| {
        let entry = config.agents.iter_mut().find(|agent| agent.name == "gemini").unwrap();
        entry.command = Some(berth_core::agents::command_line(&gemini.to_string_lossy(), &["--acp"]));
        entry.env = vec![("GOOGLE_GEMINI_BASE_URL".into(), provider.url.clone())];
    })
    .await;
    let source = berth_testkit::SourceRepo::new();
    let alice = server.member("alice").await;
    set_secret(&alice, "GEMINI_API_KEY", "gm-alice-9").await;
    let id = agent_workspace(&alice, &source, "with-gemini", "gemini").await;
    a_turn_runs_the_command_once_allowed(&alice, &server, &id).await;
    provider_saw_only(&provider, "gm-alice-9");
    server.stop().await;
}

#[tokio::test]
async fn codex_runs_a_command_each_person_allowed_with_their_own_key() {
    let Some(codex) = berth_testkit::installed_agent("codex", "codex-acp") else { return };
    let provider = ModelStandIn::openai().await;
    // Codex reads its provider from its configuration (CODEX_CONFIG, JSON); in the
    // workspace-write mode the person, not a reviewing model, answers its questions.
    let codex_config = json!({
        "model": "stand-in",
        "model_provider": "stand-in",
        "model_providers": { "stand-in": { "name": "stand-in", "base_url": format!("{}/v1", provider.url),
            "env_key": "OPENAI_API_KEY", "wire_api": "responses", "supports_websockets": false } },
    });
    let server = TestServer::start_with(|config| {
        let entry = config.agents.iter_mut().find(|agent| agent.name == "codex").unwrap();
        entry.command = Some(berth_core::agents::command_line(&codex.to_string_lossy(), &[]));
        entry.env = vec![
            ("CODEX_CONFIG".into(), codex_config.to_string()),
            ("INITIAL_AGENT_MODE".into(), "workspace-write".into()),
        ];
    })
    .await;
    let source = berth_testkit::SourceRepo::new();
    let mut seen_before = 0;
    for (person, key) in [("alice", "sk-alice-3"), ("bob", "sk-bob-5")] {
        let api = server.member(person).await;
        set_secret(&api, "OPENAI_API_KEY", key).await;
        let id = agent_workspace(&api, &source, "with-codex", "codex").await;
        a_turn_runs_the_command_once_allowed(&api, &server, &id).await;
        // Each person's turn reached the provider with their own key.
        let keys = provider.keys().split_off(seen_before);
        assert!(!keys.is_empty() && keys.iter().all(|seen| seen == key), "{person}'s turn sent {keys:?}");
        seen_before += keys.len();
    }
    server.stop().await;
}

#[tokio::test]
async fn claude_code_under_bubblewrap_reaches_its_provider_through_egress_allow() {
    let Some(claude) = berth_testkit::installed_agent("claude", "claude-agent-acp") else { return };
    let tools = ["bwrap", "slirp4netns", "nft", "ip"];
    if !tools.iter().all(|tool| berth_testkit::have_program(tool, "scripts/test.sh"))
        || !berth_testkit::can_make_namespaces()
    {
        return;
    }
    // The provider answers on a test host's private address, which an outbound sandbox
    // reaches only because `egress_allow` names it.
    let host = berth_testkit::TestHost::start();
    let provider = ModelStandIn::anthropic_on(host.listen(&host.private_host, 0)).await;
    let allow = format!("{}/32", host.private_host);
    let server = TestServer::start_with(|config| {
        config.isolation = berth_sandbox::Isolation::Bwrap;
        config.network = berth_sandbox::Network::Outbound;
        config.egress_allow = berth_sandbox::egress::parse_allow_list(&allow).unwrap();
        let entry = config.agents.iter_mut().find(|agent| agent.name == "claude").unwrap();
        entry.env = vec![("ANTHROPIC_BASE_URL".into(), provider.url.clone())];
    })
    .await;
    claude_turn_in_a_sandbox(server, &claude, &provider).await;
}

#[tokio::test]
async fn claude_code_runs_in_a_docker_container_whose_image_has_node() {
    let Some(claude) = berth_testkit::installed_agent("claude", "claude-agent-acp") else { return };
    if !berth_testkit::have_docker() {
        return;
    }
    let image = berth_testkit::docker_test_image_with_node(&std::env::current_exe().unwrap());
    let provider = ModelStandIn::anthropic().await;
    let server = TestServer::start_with(|config| {
        config.sandbox_driver = berth_engine::config::SandboxDriverKind::Docker;
        config.image = image;
        // The stand-in is on this machine's loopback.
        config.network = berth_sandbox::Network::Host;
        let entry = config.agents.iter_mut().find(|agent| agent.name == "claude").unwrap();
        entry.env = vec![("ANTHROPIC_BASE_URL".into(), provider.url.clone())];
    })
    .await;
    claude_turn_in_a_sandbox(server, &claude, &provider).await;
}

/// Installs Claude where berth installs agents (the only place a sandbox sees them;
/// hard links to the test script's copy), and runs an allowed turn in `server`'s
/// sandbox against `provider` with the person's own key.
async fn claude_turn_in_a_sandbox(server: TestServer, claude: &std::path::Path, provider: &ModelStandIn) {
    let package = claude.ancestors().nth(3).unwrap();
    let installed = server.data.path().join("agents/claude");
    let copied = std::process::Command::new("cp").arg("-al").arg(package).arg(&installed).status().unwrap();
    assert!(copied.success(), "cp -al {} {}", package.display(), installed.display());

    let source = berth_testkit::claude_project();
    let alice = server.member("alice").await;
    set_secret(&alice, "ANTHROPIC_API_KEY", "sk-ant-alice-sandboxed").await;
    let id = agent_workspace(&alice, &source, "sandboxed", "claude").await;
    a_turn_runs_the_command_once_allowed(&alice, &server, &id).await;
    provider_saw_only(provider, "sk-ant-alice-sandboxed");
    server.stop().await;
}

#[tokio::test]
async fn a_real_agent_that_cannot_start_says_why_in_the_conversation() {
    let Some(claude) = berth_testkit::installed_agent("claude", "claude-agent-acp") else { return };
    // Node refuses to start the adapter: a module it must load first is missing.
    let server = TestServer::start_with(|config| {
        let entry = config.agents.iter_mut().find(|agent| agent.name == "claude").unwrap();
        entry.command = Some(berth_core::agents::command_line(&claude.to_string_lossy(), &[]));
        entry.env = vec![("NODE_OPTIONS".into(), "--require=/nonexistent/berth-missing-module.js".into())];
    })
    .await;
    let source = berth_testkit::SourceRepo::new();
    let alice = server.member("alice").await;
    set_secret(&alice, "ANTHROPIC_API_KEY", "sk-ant-alice-1").await;
    let id = agent_workspace(&alice, &source, "broken", "claude").await;
    let (status, opened) = alice.open(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let session = opened["session"]["id"].as_str().unwrap().to_owned();
    let mut socket = attach(&alice, &session).await;
    let failed = frame_where(&mut socket, "the agent's failure", |frame| {
        frame["type"] == "event" && frame["event"]["data"]["code"] == "agent_error"
    })
    .await;
    let data = &failed["event"]["data"];
    assert_eq!(data["reason"], "agent_exited", "{data}");
    let tail = data["stderr_tail"].as_str().unwrap_or_default();
    assert!(tail.contains("berth-missing-module.js"), "the conversation does not say why: {data}");
    server.stop().await;
}
