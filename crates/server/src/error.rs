//! The one error type of the API: a status, a stable code, a message for people and
//! optional extra fields, rendered as `{"error": {...}}`. Internal failures are logged
//! with their cause and answered with a generic message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_engine::EngineError;
use serde_json::{Map, Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Boxed: an error travels in every handler's `Result` and should stay small.
    pub extra: Box<Map<String, Value>>,
    /// Seconds for a `Retry-After` header.
    pub retry_after_s: Option<u64>,
    /// The replica that can answer instead (the session it needs lives there).
    pub elsewhere: Option<berth_engine::Peer>,
}

/// In a response's extensions: the replica that can answer the request instead.
#[derive(Debug, Clone)]
pub struct AnswerElsewhere(pub berth_engine::Peer);

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Box::default(),
            retry_after_s: None,
            elsewhere: None,
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_owned(), value);
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid token is needed: send 'Authorization: Bearer <token>' or log in",
        )
    }

    fn internal(context: &str, error: &dyn std::error::Error) -> ApiError {
        let mut chain = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(error = %chain, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "berth failed to do this; the server log says why",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = *self.extra;
        body.insert("code".into(), Value::from(self.code));
        body.insert("message".into(), Value::from(self.message));
        let mut response = (self.status, Json(json!({ "error": body }))).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(peer) = self.elsewhere {
            response.extensions_mut().insert(AnswerElsewhere(peer));
        }
        response
    }
}

impl From<EngineError> for ApiError {
    /// The one mapping of engine errors to answers: the engine's stable `code()` and its
    /// message for people, the status of [`status_of`], and the fields a few codes carry.
    /// What is berth's own failure is logged and answered `internal` without its cause.
    fn from(error: EngineError) -> ApiError {
        let status = status_of(&error);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            if let EngineError::Git { .. } = error {
                let mut failure = ApiError::internal("git failed", &error);
                failure.code = "git_failed";
                failure.message = "git could not read this workspace; the server log says why".into();
                return failure;
            }
            return ApiError::internal("engine failed", &error);
        }
        if error.code() == "store_unavailable" {
            tracing::error!(error = ?error, "the database does not answer");
        }
        let message = match &error {
            EngineError::Git { source, .. } => {
                format!("git cannot read this workspace's checkout: {}", source.summary())
            }
            error => error.to_string(),
        };
        let answer = ApiError::new(status, error.code(), message);
        match error {
            EngineError::NameTaken { name } => answer.with("name", Value::from(name)),
            EngineError::UnsavedWork { status, .. } => answer.with(
                "git",
                serde_json::to_value(status.map(|status| crate::wire::GitStatusBody::from(*status)))
                    .unwrap_or(Value::Null),
            ),
            EngineError::WrongState { state, .. } | EngineError::NotRetryable { state, .. } => {
                answer.with("state", Value::from(state.as_str()))
            }
            EngineError::SessionLimit { limit, active_sessions } => {
                let sessions: Vec<_> = active_sessions.iter().map(crate::wire::SessionBody::from).collect();
                answer
                    .with("limit", Value::from(limit))
                    .with("active_sessions", serde_json::to_value(sessions).unwrap_or(Value::Null))
            }
            EngineError::SessionElsewhere { peer } => {
                let mut elsewhere = answer.with("retry_after_s", Value::from(1));
                elsewhere.retry_after_s = Some(1);
                elsewhere.elsewhere = Some(peer);
                elsewhere
            }
            EngineError::ControllersBusy { retry_after } => {
                let seconds = retry_after.as_secs();
                let mut busy = answer.with("retry_after_s", Value::from(seconds));
                busy.retry_after_s = Some(seconds);
                busy
            }
            EngineError::FileChanged { sha } => {
                answer.with("sha", sha.clone().map_or(Value::Null, Value::from))
            }
            EngineError::TooManyTerminals { limit } => answer.with("limit", Value::from(limit)),
            EngineError::AgentNeedsSecrets { agent, missing } => {
                answer.with("agent", Value::from(agent.clone())).with("missing", Value::from(missing.clone()))
            }
            EngineError::AgentNotInstalled { agent, .. } => answer.with("agent", Value::from(agent.clone())),
            EngineError::ReplaceFailed { session_id, .. } | EngineError::CloseFailed { session_id, .. } => {
                answer.with("session_id", Value::from(session_id.to_string()))
            }
            _ => answer,
        }
    }
}

/// The HTTP status of each engine error.
fn status_of(error: &EngineError) -> StatusCode {
    match error {
        EngineError::Invalid(_)
        | EngineError::InvalidPort { .. }
        | EngineError::InvalidPrompt { .. }
        | EngineError::InvalidOption { .. } => StatusCode::BAD_REQUEST,
        EngineError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
        EngineError::Forbidden { .. } | EngineError::PortNotAllowed { .. } => StatusCode::FORBIDDEN,
        EngineError::NotFound { .. } | EngineError::NoLiveSession => StatusCode::NOT_FOUND,
        EngineError::BinaryFile { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        EngineError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        EngineError::NameTaken { .. }
        | EngineError::UnsavedWork { .. }
        | EngineError::WrongState { .. }
        | EngineError::NotRetryable { .. }
        | EngineError::SessionLimit { .. }
        | EngineError::PushFailed { .. }
        | EngineError::SessionNotActive
        | EngineError::SessionEnded
        | EngineError::TurnInProgress
        | EngineError::QuestionNotPending
        | EngineError::Transition(_)
        | EngineError::InvalidTokenName { .. }
        | EngineError::InvalidExpiry { .. }
        | EngineError::CannotChangeYourself
        | EngineError::ManagedByProvider { .. }
        | EngineError::NothingToCommit
        | EngineError::WorkspaceActive
        | EngineError::BranchSwitchFailed { .. }
        | EngineError::SessionNotLive
        | EngineError::TooManyTerminals { .. }
        | EngineError::TerminalUnavailable { .. }
        | EngineError::FileChanged { .. }
        | EngineError::FileExists { .. }
        | EngineError::AgentNotInstalled { .. }
        | EngineError::AgentNeedsSecrets { .. }
        | EngineError::PortsUnavailable { .. } => StatusCode::CONFLICT,
        EngineError::FileTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        EngineError::Git { source, .. } if source.is_about_the_checkout() => StatusCode::CONFLICT,
        EngineError::ReplaceFailed { .. }
        | EngineError::CloseFailed { .. }
        | EngineError::PreviewUnreachable { .. }
        | EngineError::SandboxFailed { .. } => StatusCode::BAD_GATEWAY,
        EngineError::ControllersBusy { .. } | EngineError::SessionElsewhere { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        EngineError::Store { .. } if error.code() == "store_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        EngineError::Git { .. }
        | EngineError::Io { .. }
        | EngineError::Store { .. }
        | EngineError::Sandbox { .. }
        | EngineError::OneReplicaOnly { .. }
        | EngineError::Unsupported { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(crate) async fn not_found_fallback() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub(crate) async fn method_not_allowed_fallback() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}
