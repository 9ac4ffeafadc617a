//! A small client of berth's HTTP API for the CLI commands: adds the token, turns the
//! error envelope into a readable error.

use crate::ServerArgs;
use anyhow::{Context, anyhow};
use berth_server::wire::ErrorEnvelope;
use reqwest::Method;
use serde::de::DeserializeOwned;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(server: &ServerArgs) -> anyhow::Result<Client> {
        let token = server
            .token
            .clone()
            .ok_or_else(|| anyhow!("no token: set BERTH_TOKEN or pass --token (see `berth user add`)"))?;
        let http = reqwest::Client::builder().build().context("cannot build the HTTP client")?;
        Ok(Client { http, base: server.url.trim_end_matches('/').to_owned(), token })
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response =
            request.send().await.with_context(|| format!("cannot reach berth at {}", self.base))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorEnvelope>(&text) {
            Ok(envelope) => anyhow::Error::new(Refused { envelope }),
            Err(_) => anyhow!("berth answered {status}: {text}"),
        })
    }

    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<T> {
        let response = self.send(method, path, body).await?;
        response.json().await.context("berth's answer is not the expected JSON")
    }

    pub async fn text(&self, path: &str) -> anyhow::Result<String> {
        Ok(self.send(Method::GET, path, None).await?.text().await?)
    }
}

/// The server refused a request; its message is for people, its code for scripts.
#[derive(Debug)]
pub struct Refused {
    pub envelope: ErrorEnvelope,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.envelope.error.message, self.envelope.error.code)
    }
}

impl std::error::Error for Refused {}
