//! Several replicas: real `berth serve` processes on one PostgreSQL database and one
//! data directory. Limits hold across them, any replica serves any session, and a
//! replica that dies (or stops renewing its lease) has its sessions ended by another —
//! never changed by it again.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const ADMIN: &str = "replicas-test-admin-token-0123456789";
const LEASE: Duration = Duration::from_secs(2);
const PATIENCE: Duration = Duration::from_secs(60);

struct Replica {
    child: Child,
    base: String,
    /// Where its preview hosts answer.
    preview: String,
}

impl Replica {
    async fn start(id: &str, data: &Path, database: &str, settings: &[(&str, &str)]) -> Replica {
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (port, preview) = (free(), free());
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("serve")
            .env("BERTH_DATA", data)
            .env("BERTH_DATABASE_URL", database)
            .env("BERTH_REPLICA_ID", id)
            .env("BERTH_REPLICA_LEASE", format!("{}s", LEASE.as_secs()))
            .env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
            .env("BERTH_PREVIEW_LISTEN", format!("127.0.0.1:{preview}"))
            .env("BERTH_ADMIN_TOKEN", ADMIN)
            .env("BERTH_GIT_LOCAL_ROOTS", std::env::temp_dir())
            .env("BERTH_ISOLATION", "none")
            .env("BERTH_SANDBOX_NETWORK", "host")
            .env("BERTH_LOG", "error")
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let replica = Replica {
            child,
            base: format!("http://127.0.0.1:{port}"),
            preview: format!("127.0.0.1:{preview}"),
        };
        let deadline = Instant::now() + PATIENCE;
        while !reqwest::get(format!("{}/readyz", replica.base)).await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "replica {id} did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        replica
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two replicas, `a` and `b`, on a fresh database and data directory, with ready
/// workspaces of the administrator's.
struct Cluster {
    a: Replica,
    b: Replica,
    workspaces: Vec<String>,
    http: reqwest::Client,
    data: tempfile::TempDir,
    _database: berth_testkit::PostgresDatabase,
    _source: berth_testkit::SourceRepo,
}

impl Cluster {
    async fn start(workspaces: usize, settings: &[(&str, &str)]) -> Option<Cluster> {
        let database = berth_testkit::PostgresDatabase::create()?;
        let data = tempfile::tempdir().unwrap();
        let a = Replica::start("a", data.path(), &database.url(), settings).await;
        let b = Replica::start("b", data.path(), &database.url(), settings).await;
        let source = berth_testkit::SourceRepo::new();
        let mut cluster = Cluster {
            a,
            b,
            workspaces: Vec::new(),
            http: reqwest::Client::new(),
            data,
            _database: database,
            _source: source,
        };
        for n in 0..workspaces {
            let body = json!({ "repo": cluster._source.url(), "name": format!("w{n}") });
            let (status, created) = cluster.call(&cluster.a, "POST", "/api/workspaces", Some(body)).await;
            assert_eq!(status, 202, "{created}");
            cluster.workspaces.push(created["id"].as_str().unwrap().to_owned());
        }
        for id in cluster.workspaces.clone() {
            let deadline = Instant::now() + PATIENCE;
            // Seen through the other replica.
            while cluster.call(&cluster.b, "GET", &format!("/api/workspaces/{id}"), None).await.1["state"]
                != "ready"
            {
                assert!(Instant::now() < deadline, "workspace {id} not ready");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Some(cluster)
    }

    async fn call(&self, replica: &Replica, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", replica.base)).bearer_auth(ADMIN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    async fn open(&self, replica: &Replica, workspace: &str) -> String {
        let (status, opened) =
            self.call(replica, "POST", &format!("/api/workspaces/{workspace}/open"), None).await;
        assert!(status == 200 || status == 201, "{status} {opened}");
        opened["session"]["id"].as_str().unwrap().to_owned()
    }

    async fn session(&self, replica: &Replica, id: &str) -> Value {
        self.call(replica, "GET", &format!("/api/sessions/{id}"), None).await.1
    }

    /// Waits until `replica` shows session `id` ended; how long it took.
    async fn until_ended(&self, replica: &Replica, id: &str) -> (Value, Duration) {
        let started = Instant::now();
        loop {
            let session = self.session(replica, id).await;
            if session["state"] == "ended" {
                return (session, started.elapsed());
            }
            assert!(started.elapsed() < PATIENCE, "session {id} never ended: {session}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The history of session `id` once its closing event is in it (the end is stored
    /// first, then that event).
    async fn closed_history(&self, replica: &Replica, id: &str) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let events = self.events(replica, id).await;
            if events.last().is_some_and(|last| last["data"]["code"] == "session_closed") {
                return events;
            }
            assert!(Instant::now() < deadline, "session {id} has no closing event: {events:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn events(&self, replica: &Replica, id: &str) -> Vec<Value> {
        let (status, page) = self.call(replica, "GET", &format!("/api/sessions/{id}/events"), None).await;
        assert_eq!(status, 200, "{page}");
        page["events"].as_array().cloned().unwrap_or_default()
    }

    /// Has the agent of session `id` run `command` through `replica`'s live channel;
    /// returns the channel still open (the session ends when its last one closes).
    async fn run_through(&self, replica: &Replica, id: &str, command: &str) -> Socket {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/api/sessions/{id}/live?after=0", replica.base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let (mut sink, mut frames) = socket.split();
        let mut until = async |done: &dyn Fn(&Value) -> bool| loop {
            match tokio::time::timeout(PATIENCE, frames.next()).await.unwrap() {
                Some(Ok(Message::Text(text))) => {
                    let frame = serde_json::from_str::<Value>(&text).unwrap();
                    if done(&frame) {
                        return frame;
                    }
                }
                Some(Ok(_)) => continue,
                other => panic!("the live channel ended: {other:?}"),
            }
        };
        until(&|frame| frame["event"]["data"]["code"] == "agent_ready").await;
        let prompt = json!({ "type": "prompt", "text": format!("$ {command}") });
        sink.send(Message::Text(prompt.to_string().into())).await.unwrap();
        let question = until(&|frame| frame["type"] == "question").await;
        let answer =
            json!({ "type": "answer", "question_id": question["question"]["id"], "option_id": "allow_once" });
        sink.send(Message::Text(answer.to_string().into())).await.unwrap();
        until(&|frame| frame["event"]["kind"] == "turn_end").await;
        sink.reunite(frames).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_on_one_replica_is_watched_prompted_and_closed_through_the_other() {
    let Some(cluster) = Cluster::start(3, &[("BERTH_SESSIONS_PER_USER", "5")]).await else { return };
    let (a, b) = (&cluster.a, &cluster.b);
    let session = cluster.open(a, &cluster.workspaces[0]).await;
    let _watching = cluster.run_through(b, &session, "echo said-through-b").await;
    let events = cluster.events(a, &session).await;
    assert!(events.iter().any(|event| event.to_string().contains("said-through-b")), "{events:?}");

    let (status, closed) = cluster.call(b, "POST", &format!("/api/sessions/{session}/close"), None).await;
    let closed = &closed["session"];
    assert_eq!(
        (status, closed["state"].as_str(), closed["end_reason"].as_str()),
        (200, Some("ended"), Some("closed"))
    );
    assert_eq!(cluster.session(a, &session).await["state"], "ended");

    // close-all through b: sessions owned by a and by b, each listed.
    let on_a = cluster.open(a, &cluster.workspaces[1]).await;
    let on_b = cluster.open(b, &cluster.workspaces[2]).await;
    let (status, report) = cluster.call(b, "POST", "/api/sessions/close-all", Some(json!({}))).await;
    assert_eq!(status, 200, "{report}");
    let mut closed: Vec<&str> =
        report["closed"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    closed.sort_unstable();
    let mut expected = vec![on_a.as_str(), on_b.as_str()];
    expected.sort_unstable();
    assert_eq!((closed, report["failed"].as_array().map(Vec::len)), (expected, Some(0)), "{report}");
    for id in [&on_a, &on_b] {
        assert_eq!(cluster.session(a, id).await["end_reason"], "closed_all");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_opens_of_one_user_split_across_replicas_leave_one_live_session() {
    for policy in ["replace", "reject"] {
        let settings = [("BERTH_ON_USER_LIMIT", policy), ("BERTH_AGENT", "exec sleep 2147483647")];
        let Some(cluster) = Cluster::start(4, &settings).await else { return };
        let opens = (0..200).map(|n| {
            let cluster = &cluster;
            async move {
                let replica = if n % 2 == 0 { &cluster.a } else { &cluster.b };
                let workspace = &cluster.workspaces[n % 4];
                cluster.call(replica, "POST", &format!("/api/workspaces/{workspace}/open"), None).await
            }
        });
        let answers: Vec<(u16, Value)> = futures::stream::iter(opens).buffer_unordered(40).collect().await;
        for (status, body) in &answers {
            assert!(
                matches!(status, 200 | 201) || (*status == 409 && body["error"]["code"] == "session_limit"),
                "{policy}: {status} {body}"
            );
        }
        let (_, live) = cluster.call(&cluster.b, "GET", "/api/admin/sessions", None).await;
        let live = live["sessions"].as_array().cloned().unwrap_or_default();
        assert_eq!(live.len(), 1, "{policy}: exactly one live session: {live:?}");
        if policy == "reject" {
            let refused = answers.iter().filter(|(status, _)| *status == 409).count();
            assert!(refused > 0, "other workspaces' opens were refused");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replicas_sessions_end_on_another_within_the_lease_and_the_workspace_opens_there() {
    let Some(mut cluster) = Cluster::start(1, &[]).await else { return };
    let workspace = cluster.workspaces[0].clone();
    let session = cluster.open(&cluster.a, &workspace).await;
    let _watching = cluster.run_through(&cluster.a, &session, "echo kept > kept.txt").await;
    cluster.a.child.kill().unwrap();
    cluster.a.child.wait().unwrap();
    let (ended, took) = cluster.until_ended(&cluster.b, &session).await;
    assert_eq!(ended["end_reason"], "replica_lost", "{ended}");
    assert!(took <= LEASE + Duration::from_secs(5), "ended after {took:?}");
    let events = cluster.closed_history(&cluster.b, &session).await;
    let last = events.last().unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["data"]["reason"].as_str()),
        (Some("system"), Some("replica_lost"))
    );
    let (_, workspace_now) =
        cluster.call(&cluster.b, "GET", &format!("/api/workspaces/{workspace}"), None).await;
    assert_eq!(workspace_now["state"], "idle");

    let again = cluster.open(&cluster.b, &workspace).await;
    assert_ne!(again, session);
    let (status, file) = cluster
        .call(&cluster.b, "GET", &format!("/api/workspaces/{workspace}/files?path=kept.txt"), None)
        .await;
    assert_eq!((status, file["content"].as_str()), (200, Some("kept\n")), "{file}");
    assert!(
        cluster.data.path().join("sandboxes/a").is_dir() && cluster.data.path().join("sandboxes/b").is_dir()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_lost_its_lease_cannot_change_its_old_sessions() {
    use nix::sys::signal::Signal;
    let Some(cluster) = Cluster::start(1, &[]).await else { return };
    let (a, b) = (&cluster.a, &cluster.b);
    let session = cluster.open(a, &cluster.workspaces[0]).await;
    a.signal(Signal::SIGSTOP);
    let (ended, _) = cluster.until_ended(b, &session).await;
    assert_eq!(ended["end_reason"], "replica_lost");
    let events = cluster.closed_history(b, &session).await;
    a.signal(Signal::SIGCONT);
    // The paused replica still holds the session's task: whatever it tries is fenced.
    let (status, answer) = cluster.call(a, "POST", &format!("/api/sessions/{session}/close"), None).await;
    assert_ne!(answer["end_reason"], "closed", "{status} {answer}");
    // It finds its lease lost and abandons the session (its sandbox off, nothing written).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let metrics =
            cluster.http.get(format!("{}/metrics", a.base)).bearer_auth(ADMIN).send().await.unwrap();
        if metrics.text().await.unwrap().lines().any(|line| line == "berth_running_sandboxes 0") {
            break;
        }
        assert!(Instant::now() < deadline, "the paused replica kept its session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = cluster.session(a, &session).await;
    assert_eq!(now["end_reason"], "replica_lost", "{now}");
    assert_eq!(cluster.events(b, &session).await, events, "not one event written by the lost replica");
    // And a can serve again: a new session opens through it.
    let again = cluster.open(a, &cluster.workspaces[0]).await;
    assert_eq!(cluster.session(b, &again).await["state"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_one_replica_changes_every_other_sees_within_a_second() {
    let Some(cluster) = Cluster::start(1, &[]).await else { return };
    let (a, b) = (&cluster.a, &cluster.b);
    // A token used on a (and cached there), revoked through b.
    let (status, token) = cluster.call(a, "POST", "/api/tokens", Some(json!({ "name": "laptop" }))).await;
    assert_eq!(status, 201, "{token}");
    let secret = token["token"].as_str().unwrap();
    let me =
        |replica: &Replica| cluster.http.get(format!("{}/api/me", replica.base)).bearer_auth(secret).send();
    assert_eq!(me(a).await.unwrap().status(), 200);
    let (status, _) =
        cluster.call(b, "DELETE", &format!("/api/tokens/{}", token["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 204);
    let revoked = Instant::now();
    while me(a).await.unwrap().status() != 401 {
        assert!(revoked.elapsed() < Duration::from_secs(1), "a still takes the revoked token");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A workspace list read (and cached) on b, the workspace renamed through a.
    let workspace = &cluster.workspaces[0];
    let names = async || {
        let (_, list) = cluster.call(b, "GET", "/api/workspaces", None).await;
        list["workspaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names().await, ["w0"]);
    let (status, renamed) = cluster
        .call(a, "PATCH", &format!("/api/workspaces/{workspace}"), Some(json!({ "name": "renamed" })))
        .await;
    assert_eq!(status, 200, "{renamed}");
    let changed = Instant::now();
    while names().await != ["renamed"] {
        assert!(changed.elapsed() < Duration::from_secs(1), "b still lists the old name");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_preview_is_served_by_any_replica_through_the_sessions_owner() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let agent =
        format!("python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 & exec sleep 2147483647");
    let Some(cluster) = Cluster::start(1, &[("BERTH_AGENT", &agent)]).await else { return };
    let workspace = &cluster.workspaces[0];
    cluster.open(&cluster.a, workspace).await;
    let (b_host, b_port) = cluster.b.preview.split_once(':').unwrap();
    let preview = reqwest::Client::builder()
        .resolve(&format!("{workspace}.preview.localhost"), format!("{b_host}:{b_port}").parse().unwrap())
        .build()
        .unwrap();
    let url = format!("http://{workspace}.preview.localhost:{b_port}/{port}/README.md");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let response = preview.get(&url).bearer_auth(ADMIN).send().await.unwrap();
        if response.status() == 200 {
            assert!(response.text().await.unwrap().starts_with('#'), "the workspace's README through b");
            break;
        }
        assert!(Instant::now() < deadline, "the preview never answered through b: {}", response.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_preview_ticket_is_good_once_for_the_whole_installation() {
    let Some(cluster) = Cluster::start(1, &[]).await else { return };
    let workspace = &cluster.workspaces[0];
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let sent = http
        .get(format!("{}/api/workspaces/{workspace}/preview?port=3000", cluster.a.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), reqwest::StatusCode::SEE_OTHER);
    let location = sent.headers()[reqwest::header::LOCATION].to_str().unwrap().to_owned();
    let query = location.split_once("/_berth/auth?").unwrap().1.to_owned();
    // The same ticket on each replica's preview host: the first trade works, the second
    // (on the other replica) is refused.
    let mut answers = Vec::new();
    for replica in [&cluster.a, &cluster.b] {
        let (host, port) = replica.preview.split_once(':').unwrap();
        let name = format!("{workspace}.preview.localhost");
        let preview = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&name, format!("{host}:{port}").parse().unwrap())
            .build()
            .unwrap();
        let answer = preview.get(format!("http://{name}:{port}/_berth/auth?{query}")).send().await.unwrap();
        answers.push(answer.status());
    }
    assert_eq!(answers, [reqwest::StatusCode::SEE_OTHER, reqwest::StatusCode::UNAUTHORIZED]);
}

#[tokio::test]
async fn sqlite_serves_one_replica_and_refuses_a_second_at_start() {
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/berth.db", data.path().display());
    let _first = Replica::start("first", data.path(), &database, &[]).await;
    let second = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("serve")
        .env("BERTH_DATA", data.path())
        .env("BERTH_DATABASE_URL", &database)
        .env("BERTH_REPLICA_ID", "second")
        .env("BERTH_LISTEN", "127.0.0.1:0")
        .env("BERTH_PREVIEW_LISTEN", "off")
        .env("BERTH_ADMIN_TOKEN", ADMIN)
        .env("BERTH_ISOLATION", "none")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{said}");
    assert!(said.contains("SQLite serves one replica") && said.contains("'first'"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replicas_docker_sandbox_is_removed_by_the_replica_that_ends_its_session() {
    if !berth_testkit::have_docker() {
        return;
    }
    let image = berth_testkit::docker_test_image(Path::new(env!("CARGO_BIN_EXE_berth")));
    let settings = [
        ("BERTH_SANDBOX", "docker"),
        ("BERTH_SANDBOX_IMAGE", image.as_str()),
        ("BERTH_SANDBOX_NETWORK", "outbound"),
        ("BERTH_AGENT", "exec sleep 2147483647"),
    ];
    let Some(mut cluster) = Cluster::start(1, &settings).await else { return };
    let session = cluster.open(&cluster.a, &cluster.workspaces[0]).await;
    let containers = || {
        let listed = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=berth.session={session}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&listed.stdout).lines().count()
    };
    assert_eq!(containers(), 1, "the session's container runs");
    cluster.a.child.kill().unwrap();
    cluster.a.child.wait().unwrap();
    assert_eq!(containers(), 1, "a container outlives the replica that made it");
    let (ended, _) = cluster.until_ended(&cluster.b, &session).await;
    assert_eq!(ended["end_reason"], "replica_lost");
    assert_eq!(containers(), 0, "the replica that ended the session removed its container");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_signed_in_by_cookie_reaches_a_session_on_another_replica() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let Some(cluster) = Cluster::start(1, &[]).await else { return };
    let session = cluster.open(&cluster.a, &cluster.workspaces[0]).await;
    let cookie = berth_testkit::sign_in_cookie(&cluster.b.base, ADMIN).await;
    // A page of b's origin opens the live channel with berth's cookie, as browsers do.
    let url = format!("{}/api/sessions/{session}/live?after=0", cluster.b.base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("cookie", cookie.parse().unwrap());
    request.headers_mut().insert("origin", cluster.b.base.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let first = tokio::time::timeout(PATIENCE, socket.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(first, Message::Text(_)), "{first:?}");
    // The same page from another origin is refused, forwarded or not.
    let url = format!("{}/api/sessions/{session}/live?after=0", cluster.b.base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("cookie", cookie.parse().unwrap());
    request.headers_mut().insert("origin", "http://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_err(), "a cross-origin page is refused");
}
