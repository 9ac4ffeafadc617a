//! Real coding agents through berth: Claude Code's ACP adapter and Gemini CLI (npm
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
    let workspace =
        alice.create_settled(json!({ "repo": source.url(), "name": "with-claude", "agent": "claude" })).await;
    let id = workspace["id"].as_str().unwrap().to_owned();

    // No key yet: nothing starts, and the answer says which to add.
    let (status, refused) = alice.open(&id).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str(), refused["error"]["missing"].clone()),
        (StatusCode::CONFLICT, Some("agent_needs_secrets"), json!(["ANTHROPIC_API_KEY"])),
        "{refused}"
    );
    let put = alice
        .request(reqwest::Method::PUT, "/api/secrets/ANTHROPIC_API_KEY")
        .json(&json!({ "value": "sk-ant-alice-7" }));
    assert_eq!(alice.send(put).await.0, StatusCode::NO_CONTENT);

    a_turn_runs_the_command_once_allowed(&alice, &server, &id).await;
    let keys = provider.keys();
    assert!(!keys.is_empty() && keys.iter().all(|key| key == "sk-ant-alice-7"), "the provider saw {keys:?}");
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
    let put = alice
        .request(reqwest::Method::PUT, "/api/secrets/GEMINI_API_KEY")
        .json(&json!({ "value": "gm-alice-9" }));
    assert_eq!(alice.send(put).await.0, StatusCode::NO_CONTENT);
    let workspace =
        alice.create_settled(json!({ "repo": source.url(), "name": "with-gemini", "agent": "gemini" })).await;
    let id = workspace["id"].as_str().unwrap().to_owned();
    a_turn_runs_the_command_once_allowed(&alice, &server, &id).await;
    let keys = provider.keys();
    assert!(!keys.is_empty() && keys.iter().all(|key| key == "gm-alice-9"), "the provider saw {keys:?}");
    server.stop().await;
}
