//! The live channel end to end: a real server, the real built-in agent (`berth agent`)
//! in the sandbox, a WebSocket client. Prompts ask questions, answers run commands,
//! questions survive a dropped connection within grace, and the whole history comes back
//! after close and reopen with the agent's context resumed.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use berth_engine::config::ResumeContext;
use berth_engine::{Config, Engine};
use berth_server::testing::TestServer;
use berth_testkit::SourceRepo;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TOKEN: &str = "berth_live_test_admin_token_000000";

struct Server {
    _data: tempfile::TempDir,
    base: String,
    http: reqwest::Client,
    server: TestServer,
    engine: std::sync::Arc<Engine>,
}

async fn start() -> Server {
    start_with(|_| {}).await
}

async fn start_with(adjust: impl FnOnce(&mut Config)) -> Server {
    start_in(tempfile::tempdir().unwrap(), adjust).await
}

/// A server on the data directory `data` (a restart when an earlier one used it).
async fn start_in(data: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config::for_data_dir(data.path());
    config.admin_token = Some(TOKEN.into());
    config.agent_command = Some(format!("'{}' agent", env!("CARGO_BIN_EXE_berth")));
    adjust(&mut config);
    let server = TestServer::start(config, None).await.unwrap();
    let (base, engine) = (server.url.clone(), std::sync::Arc::clone(&server.engine));
    Server { _data: data, base, http: reqwest::Client::new(), server, engine }
}

