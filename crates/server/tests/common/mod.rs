//! A real berth server on `127.0.0.1:0` with its own data directory, and a small JSON
//! client for the tests that talk to it.
#![allow(dead_code)] // each test binary uses its own part of the helpers
#![allow(clippy::unwrap_used)] // a test helper that cannot unwrap is a failed test

use berth_engine::{Config, Engine};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

pub const ADMIN_TOKEN: &str = "berth_test_admin_token_0123456789";

pub struct TestServer {
    pub url: String,
    pub data: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    http: reqwest::Client,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let data = tempfile::tempdir().unwrap();
        TestServer::start_in(data).await
    }

    async fn start_in(data: tempfile::TempDir) -> TestServer {
        let mut config = Config::for_data_dir(data.path());
        config.admin_token = Some(ADMIN_TOKEN.into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let engine = Engine::start(config).await.unwrap();
        engine.ensure_admin().await.unwrap();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(berth_server::run(listener, engine, async {
            let _ = stop.await;
        }));
        TestServer { url, data, shutdown: Some(shutdown), served: Some(served), http: reqwest::Client::new() }
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.served.take().unwrap().await.unwrap().unwrap();
        std::mem::replace(&mut self.data, tempfile::tempdir().unwrap())
    }

    pub async fn restart(self) -> TestServer {
        let data = self.stop().await;
        TestServer::start_in(data).await
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

    /// Everything under the data directory's `workspaces/`.
    pub fn workspace_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.data.path().join("workspaces"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub base: String,
    token: Option<String>,
}

impl Api {
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
