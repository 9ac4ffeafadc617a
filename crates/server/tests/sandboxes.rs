//! Sandboxes through the whole server, with real bubblewrap: the live preview proxy
//! (each workspace's own port 3000, HTTP and WebSocket, owner only, closed with the
//! session, ports checked) and limits reported in the conversation while the server
//! keeps serving.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_sandbox::{Isolation, Network, Resources};
use berth_testkit::{SourceRepo, git, have_program};
use common::TestServer;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use std::time::Duration;

const INSTALLER: &str = "scripts/test.sh";

/// A web application for the sandbox: answers GET with the workspace's name and echoes
/// one WebSocket text frame, on 127.0.0.1:3000 (the sandbox's own loopback).
const APP: &str = r#"
import base64, hashlib, http.server, os, struct
NAME = open("name.txt").read().strip()
class App(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.echo()
        body = f"{NAME} {self.path} cookie={self.headers.get('Cookie')} auth={self.headers.get('Authorization')}"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Set-Cookie", "berth_token=stolen; Path=/")
        self.send_header("Set-Cookie", "app=1; Path=/")
        self.end_headers()
        self.wfile.write(body.encode())
    def echo(self):
        key = self.headers["Sec-WebSocket-Key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        accept = base64.b64encode(hashlib.sha1(key.encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        head = self.rfile.read(2)
        length = head[1] & 0x7F
        mask = self.rfile.read(4)
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
        reply = f"{NAME}:{data.decode()}".encode()
        self.wfile.write(bytes([0x81, len(reply)]) + reply)
        self.wfile.flush()
http.server.ThreadingHTTPServer(("127.0.0.1", 3000), App).serve_forever()
"#;

fn app_repo() -> SourceRepo {
    let source = SourceRepo::new();
    std::fs::write(source.path.join("app.py"), APP).unwrap();
    git(&source.path, &["add", "app.py"]);
    git(&source.path, &["commit", "--quiet", "-m", "app"]);
    source
}

fn sandboxed(config: &mut berth_engine::Config) {
    config.isolation = Isolation::Bwrap;
    config.network = Network::Isolated;
    config.limits.sessions_per_user = 2;
    config.agent_command = Some("exec python3 app.py".into());
}

fn ready() -> bool {
    have_program("bwrap", INSTALLER) && have_program("python3", INSTALLER)
}

/// GETs a preview address until the application in the sandbox answers (it starts with
/// the session).
async fn preview_text(api: &common::Api, path: &str) -> (StatusCode, String, Vec<String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = api
            .request(reqwest::Method::GET, path)
            .header("Cookie", "berth_token=must-not-pass; other=kept")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let cookies =
            response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        let text = response.text().await.unwrap();
        if status != StatusCode::BAD_GATEWAY || tokio::time::Instant::now() > deadline {
            return (status, text, cookies);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn each_workspace_previews_its_own_port_3000_to_its_owner_only() {
    if !ready() {
        return;
    }
    let server = TestServer::start_with(sandboxed).await;
    let source = app_repo();
    let alice = server.member("alice").await;
    let previews = alice.previews().await;
    let mut workspaces = Vec::new();
    for name in ["first", "second"] {
        let id = alice.ready_workspace(&source.url(), name).await;
        std::fs::write(server.checkout(&id).join("name.txt"), name).unwrap();
        let (status, opened) = alice.open(&id).await;
        assert_eq!(status, StatusCode::CREATED, "{opened}");
        workspaces.push((id, opened["session"]["id"].as_str().unwrap().to_owned()));
    }

    for ((id, _), name) in workspaces.iter().zip(["first", "second"]) {
        let (status, text, cookies) =
            preview_text(&previews, &format!("/w/{id}/preview/3000/deep/page?x=1")).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(text.starts_with(&format!("{name} /deep/page?x=1 ")), "{text}");
        assert!(text.contains("cookie=other=kept auth=None"), "berth's credentials stay out: {text}");
        assert_eq!(cookies, vec!["app=1; Path=/"], "the sandbox cannot set berth's cookie");
    }

    // WebSocket through the proxy.
    let (id, _) = &workspaces[0];
    let ws_url = format!("{}/w/{id}/preview/3000/socket", previews.base.replace("http://", "ws://"));
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws_url).unwrap();
    request.headers_mut().insert("Authorization", format!("Bearer {}", alice_token(&alice)).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket.send(tokio_tungstenite::tungstenite::Message::text("hello")).await.unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "first:hello");

    // Another user, or nobody, gets nothing.
    let bob = server.member("bob").await.previews().await;
    let (status, body) = bob.get(&format!("/w/{id}/preview/3000/")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, _) = previews.without_token().get(&format!("/w/{id}/preview/3000/")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // berth's own origin serves no previews: a previewed page never runs with it.
    let (status, _) = alice.get(&format!("/w/{id}/preview/3000/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Ports are numbers from 1 to 65535.
    for bad in ["0", "65536", "http", "3000x", "-1", "99999999999999999999"] {
        let (status, body) = previews.get(&format!("/w/{id}/preview/{bad}/")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_port")),
            "{bad}"
        );
    }
    // Nothing listens on 3001: a clear gateway error, not a hang or a 500.
    let (status, body) = previews.get(&format!("/w/{id}/preview/3001/")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("preview_unreachable"))
    );

    // Once the session ends the preview is gone.
    let (_, session) = &workspaces[0];
    let (status, _) = alice.post(&format!("/api/sessions/{session}/close"), serde_json::Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = previews.get(&format!("/w/{id}/preview/3000/")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("no_live_session")));
    let (second, _) = &workspaces[1];
    let (status, text, _) = preview_text(&previews, &format!("/w/{second}/preview/3000/")).await;
    assert_eq!(status, StatusCode::OK, "the other workspace's preview is untouched: {text}");
    server.stop().await;
}

fn alice_token(api: &common::Api) -> String {
    api.token().unwrap().to_owned()
}

#[tokio::test]
async fn the_port_allow_list_is_enforced() {
    if !ready() {
        return;
    }
    let server = TestServer::start_with(|config| {
        sandboxed(config);
        config.preview_ports = berth_core::preview::PortAllowList::parse("3000").unwrap();
    })
    .await;
    let source = app_repo();
    let id = server.admin().ready_workspace(&source.url(), "demo").await;
    std::fs::write(server.checkout(&id).join("name.txt"), "demo").unwrap();
    let (status, _) = server.admin().open(&id).await;
    assert_eq!(status, StatusCode::CREATED);
    let previews = server.admin().previews().await;
    let (status, body) = previews.get(&format!("/w/{id}/preview/22/")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("port_not_allowed")));
    let (status, text, _) = preview_text(&previews, &format!("/w/{id}/preview/3000/")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    server.stop().await;
}

/// Waits for a `system agent_error` event with `reason` in the session's history.
async fn limit_event(api: &common::Api, session: &str, reason: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, page) = api.get(&format!("/api/sessions/{session}/events?limit=1000")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        if let Some(event) = page["events"].as_array().unwrap().iter().find(|event| {
            event["kind"] == "system"
                && event["data"]["code"] == "agent_error"
                && event["data"]["reason"] == reason
        }) {
            return event.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no {reason} event in {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_fork_bomb_and_a_memory_hog_are_reported_and_the_server_keeps_serving() {
    if !have_program("bwrap", INSTALLER) {
        return;
    }
    let server = TestServer::start_with(|config| {
        config.isolation = Isolation::Bwrap;
        config.network = Network::Isolated;
        config.limits.sessions_per_user = 3;
        config.resources = Resources { memory_bytes: Some(64 << 20), pids: Some(32), cpus: Some(0.5) };
    })
    .await;
    let source = SourceRepo::new();
    let admin = server.admin();
    let bomb = admin
        .create_settled(serde_json::json!({ "repo": source.url(), "name": "bomb",
            "agent": "bomb() { bomb | bomb & }; bomb; exec sleep 600" }))
        .await;
    let hog = admin
        .create_settled(serde_json::json!({ "repo": source.url(), "name": "hog",
            "agent": "awk 'BEGIN { s = \"x\"; while (1) s = s s }'; exec sleep 600" }))
        .await;
    let calm = admin.ready_workspace(&source.url(), "calm").await;

    let (_, opened) = admin.open(bomb["id"].as_str().unwrap()).await;
    let bomb_session = opened["session"]["id"].as_str().unwrap().to_owned();
    let (_, opened) = admin.open(hog["id"].as_str().unwrap()).await;
    let hog_session = opened["session"]["id"].as_str().unwrap().to_owned();

    let event = limit_event(&admin, &bomb_session, "process_limit").await;
    assert!(event["data"]["message"].as_str().unwrap().contains("process limit (32)"), "{event}");
    let event = limit_event(&admin, &hog_session, "memory_limit").await;
    assert!(event["data"]["message"].as_str().unwrap().contains("memory limit (64 MiB)"), "{event}");

    // The server and the other sandboxes carry on.
    let (status, _) = server.anonymous().get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, opened) = admin.open(&calm).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    for session in [&bomb_session, &hog_session] {
        let (status, closed) =
            admin.post(&format!("/api/sessions/{session}/close"), serde_json::Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{closed}");
    }
    server.stop().await;
}