impl Server {
    /// Shuts the server down: every session ends and its agent process stops.
    async fn stop(self) {
        self.server.stop().await.unwrap();
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> Value {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn ready_workspace(&self, repo: &str) -> String {
        self.ready_workspace_from(json!({ "repo": repo })).await
    }

    async fn ready_workspace_from(&self, body: Value) -> String {
        let created = self
            .http
            .post(format!("{}/api/workspaces", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        for _ in 0..2000 {
            if self.call(reqwest::Method::GET, &format!("/api/workspaces/{id}")).await["state"] == "ready" {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("workspace not ready");
    }

    async fn open(&self, workspace: &str) -> String {
        let opened = self.call(reqwest::Method::POST, &format!("/api/workspaces/{workspace}/open")).await;
        opened["session"]["id"].as_str().unwrap().to_owned()
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn attach(server: &Server, session: &str, after: i64) -> Socket {
    let url = format!("{}/api/sessions/{session}/live?after={after}", server.base.replace("http", "ws"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// A workspace of a fresh repository opened on `server`, with a live client attached
/// once its agent is ready.
async fn ready_session(server: Server) -> (SourceRepo, Server, String, Socket) {
    let source = SourceRepo::new();
    let workspace = server.ready_workspace(&source.url()).await;
    let session = server.open(&workspace).await;
    let mut socket = attach(&server, &session, 0).await;
    frame_where(&mut socket, "the agent is ready", is_system("agent_ready")).await;
    (source, server, session, socket)
}

async fn send(socket: &mut Socket, command: Value) {
    socket.send(Message::Text(command.to_string().into())).await.unwrap();
}

/// The next frame that `matches`, skipping the others (bounded in time).
async fn frame_where(socket: &mut Socket, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let message = socket.next().await.expect("the channel is open").unwrap();
            if let Message::Text(text) = message {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if matches(&frame) {
                    return frame;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no frame: {what}"))
}

fn is_event(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |frame| frame["type"] == "event" && frame["event"]["kind"] == kind
}

fn is_system(code: &'static str) -> impl Fn(&Value) -> bool {
    move |frame| {
        frame["type"] == "event"
            && frame["event"]["kind"] == "system"
            && frame["event"]["data"]["code"] == code
    }
}

async fn question(socket: &mut Socket) -> Value {
    frame_where(socket, "a question", |frame| frame["type"] == "question").await["question"].clone()
}

#[tokio::test]
async fn prompts_questions_answers_reconnects_and_history() {
    prompts_questions_answers_reconnects_and_history_with(ResumeContext::Auto).await;
}

/// The manual's default: a returning user gets a fresh agent, which keeps no context.
#[tokio::test]
async fn a_returning_user_gets_a_fresh_agent_by_default() {
    prompts_questions_answers_reconnects_and_history_with(ResumeContext::Never).await;
}

async fn prompts_questions_answers_reconnects_and_history_with(resume: ResumeContext) {
    let source = SourceRepo::new();
    let server = start_with(|config| config.resume_context = resume).await;
    let workspace = server.ready_workspace(&source.url()).await;
    let session = server.open(&workspace).await;
    let checkout_status = format!("/api/workspaces/{workspace}/git");
    let mut socket = attach(&server, &session, 0).await;
    frame_where(&mut socket, "the agent is ready", is_system("agent_ready")).await;

    // Allowed: the command runs and the turn ends.
    send(&mut socket, json!({ "type": "prompt", "text": "$ echo hi > f.txt" })).await;
    let asked = question(&mut socket).await;
    let options: Vec<&str> =
        asked["options"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(options, ["allow_once", "allow_always", "reject_once"]);
    send(&mut socket, json!({ "type": "prompt", "text": "$ echo again" })).await;
    let refused = frame_where(&mut socket, "a refusal", |frame| frame["type"] == "error").await;
    assert_eq!(refused["error"]["code"], "turn_in_progress");
    send(&mut socket, json!({ "type": "answer", "question_id": asked["id"], "option_id": "allow_once" }))
        .await;
    let ended = frame_where(&mut socket, "the turn end", is_event("turn_end")).await;
    assert_eq!(ended["event"]["data"]["stop_reason"], "end_turn");
    let git = server.call(reqwest::Method::GET, &checkout_status).await;
    assert_eq!(git["uncommitted"], json!(["f.txt"]));
    send(&mut socket, json!({ "type": "answer", "question_id": asked["id"], "option_id": "allow_once" }))
        .await;
    let again = frame_where(&mut socket, "a second answer refused", |frame| frame["type"] == "error").await;
    assert_eq!(again["error"]["code"], "question_not_pending");

    // Rejected: nothing runs.
    send(&mut socket, json!({ "type": "prompt", "text": "$ touch rejected.txt" })).await;
    let asked = question(&mut socket).await;
    send(&mut socket, json!({ "type": "answer", "question_id": asked["id"], "option_id": "reject_once" }))
        .await;
    frame_where(&mut socket, "the turn end", is_event("turn_end")).await;
    assert_eq!(server.call(reqwest::Method::GET, &checkout_status).await["uncommitted"], json!(["f.txt"]));

    // A dropped connection while a question waits: the session waits in grace, and the
    // question comes back on reconnect.
    send(&mut socket, json!({ "type": "prompt", "text": "$ echo later > later.txt" })).await;
    // The question is stored as an event first, then sent as a question.
    let last_seq =
        frame_where(&mut socket, "the question event", is_event("question")).await["event"]["seq"].as_i64();
    let waiting = question(&mut socket).await;
    drop(socket);
    let mut state = Value::Null;
    for _ in 0..1000 {
        state = server.call(reqwest::Method::GET, &format!("/api/sessions/{session}")).await;
        if state["state"] == "disconnected" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(state["state"], "disconnected", "{state}");
    assert!(state["grace_expires_at"].is_string());
    let mut socket = attach(&server, &session, last_seq.unwrap_or(0)).await;
    let again = question(&mut socket).await;
    assert_eq!(again["id"], waiting["id"]);
    send(&mut socket, json!({ "type": "answer", "question_id": again["id"], "option_id": "allow_once" }))
        .await;
    frame_where(&mut socket, "the turn end", is_event("turn_end")).await;
    assert_eq!(
        server.call(reqwest::Method::GET, &format!("/api/sessions/{session}")).await["state"],
        "active"
    );

    // Close and reopen: the whole history comes back, and the agent remembers.
    server.call(reqwest::Method::POST, &format!("/api/sessions/{session}/close")).await;
    let history =
        server.call(reqwest::Method::GET, &format!("/api/workspaces/{workspace}/events?limit=5000")).await;
    let events = history["events"].as_array().unwrap().clone();
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "seq grows by one");
    let reopened = server.open(&workspace).await;
    let mut socket = attach(&server, &reopened, 0).await;
    let mut replayed = Vec::new();
    for _ in 0..events.len() {
        replayed.push(
            frame_where(&mut socket, "history", |frame| frame["type"] == "event").await["event"].clone(),
        );
    }
    assert_eq!(replayed, events, "the live channel replays the whole history first");
    // The new session's own system events up to the agent being ready.
    let mut codes = Vec::new();
    while codes.last().map(String::as_str) != Some("agent_ready") {
        let frame = frame_where(&mut socket, "the agent ready", is_system_event).await;
        codes.push(frame["event"]["data"]["code"].as_str().unwrap_or_default().to_owned());
    }
    let resumed = codes.iter().any(|code| code == "agent_context_resumed");
    assert_eq!(resumed, resume == ResumeContext::Auto, "{resume:?}: {codes:?}");
    server.stop().await;
}

fn is_system_event(frame: &Value) -> bool {
    frame["type"] == "event" && frame["event"]["kind"] == "system"
}

#[tokio::test]
async fn cancel_kills_the_running_command_and_ends_the_turn_cancelled() {
    let (_source, server, session, mut socket) = ready_session(start().await).await;
    send(&mut socket, json!({ "type": "prompt", "text": "$ echo $$ > .berth/sleep.pid; exec sleep 60" }))
        .await;
    let asked = question(&mut socket).await;
    send(&mut socket, json!({ "type": "answer", "question_id": asked["id"], "option_id": "allow_once" }))
        .await;
    frame_where(&mut socket, "the command running", |frame| {
        frame["type"] == "event"
            && frame["event"]["kind"] == "tool_call_update"
            && frame["event"]["data"]["status"] == "in_progress"
    })
    .await;
    send(&mut socket, json!({ "type": "cancel" })).await;
    let ended = frame_where(&mut socket, "the turn end", is_event("turn_end")).await;
    assert_eq!(ended["event"]["data"]["stop_reason"], "cancelled");
    let session_state = server.call(reqwest::Method::GET, &format!("/api/sessions/{session}")).await;
    assert_eq!(session_state["agent_running"], false);
    server.stop().await;
}

#[tokio::test]
async fn an_agent_that_crashes_mid_turn_ends_the_session_failed_with_agent_error() {
    let (_source, server, _session, mut socket) = ready_session(start().await).await;
    // The command kills its own agent: the parent of the shell that runs it.
    send(&mut socket, json!({ "type": "prompt", "text": "$ kill -9 $PPID" })).await;
    let asked = question(&mut socket).await;
    send(&mut socket, json!({ "type": "answer", "question_id": asked["id"], "option_id": "allow_once" }))
        .await;
    // The turn fails with the connection, and the sandbox's exit is reported with how the
    // agent died: its shell reports a killed agent as status 137 (128 + SIGKILL).
    let exit = frame_where(&mut socket, "the agent's exit", |frame| {
        let message = frame["event"]["data"]["message"].as_str().unwrap_or_default();
        is_system("agent_error")(frame) && (message.contains("137") || message.contains("signal 9"))
    })
    .await;
    assert!(exit["event"]["data"]["stderr_tail"].is_string(), "{exit}");
    let ended = frame_where(&mut socket, "the session end", |frame| {
        frame["type"] == "session" && frame["session"]["state"] == "ended"
    })
    .await;
    assert_eq!(ended["session"]["end_reason"], "failed");
    server.stop().await;
}

/// A third-party ACP agent, `elizacp` (crates.io), answers a prompt through berth. The
/// test script installs it; without it the test fails in CI and is skipped locally.
#[tokio::test]
async fn a_third_party_acp_agent_answers_through_berth() {
    let installed =
        std::process::Command::new("elizacp").arg("--version").output().is_ok_and(|o| o.status.success());
    if !installed {
        assert!(std::env::var("CI").is_err(), "elizacp is not installed; scripts/test.sh installs it");
        eprintln!("skipped: elizacp is not installed (cargo install elizacp)");
        return;
    }
    let source = SourceRepo::new();
    let server = start().await;
    // The workspace's own agent command wins over the installation's.
    let body = json!({ "repo": source.url(), "name": "eliza", "agent": "elizacp --deterministic acp" });
    let workspace = server.ready_workspace_from(body).await;
    let session = server.open(&workspace).await;
    let mut socket = attach(&server, &session, 0).await;
    frame_where(&mut socket, "elizacp is ready", is_system("agent_ready")).await;
    send(&mut socket, json!({ "type": "prompt", "text": "Hello, I feel a little tired today." })).await;
    let reply = frame_where(&mut socket, "eliza's reply", is_event("agent_message")).await;
    let text = reply["event"]["data"]["content"]["text"].as_str().unwrap_or_default().to_owned();
    assert!(!text.trim().is_empty(), "{reply}");
    let ended = frame_where(&mut socket, "the turn end", is_event("turn_end")).await;
    assert_eq!(ended["event"]["data"]["stop_reason"], "end_turn");
    server.stop().await;
}

#[tokio::test]
async fn a_turn_in_which_the_agent_goes_silent_is_cancelled() {
    let silent_after = |config: &mut Config| config.turn_timeout = Duration::from_millis(300);
    let (_source, server, _session, mut socket) = ready_session(start_with(silent_after).await).await;
    send(&mut socket, json!({ "type": "prompt", "text": "$ sleep 60" })).await;
    let asked = question(&mut socket).await;
    send(&mut socket, json!({ "type": "answer", "question_id": asked["id"], "option_id": "allow_once" }))
        .await;
    frame_where(&mut socket, "the time-out", is_system("turn_timeout")).await;
    let ended = frame_where(&mut socket, "the turn end", is_event("turn_end")).await;
    assert_eq!(ended["event"]["data"]["stop_reason"], "cancelled");
    server.stop().await;
}

#[tokio::test]
async fn two_browsers_see_the_same_question_and_the_first_answer_wins() {
    let source = SourceRepo::new();
    let server = start().await;
    let workspace = server.ready_workspace(&source.url()).await;
    let session = server.open(&workspace).await;
    let mut first = attach(&server, &session, 0).await;
    let mut second = attach(&server, &session, 0).await;
    frame_where(&mut first, "the agent is ready", is_system("agent_ready")).await;
    frame_where(&mut second, "the agent is ready", is_system("agent_ready")).await;
    send(&mut first, json!({ "type": "prompt", "text": "$ echo both > both.txt" })).await;
    let seen_by_first = question(&mut first).await;
    let seen_by_second = question(&mut second).await;
    assert_eq!(seen_by_first, seen_by_second);
    send(
        &mut second,
        json!({ "type": "answer", "question_id": seen_by_second["id"], "option_id": "allow_once" }),
    )
    .await;
    frame_where(&mut first, "the second browser's answer", is_event("answer")).await;
    send(
        &mut first,
        json!({ "type": "answer", "question_id": seen_by_first["id"], "option_id": "reject_once" }),
    )
    .await;
    let refused = frame_where(&mut first, "the late answer refused", |frame| frame["type"] == "error").await;
    assert_eq!(refused["error"]["code"], "question_not_pending");
    for socket in [&mut first, &mut second] {
        let ended = frame_where(socket, "the turn end", is_event("turn_end")).await;
        assert_eq!(ended["event"]["data"]["stop_reason"], "end_turn");
    }
    // One browser leaving is not the person leaving while another is still attached.
    drop(first);
    send(&mut second, json!({ "type": "prompt", "text": "still here?" })).await;
    frame_where(&mut second, "the agent's reply", is_event("agent_message")).await;
    assert_eq!(
        server.call(reqwest::Method::GET, &format!("/api/sessions/{session}")).await["state"],
        "active"
    );
    server.stop().await;
}

/// The driver and image of the Docker tests: the test image holds busybox and the C
/// libraries; the agent is this build's `berth`, bind mounted read-only.
fn in_docker(config: &mut Config) {
    config.sandbox_driver = berth_engine::config::SandboxDriverKind::Docker;
    config.image = berth_testkit::docker_test_image(std::path::Path::new(env!("CARGO_BIN_EXE_berth")));
    config.network = berth_engine::config::Network::Outbound;
}

/// Asks the agent to run `command`, allows it, and waits for the end of the turn.
async fn run_allowed(socket: &mut Socket, command: &str) {
    send(socket, json!({ "type": "prompt", "text": format!("$ {command}") })).await;
    let asked = question(socket).await;
    send(socket, json!({ "type": "answer", "question_id": asked["id"], "option_id": "allow_once" })).await;
    let ended = frame_where(socket, "the turn end", is_event("turn_end")).await;
    assert_eq!(ended["event"]["data"]["stop_reason"], "end_turn");
}

#[tokio::test]
async fn the_built_in_agent_works_from_a_docker_container_and_close_removes_it() {
    if !berth_testkit::have_docker() {
        return;
    }
    let (_source, server, session, mut socket) = ready_session(start_with(in_docker).await).await;
    let label = format!("berth.session={session}");
    assert_eq!(berth_testkit::containers_with_label(&label).len(), 1, "one container, labelled");
    let workspace =
        server.call(reqwest::Method::GET, &format!("/api/sessions/{session}")).await["workspace_id"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_eq!(berth_testkit::containers_with_label(&format!("berth.workspace={workspace}")).len(), 1);

    // The agent's files land in the workspace directory on the host.
    run_allowed(&mut socket, "echo from-docker > made.txt").await;
    let git = server.call(reqwest::Method::GET, &format!("/api/workspaces/{workspace}/git")).await;
    assert_eq!(git["uncommitted"], json!(["made.txt"]));

    // The live preview reaches the container's own port 3000.
    run_allowed(&mut socket, "httpd -p 3000 -h /workspace").await;
    let previews =
        server.call(reqwest::Method::GET, &format!("/api/workspaces/{workspace}")).await["preview_url"]
            .as_str()
            .unwrap()
            .to_owned();
    let preview = format!("{previews}/3000/made.txt");
    let http = berth_testkit::loopback_client(&previews);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let response = http.get(&preview).bearer_auth(TOKEN).send().await.unwrap();
        if response.status() == reqwest::StatusCode::OK {
            break response.text().await.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "the preview never answered: {}", response.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(text, "from-docker\n");

    let closed = server.call(reqwest::Method::POST, &format!("/api/sessions/{session}/close")).await;
    assert_eq!(closed["outcome"], "workspace_closed");
    assert!(berth_testkit::containers_with_label(&label).is_empty(), "power off removes the container");
    let response = http.get(&preview).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    assert!(
        server
            .http
            .get(format!("{}/api/workspaces/{workspace}", server.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    server.stop().await;
}

#[test]
fn a_container_left_by_a_killed_server_is_removed_at_the_next_start() {
    if !berth_testkit::have_docker() {
        return;
    }
    // The first server runs on a runtime of its own, dropped without any shutdown: its
    // tasks vanish as a killed process's would, and its container stays behind.
    let crashed = tokio::runtime::Runtime::new().unwrap();
    let source = SourceRepo::new();
    let (data, session) = crashed.block_on(async {
        let server = start_with(in_docker).await;
        let workspace = server.ready_workspace(&source.url()).await;
        let session = server.open(&workspace).await;
        // No shutdown signal: dropping the sender would start a clean stop.
        let Server { _data: data, server, .. } = server;
        server.abandon();
        (data, session)
    });
    drop(crashed);
    let label = format!("berth.session={session}");
    assert_eq!(berth_testkit::containers_with_label(&label).len(), 1, "the container outlived its server");

    let restarted = tokio::runtime::Runtime::new().unwrap();
    restarted.block_on(async {
        let server = start_in(data, in_docker).await;
        assert!(berth_testkit::containers_with_label(&label).is_empty(), "reconciliation removed it");
        let ended = server.call(reqwest::Method::GET, &format!("/api/sessions/{session}")).await;
        assert_eq!(
            (ended["state"].as_str(), ended["end_reason"].as_str()),
            (Some("ended"), Some("server_restart"))
        );
        server.stop().await;
    });
}

#[tokio::test]
async fn the_built_in_agent_works_inside_bubblewrap_with_its_own_network() {
    if !berth_testkit::have_program("bwrap", "scripts/test.sh")
        || !berth_testkit::have_program("slirp4netns", "scripts/test.sh")
    {
        return;
    }
    let sandboxed = start_with(|config| {
        config.isolation = berth_engine::config::Isolation::Bwrap;
        config.network = berth_engine::config::Network::Outbound;
    })
    .await;
    let (_source, server, session, mut socket) = ready_session(sandboxed).await;
    let workspace =
        server.call(reqwest::Method::GET, &format!("/api/sessions/{session}")).await["workspace_id"]
            .as_str()
            .unwrap()
            .to_owned();
    run_allowed(&mut socket, "pwd > where.txt; hostname >> where.txt").await;
    let git = server.call(reqwest::Method::GET, &format!("/api/workspaces/{workspace}/git")).await;
    assert_eq!(git["uncommitted"], json!(["where.txt"]));
    let written =
        std::fs::read_to_string(server._data.path().join("workspaces").join(&workspace).join("where.txt"));
    assert_eq!(written.unwrap(), "/workspace\nberth\n", "the agent ran in the sandbox");
    server.stop().await;
}

/// Two tabs send a prompt at the same instant, round after round: exactly one starts a
/// turn, the other is refused `turn_in_progress` (the turn is claimed in one step).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_prompts_at_the_same_instant_start_exactly_one_turn() {
    let server = start_with(|config| config.prompts_per_second = 1000).await;
    let (_source, server, session, mut socket) = ready_session(server).await;
    let caller = server.engine.accounts.authenticate(TOKEN).await.unwrap().unwrap();
    for round in 0..30 {
        let prompt = || {
            let (engine, caller, session) =
                (std::sync::Arc::clone(&server.engine), caller.clone(), session.clone());
            tokio::spawn(async move {
                engine.sessions.prompt(&caller, &session, "$ true").await.map_err(|e| e.code())
            })
        };
        let (first, second) = (prompt(), prompt());
        let outcomes = [first.await.unwrap(), second.await.unwrap()];
        let taken = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        assert_eq!(taken, 1, "round {round}: {outcomes:?}");
        assert!(outcomes.contains(&Err("turn_in_progress")), "round {round}: {outcomes:?}");
        // End the turn: the command is refused, the turn ends.
        let asked = question(&mut socket).await;
        send(
            &mut socket,
            json!({ "type": "answer", "question_id": asked["id"], "option_id": "reject_once" }),
        )
        .await;
        frame_where(&mut socket, "the turn end", is_event("turn_end")).await;
    }
    let history =
        server.call(reqwest::Method::GET, &format!("/api/sessions/{session}/events?limit=5000")).await;
    let prompts =
        history["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "user_message").count();
    assert_eq!(prompts, 30, "one stored prompt per round");
    server.stop().await;
}

/// The tool calls of `session`'s history closed as `session_ended`.
async fn closed_tool_calls(server: &Server, session: &str) -> Vec<Value> {
    let history =
        server.call(reqwest::Method::GET, &format!("/api/sessions/{session}/events?limit=5000")).await;
    history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "tool_call_update" && e["data"]["reason"] == "session_ended")
        .map(|e| e["data"].clone())
        .collect()
}

/// Starts `$ exec sleep 120` in the session and returns its tool call id once it runs.
async fn a_running_command(socket: &mut Socket) -> String {
    send(socket, json!({ "type": "prompt", "text": "$ exec sleep 120" })).await;
    let asked = question(socket).await;
    send(socket, json!({ "type": "answer", "question_id": asked["id"], "option_id": "allow_once" })).await;
    let running = frame_where(socket, "the command running", |frame| {
        frame["type"] == "event"
            && frame["event"]["kind"] == "tool_call_update"
            && frame["event"]["data"]["status"] == "in_progress"
    })
    .await;
    running["event"]["data"]["toolCallId"].as_str().unwrap().to_owned()
}

/// A command still running when its session closes never shows as running again: its
/// tool call gets a closing `failed` update (`session_ended`).
#[tokio::test]
async fn a_tool_call_still_running_is_closed_when_the_session_closes() {
    let (_source, server, session, mut socket) = ready_session(start().await).await;
    let id = a_running_command(&mut socket).await;
    server.call(reqwest::Method::POST, &format!("/api/sessions/{session}/close")).await;
    let closed = closed_tool_calls(&server, &session).await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(
        (closed[0]["toolCallId"].as_str(), closed[0]["status"].as_str()),
        (Some(id.as_str()), Some("failed"))
    );
    server.stop().await;
}

/// Waits (bounded) until `session` has ended, and says why.
async fn end_reason(server: &Server, session: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let shown = server.call(reqwest::Method::GET, &format!("/api/sessions/{session}")).await;
        if shown["state"] == "ended" {
            return shown["end_reason"].as_str().unwrap_or_default().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "the session never ended: {shown}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The connection drops during the command and nobody comes back: when the grace window
/// expires, the command's tool call is closed too.
#[tokio::test]
async fn a_tool_call_still_running_is_closed_when_the_grace_window_expires() {
    let server = start_with(|config| config.reconnect_grace = Duration::from_millis(500)).await;
    let (_source, server, session, mut socket) = ready_session(server).await;
    let id = a_running_command(&mut socket).await;
    drop(socket);
    assert_eq!(end_reason(&server, &session).await, "grace_expired");
    let closed = closed_tool_calls(&server, &session).await;
    assert_eq!(
        closed.iter().map(|call| call["toolCallId"].as_str()).collect::<Vec<_>>(),
        [Some(id.as_str())]
    );
    server.stop().await;
}

/// The agent dies under its own command: the session fails and the tool call is closed.
#[tokio::test]
async fn a_tool_call_still_running_is_closed_when_the_agent_dies() {
    let (_source, server, session, mut socket) = ready_session(start().await).await;
    send(&mut socket, json!({ "type": "prompt", "text": "$ sleep 0.3; kill -9 $PPID; exec sleep 120" }))
        .await;
    let asked = question(&mut socket).await;
    let id = asked["tool_call"]["toolCallId"].as_str().unwrap().to_owned();
    send(&mut socket, json!({ "type": "answer", "question_id": asked["id"], "option_id": "allow_once" }))
        .await;
    assert_eq!(end_reason(&server, &session).await, "failed");
    let closed = closed_tool_calls(&server, &session).await;
    assert_eq!(
        closed.iter().map(|call| call["toolCallId"].as_str()).collect::<Vec<_>>(),
        [Some(id.as_str())]
    );
    server.stop().await;
}

/// The same after a crash: the restarted server's reconciliation closes it.
#[test]
fn a_tool_call_still_running_when_the_server_dies_is_closed_at_the_next_start() {
    let crashed = tokio::runtime::Runtime::new().unwrap();
    let (data, session, id) = crashed.block_on(async {
        let (_source, server, session, mut socket) = ready_session(start().await).await;
        let id = a_running_command(&mut socket).await;
        // No shutdown signal: dropping the sender would start a clean stop.
        let Server { _data: data, server, .. } = server;
        server.abandon();
        (data, session, id)
    });
    drop(crashed);
    let restarted = tokio::runtime::Runtime::new().unwrap();
    restarted.block_on(async {
        let server = start_in(data, |_| {}).await;
        let closed = closed_tool_calls(&server, &session).await;
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert_eq!(closed[0]["toolCallId"].as_str(), Some(id.as_str()));
        server.stop().await;
    });
}

/// One socket cannot flood a session: past `limits.prompts_per_second` a prompt is refused
/// `rate_limited` (and stored nowhere); the connection stays up.
#[tokio::test]
async fn prompts_beyond_the_rate_limit_are_refused_and_the_connection_stays() {
    let (_source, server, session, mut socket) = ready_session(start().await).await;
    let (mut taken, mut limited) = (0, 0);
    for _ in 0..20 {
        send(&mut socket, json!({ "type": "prompt", "text": "hello" })).await;
        let answer = frame_where(&mut socket, "the turn end or a refusal", |frame| {
            is_event("turn_end")(frame) || frame["type"] == "error"
        })
        .await;
        if answer["type"] == "error" {
            assert_eq!(answer["error"]["code"], "rate_limited", "{answer}");
            limited += 1;
        } else {
            taken += 1;
        }
    }
    assert!(limited > 0 && taken >= 5, "taken {taken}, limited {limited}");
    // Not a protocol error: a malformed frame is answered and the channel goes on.
    socket.send(Message::Text("{not json".into())).await.unwrap();
    let refused = frame_where(&mut socket, "the refusal", |frame| frame["type"] == "error").await;
    assert_eq!(refused["error"]["code"], "invalid_frame", "{refused}");
    let history =
        server.call(reqwest::Method::GET, &format!("/api/sessions/{session}/events?limit=5000")).await;
    let prompts =
        history["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "user_message").count();
    assert_eq!(prompts, taken, "a refused prompt is not stored");
    server.stop().await;
}
