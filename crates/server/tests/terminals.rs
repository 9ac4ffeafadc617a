//! Terminals through the whole server, with real bubblewrap: a shell on a pseudo-terminal
//! in the live session's sandbox (the agent's namespaces, environment and secrets; none
//! of the host's data directory), whose screen comes back whole to a new connection,
//! for its owner only, ended with the session.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_sandbox::{Isolation, Network};
use berth_testkit::{SourceRepo, have_program};
use common::{Api, TestServer};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const INSTALLER: &str = "scripts/test.sh";
/// How long a shell may take to show what is awaited.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(20);

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

fn sandboxed(config: &mut berth_engine::Config) {
    config.isolation = Isolation::Bwrap;
    config.network = Network::Isolated;
    // The agent only has to run: the terminal is what is tried.
    config.agent_command = Some("exec sleep 100000".into());
}

fn ready() -> bool {
    have_program("bwrap", INSTALLER)
        && have_program("nsenter", INSTALLER)
        && have_program("setpriv", INSTALLER)
}

fn cells(count: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(count).unwrap()
}

/// A terminal's WebSocket, seen through a terminal emulator of the test's own.
struct Screen {
    socket: Socket,
    parser: vt100::Parser,
}

impl Screen {
    async fn connect(api: &Api, session: &str, terminal: &str) -> Screen {
        let url = format!(
            "{}/api/sessions/{session}/terminals/{terminal}/live",
            api.base.replace("http://", "ws://")
        );
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {}", api.token().unwrap()).parse().unwrap());
        let address = api.base.trim_start_matches("http://").to_owned();
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let (socket, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
        Screen { socket, parser: vt100::Parser::new(cells(24), cells(80), 0) }
    }

    async fn type_in(&mut self, text: &str) {
        let frame = json!({ "type": "input", "data": text }).to_string();
        self.socket.send(Message::text(frame)).await.unwrap();
    }

    fn text(&self) -> String {
        self.parser.screen().contents()
    }

    /// Reads output until the screen shows `expected`; fails with the screen if it does not.
    async fn shows(&mut self, expected: &str) {
        let deadline = tokio::time::Instant::now() + SCREEN_TIMEOUT;
        while !self.text().contains(expected) {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Ok(Some(Ok(Message::Binary(bytes)))) => self.parser.process(&bytes),
                Ok(Some(Ok(Message::Text(text)))) => panic!("unexpected text frame {text}"),
                Ok(Some(Ok(_))) => {}
                other => panic!("the screen never showed {expected:?} ({other:?}):\n{}", self.text()),
            }
        }
    }

    /// The next text frame (an error), skipping output.
    async fn error_code(&mut self) -> String {
        loop {
            match tokio::time::timeout(SCREEN_TIMEOUT, self.socket.next()).await.unwrap() {
                Some(Ok(Message::Text(text))) => {
                    let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                    return frame["error"]["code"].as_str().unwrap().to_owned();
                }
                Some(Ok(Message::Binary(bytes))) => self.parser.process(&bytes),
                other => panic!("no error frame: {other:?}"),
            }
        }
    }

    /// Whether the server closes the connection (output until then is read).
    async fn closed(&mut self) -> bool {
        loop {
            match tokio::time::timeout(SCREEN_TIMEOUT, self.socket.next()).await {
                Ok(Some(Ok(Message::Binary(bytes)))) => self.parser.process(&bytes),
                Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
                Err(_) => return false,
            }
        }
    }
}

