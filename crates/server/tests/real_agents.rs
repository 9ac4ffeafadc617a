//! A real coding agent through berth: Claude Code's ACP adapter (npm
//! `@agentclientprotocol/claude-agent-acp`, installed by `berth agents install claude`
//! into `BERTH_TEST_AGENTS`, which `scripts/test.sh` fills and keeps between runs),
//! against a loopback stand-in of Anthropic's Messages API written here: streamed text
//! and one tool call. A prompt → the agent asks to run a command → berth's question →
//! allowed → the command's file appears in the checkout → the turn ends. The stand-in
//! sees the person's own key; a person without one is told which to add, and nothing
//! starts.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::Response;
use berth_testkit::SourceRepo;
use common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the test script installed the real agents (`<dir>/<name>/node_modules/.bin/…`).
fn agents_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("BERTH_TEST_AGENTS").map(PathBuf::from);
    let installed = dir.filter(|dir| dir.join("claude/node_modules/.bin/claude-agent-acp").exists());
    if installed.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "BERTH_TEST_AGENTS has no claude-agent-acp: scripts/test.sh installs it"
        );
        eprintln!("skipped: no real agents installed (run scripts/test.sh, which installs them)");
    }
    installed
}

/// What the stand-in saw: the API keys of each request.
#[derive(Default)]
struct Seen {
    keys: Vec<String>,
}

/// Anthropic's Messages API, as much as Claude Code uses: a first turn asks to run one
/// command (`Bash`), the turn after the command's result says it is done. Streamed as
/// server-sent events when asked to, else one JSON message.
async fn messages(seen: Arc<Mutex<Seen>>, headers: HeaderMap, body: String) -> Response {
    let key = headers.get("x-api-key").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    seen.lock().unwrap().keys.push(key);
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let answered = body.contains("\"tool_result\"");
    let asks_for_tools =
        request["tools"].as_array().is_some_and(|tools| tools.iter().any(|tool| tool["name"] == "Bash"));
    let (text, tool) = if answered || !asks_for_tools {
        ("The file is made.", None)
    } else {
        (
            "I will make the file.",
            Some(
                json!({ "command": "echo made-by-claude > made-by-claude.txt", "description": "Make the file" }),
            ),
        )
    };
    let model = request["model"].as_str().unwrap_or("claude-stand-in").to_owned();
    if request["stream"] != true {
        let mut content = vec![json!({ "type": "text", "text": text })];
        if let Some(input) = &tool {
            content
                .push(json!({ "type": "tool_use", "id": "toolu_berth_1", "name": "Bash", "input": input }));
        }
        let message = json!({ "id": "msg_berth", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": if tool.is_some() { "tool_use" } else { "end_turn" },
            "stop_sequence": null, "usage": { "input_tokens": 10, "output_tokens": 10 } });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(message.to_string()))
            .unwrap();
    }
    let mut events = vec![
        (
            "message_start",
            json!({ "type": "message_start", "message": { "id": "msg_berth", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": 10, "output_tokens": 1 } } }),
        ),
        (
            "content_block_start",
            json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
        ),
        (
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": text } }),
        ),
        ("content_block_stop", json!({ "type": "content_block_stop", "index": 0 })),
    ];
    if let Some(input) = &tool {
        events.extend([
            ("content_block_start", json!({ "type": "content_block_start", "index": 1,
                "content_block": { "type": "tool_use", "id": "toolu_berth_1", "name": "Bash", "input": {} } })),
            ("content_block_delta", json!({ "type": "content_block_delta", "index": 1,
                "delta": { "type": "input_json_delta", "partial_json": input.to_string() } })),
            ("content_block_stop", json!({ "type": "content_block_stop", "index": 1 })),
        ]);
    }
    events.extend([
        ("message_delta", json!({ "type": "message_delta",
            "delta": { "stop_reason": if tool.is_some() { "tool_use" } else { "end_turn" }, "stop_sequence": null },
            "usage": { "output_tokens": 12 } })),
        ("message_stop", json!({ "type": "message_stop" })),
    ]);
    let stream: String =
        events.into_iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect();
    Response::builder().header("content-type", "text/event-stream").body(Body::from(stream)).unwrap()
}

/// The stand-in on a loopback port: its address and what it saw.
async fn anthropic_stand_in() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let for_route = Arc::clone(&seen);
    let app = axum::Router::new()
        .route(
            "/v1/messages",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                messages(Arc::clone(&for_route), headers, body)
            }),
        )
        .fallback(|| async {
            (AxumStatus::NOT_FOUND, "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\"}}")
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, seen)
}

#[tokio::test]
async fn claude_code_runs_a_command_the_person_allowed_against_a_stand_in_of_its_provider() {
    let Some(agents) = agents_dir() else { return };
    let (provider, seen) = anthropic_stand_in().await;
    let claude = agents.join("claude/node_modules/.bin/claude-agent-acp");
    let server = TestServer::start_with(|config| {
        let entry = config.agents.iter_mut().find(|agent| agent.name == "claude").unwrap();
        entry.command = Some(berth_core::agents::command_line(&claude.to_string_lossy(), &[]));
        entry.env = vec![("ANTHROPIC_BASE_URL".into(), provider.clone())];
    })
    .await;
    // The project asks before each command (Claude Code's `default` mode), so the
    // person's answer is what lets it run.
    let source = SourceRepo::new();
    std::fs::create_dir_all(source.path.join(".claude")).unwrap();
    std::fs::write(
        source.path.join(".claude/settings.json"),
        r#"{"permissions": {"defaultMode": "default"}}"#,
    )
    .unwrap();
    berth_testkit::git(&source.path, &["add", ".claude"]);
    berth_testkit::git(&source.path, &["commit", "--quiet", "-m", "ask first"]);
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

    let (status, opened) = alice.open(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let session = opened["session"]["id"].as_str().unwrap().to_owned();
    let mut socket = attach(&alice, &session).await;
    frame_where(&mut socket, "the agent is ready", |frame| {
        frame["type"] == "event" && frame["event"]["data"]["code"] == "agent_ready"
    })
    .await;
    send(&mut socket, json!({ "type": "prompt", "text": "Make the file made-by-claude.txt" })).await;
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
    let made = std::fs::read_to_string(server.checkout(&id).join("made-by-claude.txt")).unwrap();
    assert_eq!(made, "made-by-claude\n");
    let keys = seen.lock().unwrap().keys.clone();
    assert!(!keys.is_empty() && keys.iter().all(|key| key == "sk-ant-alice-7"), "the provider saw {keys:?}");
    server.stop().await;
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
