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
        for stolen in ["berth_token=stolen; Path=/", "berth_token =x; Path=/", "Berth_Preview=x", "berth_preview=x; Path=/"]:
            self.send_header("Set-Cookie", stolen)
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
            .header("Cookie", "berth_token=must-not-pass; berth_preview=nor-this; other=kept")
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
    let mut workspaces = Vec::new();
    for name in ["first", "second"] {
        let id = alice.ready_workspace(&source.url(), name).await;
        std::fs::write(server.checkout(&id).join("name.txt"), name).unwrap();
        let (status, opened) = alice.open(&id).await;
        assert_eq!(status, StatusCode::CREATED, "{opened}");
        workspaces.push((id, opened["session"]["id"].as_str().unwrap().to_owned()));
    }

    for ((id, _), name) in workspaces.iter().zip(["first", "second"]) {
        let previews = alice.previews(id).await;
        assert!(
            previews.base.starts_with(&format!("http://{id}.preview.localhost:")),
            "a host of its own: {}",
            previews.base
        );
        let (status, text, cookies) = preview_text(&previews, "/3000/deep/page?x=1").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(text.starts_with(&format!("{name} /deep/page?x=1 ")), "{text}");
        assert!(text.contains("cookie=other=kept auth=None"), "berth's credentials stay out: {text}");
        assert_eq!(cookies, vec!["app=1; Path=/"], "the sandbox cannot set berth's cookies");
    }

    // The preview pane lists what listens inside each sandbox: 3000, its own.
    let (_, session) = &workspaces[0];
    let (status, ports) = alice.get(&format!("/api/sessions/{session}/ports")).await;
    assert_eq!((status, ports["ports"].clone()), (StatusCode::OK, serde_json::json!([3000])), "{ports}");
    let (status, _) = server.member("carol").await.get(&format!("/api/sessions/{session}/ports")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's sandbox is not listed");

    // WebSocket through the proxy.
    let (id, _) = &workspaces[0];
    let previews = alice.previews(id).await;
    let ws_url = format!("{}/3000/socket", previews.base.replace("http://", "ws://"));
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws_url).unwrap();
    request.headers_mut().insert("Authorization", format!("Bearer {}", alice_token(&alice)).parse().unwrap());
    let port = previews.base.rsplit(':').next().unwrap().to_owned();
    let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    socket.send(tokio_tungstenite::tungstenite::Message::text("hello")).await.unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "first:hello");

    // Another user, or nobody, gets nothing.
    let bob = server.member("bob").await;
    let bob_on_alices =
        common::Api::new(berth_testkit::loopback_client(&previews.base), &previews.base, bob.token());
    let (status, body) = bob_on_alices.get("/3000/").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, body) = previews.without_token().get("/3000/").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    // berth's own origin serves no previews: a previewed page never runs with it; nor
    // does the preview listener under any name but a workspace's.
    let (status, _) = alice.get("/3000/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let bare = common::Api::new(reqwest::Client::new(), &format!("http://127.0.0.1:{port}"), alice.token());
    let (status, body) = bare.get("/3000/").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

    // Ports are numbers from 1 to 65535.
    for bad in ["0", "65536", "http", "3000x", "-1", "99999999999999999999"] {
        let (status, body) = previews.get(&format!("/{bad}/")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_port")),
            "{bad}"
        );
    }
    // Nothing listens on 3001: a clear gateway error, not a hang or a 500 — and for a
    // browser's page, a page that says so and tries again, not JSON.
    let (status, body) = previews.get("/3001/").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("preview_unreachable"))
    );
    let (status, kind, page) = page_for_a_person(&previews, "/3001/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(kind.starts_with("text/html"));
    assert!(
        page.contains("Nothing answers on this port yet") && page.contains("http-equiv=\"refresh\""),
        "{page}"
    );

    // Once the session ends the preview is gone.
    let (_, session) = &workspaces[0];
    let (status, _) = alice.post(&format!("/api/sessions/{session}/close"), serde_json::Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = previews.get("/3000/").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("no_live_session")));
    // A person's browser is told in a sentence, not with the envelope; so is another
    // user who tries the address.
    let (status, kind, page) = page_for_a_person(&previews, "/3000/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(kind.starts_with("text/html") && page.contains("This workspace is not running"), "{page}");
    assert!(!page.contains("no_live_session") && !page.contains("http-equiv"), "{page}");
    let (status, _, page) = page_for_a_person(&bob_on_alices, "/3000/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("There is no such preview"), "{page}");
    let (second, _) = &workspaces[1];
    let (status, text, _) = preview_text(&alice.previews(second).await, "/3000/").await;
    assert_eq!(status, StatusCode::OK, "the other workspace's preview is untouched: {text}");
    server.stop().await;
}

/// The browser's way in: berth's origin hands the owner a ticket in a redirect; the
/// preview host trades it (once) for a cookie of its own, good for that workspace only
/// and only while the login token it came from is valid.
#[tokio::test]
async fn a_preview_host_admits_its_owner_with_a_pass_of_its_own() {
    if !ready() {
        return;
    }
    let server = TestServer::start_with(sandboxed).await;
    let source = app_repo();
    let (status, created) =
        server.admin().post("/api/tokens", serde_json::json!({ "name": "browser" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let admin = server.as_user(created["token"].as_str().unwrap());
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let id = admin.ready_workspace(&source.url(), name).await;
        std::fs::write(server.checkout(&id).join("name.txt"), name).unwrap();
        let (status, opened) = admin.open(&id).await;
        assert_eq!(status, StatusCode::CREATED, "{opened}");
        ids.push(id);
    }
    let (a, b) = (&ids[0], &ids[1]);
    let host_a = admin.previews(a).await.without_token();
    let host_b = admin.previews(b).await.without_token();

    let ticket_url = |id: &str, query: &str| format!("/api/workspaces/{id}/preview?{query}");
    let response = admin
        .not_following()
        .request(reqwest::Method::GET, &ticket_url(a, "port=3000&path=/deep"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/_berth/auth?ticket=", host_a.base)), "{location}");
    assert!(!location.contains(admin.token().unwrap()), "berth's token never travels to a preview host");
    let redeem = |api: &common::Api, location: &str| {
        let path = location.split_once(".localhost:").unwrap().1.split_once('/').unwrap().1.to_owned();
        api.request(reqwest::Method::GET, &format!("/{path}")).send()
    };
    // Another workspace's host does not take it.
    let refused = redeem(&host_b, &location).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let redeemed = redeem(&host_a, &location).await.unwrap();
    assert_eq!(redeemed.status(), StatusCode::SEE_OTHER);
    assert_eq!(redeemed.headers()["location"], "/3000/deep");
    let set_cookie = redeemed.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("berth_preview="), "{set_cookie}");
    for attribute in ["HttpOnly", "Path=/", "Secure", "SameSite=None", "Partitioned"] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    assert!(!set_cookie.to_ascii_lowercase().contains("domain"), "host-only: {set_cookie}");
    // A ticket is good once.
    let again = redeem(&host_a, &location).await.unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);

    let pass = set_cookie.split(';').next().unwrap().to_owned();
    let with_pass = |api: &common::Api| {
        api.request(reqwest::Method::GET, "/3000/deep").header("cookie", format!("app=1; {pass}")).send()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let shown = loop {
        let response = with_pass(&host_a).await.unwrap();
        if response.status() != StatusCode::BAD_GATEWAY || tokio::time::Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(shown.status(), StatusCode::OK);
    let text = shown.text().await.unwrap();
    assert!(text.starts_with("a /deep cookie=app=1 "), "the pass stays with berth: {text}");
    // The pass opens its own workspace only.
    assert_eq!(with_pass(&host_b).await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // Bad requests for a ticket, and another user's workspace.
    for (query, status, code) in [
        ("port=0", StatusCode::BAD_REQUEST, "invalid_port"),
        ("port=3000&path=//evil.example/", StatusCode::BAD_REQUEST, "invalid_request"),
        ("port=3000&path=/\\evil.example/", StatusCode::BAD_REQUEST, "invalid_request"),
        ("port=3000&path=nothing", StatusCode::BAD_REQUEST, "invalid_request"),
        ("path=/", StatusCode::BAD_REQUEST, "invalid_request"),
    ] {
        let (got, body) = admin.get(&ticket_url(a, query)).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{query}");
    }
    let bob = server.member("bob").await;
    let (status, body) = bob.get(&ticket_url(a, "port=3000")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

    // Revoking the login token the pass came from ends the pass at once.
    let (status, _) =
        server
            .admin()
            .send(server.admin().request(
                reqwest::Method::DELETE,
                &format!("/api/tokens/{}", created["id"].as_str().unwrap()),
            ))
            .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(with_pass(&host_a).await.unwrap().status(), StatusCode::UNAUTHORIZED);
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
    let previews = server.admin().previews(&id).await;
    let (status, body) = previews.get("/22/").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("port_not_allowed")));
    let (status, body) = server.admin().get(&format!("/api/workspaces/{id}/preview?port=22")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("port_not_allowed")));
    let (status, text, _) = preview_text(&previews, "/3000/").await;
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

/// What a browser's page load of `path` gets: its status, content type and body.
async fn page_for_a_person(api: &common::Api, path: &str) -> (StatusCode, String, String) {
    let page =
        api.request(reqwest::Method::GET, path).header("accept", "text/html,*/*").send().await.unwrap();
    let kind = page.headers()["content-type"].to_str().unwrap().to_owned();
    (page.status(), kind, page.text().await.unwrap())
}
