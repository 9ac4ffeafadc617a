//! A client of berth's HTTP API over the [`crate::wire`] types: the CLI's commands, the
//! bench, the drills and the tests speak to a server through it. It adds the token and
//! turns the error envelope into [`ClientError::Refused`], whose code scripts branch on.

use crate::wire::{CreateWorkspaceRequest, ErrorEnvelope, OpenBody, WorkspaceBody};
use reqwest::Method;
use serde::de::DeserializeOwned;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused: its message is for people, its code for scripts.
    #[error("{} ({})", .0.error.message, .0.error.code)]
    Refused(ErrorEnvelope),
    #[error("cannot reach berth at {base}: {source}")]
    Unreachable { base: String, source: reqwest::Error },
    #[error("berth answered {status}: {text}")]
    Unexpected { status: reqwest::StatusCode, text: String },
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client of the server at `base` (`http://host:port`) signed in with `token`.
    pub fn new(base: &str, token: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Sends a request; any answer but a success is an error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable { base: self.base.clone(), source })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorEnvelope>(&text) {
            Ok(envelope) => ClientError::Refused(envelope),
            Err(_) => ClientError::Unexpected { status, text },
        })
    }

    /// Sends a request and reads its answer as `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        serde_json::from_str(&text).map_err(|_| ClientError::Unexpected { status, text })
    }

    pub async fn text(&self, path: &str) -> Result<String, ClientError> {
        let response = self.send(Method::GET, path, None).await?;
        let status = response.status();
        response.text().await.map_err(|error| ClientError::Unexpected { status, text: error.to_string() })
    }

    pub async fn workspace(&self, id: &str) -> Result<WorkspaceBody, ClientError> {
        self.json(Method::GET, &format!("/api/workspaces/{id}"), None).await
    }

    /// Creates a workspace and waits (bounded by `patience`) until it has left
    /// `initialising`.
    pub async fn create_settled(
        &self,
        request: &CreateWorkspaceRequest,
        patience: Duration,
    ) -> Result<WorkspaceBody, ClientError> {
        let body = serde_json::to_value(request).unwrap_or_default();
        let created: WorkspaceBody = self.json(Method::POST, "/api/workspaces", Some(&body)).await?;
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let workspace = self.workspace(&created.id).await?;
            if workspace.state != "initialising" || tokio::time::Instant::now() >= deadline {
                return Ok(workspace);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Opens a workspace: its live session, new or resumed.
    pub async fn open(&self, workspace: &str) -> Result<OpenBody, ClientError> {
        self.json(Method::POST, &format!("/api/workspaces/{workspace}/open"), None).await
    }
}
