//! Loopback stand-ins of the model providers' APIs, for tests that run the real coding
//! agents through berth: each answers a first turn with streamed text and one tool call
//! (a command), and the turn after the tool's result with text, and records the API key
//! of every request.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The command the stand-ins ask the agent to run, and the file it makes.
pub const STAND_IN_COMMAND: &str = "echo made-by-the-agent > made-by-the-agent.txt";
pub const STAND_IN_FILE: &str = "made-by-the-agent.txt";

/// A stand-in running on a loopback port.
pub struct ModelStandIn {
    /// `http://127.0.0.1:PORT`: the provider's base URL for the agent.
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl ModelStandIn {
    /// The API keys of the requests so far, in order.
    pub fn keys(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Anthropic's Messages API (`POST /v1/messages`), as much as Claude Code uses: the
    /// first turn runs [`STAND_IN_COMMAND`] with its `Bash` tool; the turn after the
    /// result says it is done. Server-sent events when asked to stream, else one message.
    pub async fn anthropic() -> ModelStandIn {
        ModelStandIn::anthropic_on(loopback()).await
    }

    /// [`ModelStandIn::anthropic`] on `listener` (a test host's address, say).
    pub async fn anthropic_on(listener: std::net::TcpListener) -> ModelStandIn {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let for_route = Arc::clone(&seen);
        let app = axum::Router::new()
            .route(
                "/v1/messages",
                axum::routing::post(move |headers: HeaderMap, body: String| {
                    anthropic_messages(Arc::clone(&for_route), headers, body)
                }),
            )
            .fallback(|| async {
                (StatusCode::NOT_FOUND, "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\"}}")
            });
        serve(listener, app, seen)
    }
}

/// A listener on a free loopback port.
fn loopback() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port")
}

/// Serves `app` on `listener` for as long as the test runs.
fn serve(listener: std::net::TcpListener, app: axum::Router, seen: Arc<Mutex<Vec<String>>>) -> ModelStandIn {
    listener.set_nonblocking(true).expect("a non-blocking listener");
    let listener = tokio::net::TcpListener::from_std(listener).expect("a listener for tokio");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    ModelStandIn { url, seen }
}

impl ModelStandIn {
    /// Google's Gemini API (`POST /v1beta/models/MODEL:streamGenerateContent?alt=sse`,
    /// `:generateContent`, `:countTokens`), as much as Gemini CLI uses: the first turn
    /// runs [`STAND_IN_COMMAND`] with its `run_shell_command` tool; the turn after the
    /// function's response says it is done.
    pub async fn gemini() -> ModelStandIn {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let for_route = Arc::clone(&seen);
        let app =
            axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
                gemini_call(Arc::clone(&for_route), uri, headers, body)
            });
        serve(loopback(), app, seen)
    }

    /// OpenAI's Responses API (`POST /v1/responses`, streamed), as much as Codex uses:
    /// the first turn runs [`STAND_IN_COMMAND`] with its `exec_command` tool, asking to
    /// run it outside Codex's own sandbox (berth's sandbox is the one that counts), which
    /// makes Codex ask the person; the turn after the output says it is done.
    pub async fn openai() -> ModelStandIn {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let for_route = Arc::clone(&seen);
        let app = axum::Router::new().route(
            "/v1/responses",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                openai_responses(Arc::clone(&for_route), headers, body)
            }),
        );
        serve(loopback(), app, seen)
    }
}

async fn openai_responses(seen: Arc<Mutex<Vec<String>>>, headers: HeaderMap, body: String) -> Response {
    let key = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(key);
    let answered = body.contains("\"function_call_output\"");
    let offers_exec = body.contains("\"exec_command\"");
    let text = if answered || !offers_exec { "The file is made." } else { "I will make the file." };
    let mut events = vec![
        json!({ "type": "response.created", "response": { "id": "resp_berth" } }),
        json!({ "type": "response.output_text.delta", "item_id": "msg_berth", "output_index": 0,
            "content_index": 0, "delta": text }),
        json!({ "type": "response.output_item.done", "output_index": 0, "item": { "type": "message",
            "id": "msg_berth", "role": "assistant", "content": [{ "type": "output_text", "text": text }] } }),
    ];
    if !answered && offers_exec {
        let arguments = json!({ "cmd": STAND_IN_COMMAND, "sandbox_permissions": "require_escalated",
            "justification": "Make the file" });
        events.push(json!({ "type": "response.output_item.done", "output_index": 1, "item": {
            "type": "function_call", "id": "fc_berth", "call_id": "call_berth", "name": "exec_command",
            "arguments": arguments.to_string() } }));
    }
    events.push(json!({ "type": "response.completed", "response": { "id": "resp_berth", "usage": {
        "input_tokens": 10, "input_tokens_details": null, "output_tokens": 10,
        "output_tokens_details": null, "total_tokens": 20 } } }));
    reply(
        "text/event-stream",
        events
            .iter()
            .map(|event| format!("event: {}\ndata: {event}\n\n", event["type"].as_str().unwrap_or("")))
            .collect(),
    )
}

