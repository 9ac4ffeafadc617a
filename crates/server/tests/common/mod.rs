//! A real berth server on `127.0.0.1:0` with its own data directory, and a small JSON
//! client for the tests that talk to it.
#![allow(dead_code)] // each test binary uses its own part of the helpers
#![allow(clippy::unwrap_used)] // a test helper that cannot unwrap is a failed test

use berth_engine::{Config, Engine};
use berth_sandbox::{DEFAULT_STOP_TIMEOUT, FaultyDriver, LocalDriver, SandboxDriver};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use berth_testkit::process_runs;

pub const ADMIN_TOKEN: &str = "berth_test_admin_token_0123456789";

/// A stand-in agent for the tests of sessions and sandboxes: a real process that writes its
/// pid where berth keeps its own files (never part of git status) and then only waits. It
/// does not speak ACP, so its connection never becomes ready, which these tests do not need.
pub const PID_WRITING_AGENT: &str = "mkdir -p .berth && echo $$ > .berth/agent.pid && exec sleep 600";

fn test_config(data: &Path) -> Config {
    let mut config = Config::for_data_dir(data);
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.agent_command = Some(PID_WRITING_AGENT.into());
    config
}

/// The pid the stand-in agent of a workspace wrote, once it has.
pub async fn agent_pid(checkout: &Path) -> i32 {
    let pid_file = checkout.join(".berth/agent.pid");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|text| text.trim().parse().ok()) {
            return pid;
        }
        assert!(tokio::time::Instant::now() < deadline, "no agent pid in {}", pid_file.display());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (bounded) until a process has gone; power off returns once the agent has