async fn open_terminal(api: &Api, session: &str) -> String {
    let (status, body) =
        api.post(&format!("/api/sessions/{session}/terminals"), json!({"cols": 80, "rows": 24})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_terminal_is_a_shell_in_the_sandbox_whose_screen_comes_back_on_every_connect() {
    if !ready() {
        return;
    }
    let server = TestServer::start_with(sandboxed).await;
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let (status, _) = alice
        .send(alice.request(Method::PUT, "/api/secrets/DEPLOY_KEY").json(&json!({"value": "alice-only-7"})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let workspace = alice.ready_workspace(&source.url(), "demo").await;
    let (status, opened) = alice.open(&workspace).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let session = opened["session"]["id"].as_str().unwrap().to_owned();

    let terminal = open_terminal(&alice, &session).await;
    let mut screen = Screen::connect(&alice, &session, &terminal).await;
    screen.type_in("echo $((6*7))\n").await;
    screen.shows("42").await;
    // The agent's world: the workspace, its secrets, its sandbox's own processes — and
    // nothing of the server's data directory, nor any capability.
    screen
        .type_in("awk '/CapEff/ {print \"caps=\" $2}' /proc/self/status; echo \"key=$DEPLOY_KEY in $PWD\"\n")
        .await;
    screen.shows("key=alice-only-7 in /workspace").await;
    assert!(screen.text().contains("caps=0000000000000000"), "{}", screen.text());
    let data_dir = server.data_dir().display().to_string();
    screen.type_in(&format!("ls {data_dir} >/dev/null 2>&1 || echo no-data-dir; pgrep -c sleep\n")).await;
    screen.shows("no-data-dir").await;
    // A resize reaches the shell.
    let resize = json!({ "type": "resize", "cols": 100, "rows": 30 }).to_string();
    screen.socket.send(Message::text(resize)).await.unwrap();
    screen.parser.set_size(cells(30), cells(100));
    screen.type_in("stty size\n").await;
    screen.shows("30 100").await;
    // Nonsense is refused without ending the terminal.
    screen.socket.send(Message::text("{\"type\": \"shout\"}")).await.unwrap();
    assert_eq!(screen.error_code().await, "invalid_frame");
    let shown = screen.text();
    drop(screen);

    // A new connection (a reload) is sent the screen as it is: the same lines.
    let mut again = Screen::connect(&alice, &session, &terminal).await;
    again.parser.set_size(cells(30), cells(100));
    again.shows("30 100").await;
    for line in ["42", "key=alice-only-7", "no-data-dir"] {
        assert!(shown.contains(line) && again.text().contains(line), "{line} missing from\n{}", again.text());
    }
    again.type_in("echo still-here\n").await;
    again.shows("still-here").await;

    let (status, listed) = alice.get(&format!("/api/sessions/{session}/terminals")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["terminals"][0]["id"], json!(terminal), "{listed}");

    // Leaving with a terminal open is leaving work under way: the session waits in its
    // grace window (a reload comes back to it), as it does for a run.
    let (status, _) = alice.post(&format!("/api/sessions/{session}/leave"), json!(null)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(alice.session(&session).await["state"], "disconnected");

    // The session's end ends its terminals, and no new one starts.
    let (status, _) = alice.post(&format!("/api/sessions/{session}/close"), json!(null)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(again.closed().await, "the terminal's connection closes with the session");
    let (status, body) = alice.post(&format!("/api/sessions/{session}/terminals"), json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("session_not_live")));
    let (_, listed) = alice.get(&format!("/api/sessions/{session}/terminals")).await;
    assert_eq!(listed["terminals"], json!([]));
}

#[tokio::test]
async fn another_users_terminals_do_not_exist_for_them_and_the_owner_can_close_one() {
    if !ready() {
        return;
    }
    let server = TestServer::start_with(sandboxed).await;
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let workspace = alice.ready_workspace(&source.url(), "demo").await;
    let (_, opened) = alice.open(&workspace).await;
    let session = opened["session"]["id"].as_str().unwrap().to_owned();
    let terminal = open_terminal(&alice, &session).await;

    let bob = server.member("bob").await;
    let base = format!("/api/sessions/{session}/terminals");
    for (method, path) in [
        (Method::GET, base.clone()),
        (Method::POST, base.clone()),
        (Method::DELETE, format!("{base}/{terminal}")),
        (Method::GET, format!("{base}/{terminal}/live")),
    ] {
        let (status, body) = bob.send(bob.request(method.clone(), &path)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{method} {path}"
        );
    }
    let (status, _) = server.anonymous().get(&base).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for bad in ["tm_nope", "..%2F..%2Fetc", "tm_0000000000000000000000000"] {
        let (status, _) = alice.send(alice.request(Method::DELETE, &format!("{base}/{bad}"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
    }
    for bad in [json!({"cols": "wide"}), json!({"cols": 80, "shell": "/bin/zsh"}), json!([1])] {
        let (status, body) = alice.post(&base, bad.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{bad}"
        );
    }
    // A plain GET of the live path is not a terminal.
    let (status, body) = alice.get(&format!("{base}/{terminal}/live")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("websocket_required"))
    );

    let mut screen = Screen::connect(&alice, &session, &terminal).await;
    screen.type_in("echo ready\n").await;
    screen.shows("ready").await;
    let (status, _) = alice.send(alice.request(Method::DELETE, &format!("{base}/{terminal}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(screen.closed().await, "a closed terminal's connection closes");
    let (_, listed) = alice.get(&base).await;
    assert_eq!(listed["terminals"], json!([]));

    // A shell that exits ends its terminal.
    let terminal = open_terminal(&alice, &session).await;
    let mut screen = Screen::connect(&alice, &session, &terminal).await;
    screen.type_in("exit\n").await;
    assert!(screen.closed().await, "the shell's exit closes the connection");
    let (_, listed) = alice.get(&base).await;
    assert_eq!(listed["terminals"], json!([]));
}