async fn gemini_call(
    seen: Arc<Mutex<Vec<String>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let path = uri.path().to_owned();
    if path.ends_with(":countTokens") {
        return reply("application/json", json!({ "totalTokens": 10 }).to_string());
    }
    if !path.contains(":generateContent") && !path.contains(":streamGenerateContent") {
        let mut response =
            reply("application/json", json!({ "error": { "code": 404, "status": "NOT_FOUND" } }).to_string());
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    }
    let key =
        headers.get("x-goog-api-key").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(key);
    let answered = body.contains("\"functionResponse\"");
    let offers_shell = body.contains("\"run_shell_command\"");
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut parts = Vec::new();
    if request["generationConfig"]["responseMimeType"] == "application/json" {
        // The CLI's own questions (which model to route to) want JSON: the first choice.
        parts.push(
            json!({ "text": json!({ "reasoning": "a stand-in", "model_choice": "flash" }).to_string() }),
        );
    } else if answered || !offers_shell {
        parts.push(json!({ "text": "The file is made." }));
    } else {
        parts.push(json!({ "text": "I will make the file." }));
        parts.push(json!({ "functionCall": { "name": "run_shell_command",
            "args": { "command": STAND_IN_COMMAND, "description": "Make the file" } } }));
    }
    let answer = json!({
        "candidates": [{ "content": { "role": "model", "parts": parts }, "finishReason": "STOP", "index": 0 }],
        "usageMetadata": { "promptTokenCount": 10, "candidatesTokenCount": 10, "totalTokenCount": 20 },
        "modelVersion": "gemini-stand-in",
    });
    if path.contains(":streamGenerateContent") {
        return reply("text/event-stream", format!("data: {answer}\r\n\r\n"));
    }
    reply("application/json", answer.to_string())
}

async fn anthropic_messages(seen: Arc<Mutex<Vec<String>>>, headers: HeaderMap, body: String) -> Response {
    let key = headers.get("x-api-key").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(key);
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let answered = body.contains("\"tool_result\"");
    let offers_bash =
        request["tools"].as_array().is_some_and(|tools| tools.iter().any(|tool| tool["name"] == "Bash"));
    let (text, tool) = if answered || !offers_bash {
        ("The file is made.", None)
    } else {
        (
            "I will make the file.",
            Some(json!({ "command": STAND_IN_COMMAND, "description": "Make the file" })),
        )
    };
    let model = request["model"].as_str().unwrap_or("claude-stand-in").to_owned();
    let stop_reason = if tool.is_some() { "tool_use" } else { "end_turn" };
    if request["stream"] != true {
        let mut content = vec![json!({ "type": "text", "text": text })];
        if let Some(input) = &tool {
            content
                .push(json!({ "type": "tool_use", "id": "toolu_berth_1", "name": "Bash", "input": input }));
        }
        let message = json!({ "id": "msg_berth", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": { "input_tokens": 10, "output_tokens": 10 } });
        return reply("application/json", message.to_string());
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
            json!({ "type": "content_block_start", "index": 0,
            "content_block": { "type": "text", "text": "" } }),
        ),
        (
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0,
            "delta": { "type": "text_delta", "text": text } }),
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
            "delta": { "stop_reason": stop_reason, "stop_sequence": null }, "usage": { "output_tokens": 12 } })),
        ("message_stop", json!({ "type": "message_stop" })),
    ]);
    reply(
        "text/event-stream",
        events.into_iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect(),
    )
}

fn reply(content_type: &str, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}

/// The program of the real agent `name` (`bin` in its package) that `scripts/test.sh`
/// installed with `berth agents install` into `BERTH_TEST_AGENTS`; `None`, said why,
/// where it is not — which fails in CI.
pub fn installed_agent(name: &str, bin: &str) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("BERTH_TEST_AGENTS").map(std::path::PathBuf::from);
    let program =
        dir.map(|dir| dir.join(name).join("node_modules/.bin").join(bin)).filter(|path| path.exists());
    if program.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "BERTH_TEST_AGENTS has no {bin}: scripts/test.sh installs it"
        );
        eprintln!("skipped: the real agent {name} is not installed (scripts/test.sh installs it)");
    }
    program
}

/// A repository whose project settings make Claude Code ask before each command (its
/// `default` mode), so a person's answer is what lets a command run.
pub fn claude_project() -> crate::SourceRepo {
    let source = crate::SourceRepo::new();
    std::fs::create_dir_all(source.path.join(".claude")).unwrap();
    std::fs::write(
        source.path.join(".claude/settings.json"),
        r#"{"permissions": {"defaultMode": "default"}}"#,
    )
    .unwrap();
    crate::git(&source.path, &["add", ".claude"]);
    crate::git(&source.path, &["commit", "--quiet", "-m", "ask first"]);
    source
}