/// exited, so this only covers the kernel's reaping.
pub async fn process_gone(pid: i32) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while process_runs(pid) {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// The server of [`berth_server::testing`] with its data directory and the helpers of
/// these tests.
pub struct TestServer {
    pub url: String,
    pub data: tempfile::TempDir,
    pub engine: Arc<Engine>,
    server: Option<berth_server::testing::TestServer>,
    http: reqwest::Client,
}

impl TestServer {
    /// Waits until no sandbox slot is held: a session's end is stored a moment before
    /// its owner gives its slot back.
    pub async fn until_no_sandbox_runs(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.engine.sessions.running_sandbox_count() != 0 {
            assert!(std::time::Instant::now() < deadline, "a sandbox slot is still held");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// A server whose configuration `adjust` changes from the test defaults.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let data = tempfile::tempdir().unwrap();
        let mut config = test_config(data.path());
        adjust(&mut config);
        TestServer::start_in(data, config, None).await
    }

    /// A server that knows its own address before it starts (`public_url`, and what
    /// `adjust` makes of it: an OpenID provider's redirect address).
    pub async fn start_with_url(adjust: impl FnOnce(&mut Config, &str)) -> TestServer {
        let data = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut config = test_config(data.path());
        config.public_url = url.clone();
        adjust(&mut config, &url);
        TestServer::serve(data, config, None, listener).await
    }

    /// A server whose sandboxes go through a fault injector around the real local driver.
    pub async fn start_faulty(adjust: impl FnOnce(&mut Config)) -> (TestServer, Arc<FaultyDriver>) {
        let data = tempfile::tempdir().unwrap();
        let mut config = test_config(data.path());
        adjust(&mut config);
        let real = LocalDriver::new(&data.path().join("sandboxes"), DEFAULT_STOP_TIMEOUT).unwrap();
        let faulty = Arc::new(FaultyDriver::new(Arc::new(real)));
        let server = TestServer::start_in(data, config, Some(faulty.clone() as Arc<dyn SandboxDriver>)).await;
        (server, faulty)
    }

    async fn start_in(
        data: tempfile::TempDir,
        config: Config,
        driver: Option<Arc<dyn SandboxDriver>>,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestServer::serve(data, config, driver, listener).await
    }

    async fn serve(
        data: tempfile::TempDir,
        config: Config,
        driver: Option<Arc<dyn SandboxDriver>>,
        listener: tokio::net::TcpListener,
    ) -> TestServer {
        let server = berth_server::testing::TestServer::start_on(listener, config, driver).await.unwrap();
        TestServer {
            url: server.url.clone(),
            data,
            engine: Arc::clone(&server.engine),
            server: Some(server),
            http: reqwest::Client::new(),
        }
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        self.server.take().unwrap().stop().await.unwrap();
        std::mem::replace(&mut self.data, tempfile::tempdir().unwrap())
    }

    pub async fn restart(self) -> TestServer {
        let data = self.stop().await;
        let config = test_config(data.path());
        TestServer::start_in(data, config, None).await
    }

    pub fn admin(&self) -> Api {
        self.as_user(ADMIN_TOKEN)
    }

    pub fn as_user(&self, token: &str) -> Api {
        Api { http: self.http.clone(), base: self.url.clone(), token: Some(token.to_owned()) }
    }

    pub fn anonymous(&self) -> Api {
        Api { http: self.http.clone(), base: self.url.clone(), token: None }
    }

    /// Creates a member and returns a client that acts as them.
    pub async fn member(&self, name: &str) -> Api {
        let (status, body) = self.admin().post("/api/users", serde_json::json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.as_user(body["token"].as_str().unwrap())
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    pub fn checkout(&self, workspace_id: &str) -> PathBuf {
        self.data.path().join("workspaces").join(workspace_id)
    }

    /// Everything under the data directory's `workspaces/`.
    pub fn workspace_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.data.path().join("workspaces"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        berth_testkit::kill_recorded_sandboxes(self.data.path());
    }
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub base: String,
    token: Option<String>,
}

impl Api {
    pub fn new(http: reqwest::Client, base: &str, token: Option<&str>) -> Api {
        Api { http, base: base.to_owned(), token: token.map(str::to_owned) }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.request(Method::POST, path).json(&body)).await
    }

    /// Opens a workspace and returns the answer's status and body.
    pub async fn open(&self, workspace_id: &str) -> (StatusCode, Value) {
        self.post(&format!("/api/workspaces/{workspace_id}/open"), Value::Null).await
    }

    pub async fn session(&self, session_id: &str) -> Value {
        let (status, session) = self.get(&format!("/api/sessions/{session_id}")).await;
        assert_eq!(status, StatusCode::OK, "{session}");
        session
    }

    /// Creates and waits for a ready workspace of `repo`, returning its id.
    pub async fn ready_workspace(&self, repo: &str, name: &str) -> String {
        let workspace = self.create_settled(serde_json::json!({ "repo": repo, "name": name })).await;
        assert_eq!(workspace["state"], "ready", "{workspace}");
        workspace["id"].as_str().unwrap().to_owned()
    }

    /// The same caller on `workspace_id`'s preview host (its `preview_url`, a name under
    /// `preview.localhost` that this client resolves to the loopback address as browsers
    /// do). Redirects are not followed, so a test sees each one.
    pub async fn previews(&self, workspace_id: &str) -> Api {
        let (status, workspace) = self.get(&format!("/api/workspaces/{workspace_id}")).await;
        assert_eq!(status, StatusCode::OK, "{workspace}");
        let base = workspace["preview_url"].as_str().expect("previews are served").to_owned();
        Api { http: berth_testkit::loopback_client(&base), base, token: self.token.clone() }
    }

    /// The same caller with a client that does not follow redirects.
    pub fn not_following(&self) -> Api {
        Api {
            http: berth_testkit::loopback_client(&self.base),
            base: self.base.clone(),
            token: self.token.clone(),
        }
    }

    /// This client without its token.
    pub fn without_token(&self) -> Api {
        Api { http: self.http.clone(), base: self.base.clone(), token: None }
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::DELETE, path)).await
    }

    /// Creates a workspace and waits (bounded) until it has left `initialising`.
    pub async fn create_settled(&self, body: Value) -> Value {
        let (status, created) = self.post("/api/workspaces", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{created}");
        assert_eq!(created["state"], "initialising");
        self.settled(created["id"].as_str().unwrap()).await
    }

    /// Polls the workspace until it is no longer `initialising`: the API offers no push
    /// for this yet, so the condition is awaited with a deadline.
    pub async fn settled(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, workspace) = self.get(&format!("/api/workspaces/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{workspace}");
            if workspace["state"] != "initialising" {
                return workspace;
            }
            assert!(tokio::time::Instant::now() < deadline, "workspace {id} still initialising");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
