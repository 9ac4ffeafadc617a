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
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), extra: Box::default(), retry_after_s: None }
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
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> ApiError {
        let code = error.code();
        match error {
            EngineError::Invalid(input) => {
                ApiError::new(StatusCode::BAD_REQUEST, input.field.error_code(), input.reason)
            }
            EngineError::NotFound { what } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
            }
            EngineError::Forbidden { action } => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("only administrators may {action}"))
            }
            EngineError::NameTaken { name } => ApiError::new(
                StatusCode::CONFLICT,
                "name_taken",
                format!("the name '{name}' is already taken"),
            )
            .with("name", Value::from(name)),
            EngineError::UnsavedWork { status, reason, .. } => ApiError::new(
                StatusCode::CONFLICT,
                "unsaved_work",
                format!("{reason}; delete with force=true to destroy them"),
            )
            .with(
                "git",
                serde_json::to_value(status.map(|status| crate::wire::GitStatusBody::from(*status)))
                    .unwrap_or(Value::Null),
            ),
            EngineError::WrongState { state, .. } => ApiError::new(
                StatusCode::CONFLICT,
                "workspace_not_ready",
                format!("the workspace is {state}, not ready"),
            )
            .with("state", Value::from(state.as_str())),
            EngineError::NotRetryable { state, .. } => ApiError::new(
                StatusCode::CONFLICT,
                "not_retryable",
                format!("only a workspace in error can be retried; this one is {state}"),
            )
            .with("state", Value::from(state.as_str())),
            EngineError::SessionLimit { limit, ref active_sessions } => {
                let sessions: Vec<_> = active_sessions.iter().map(crate::wire::SessionBody::from).collect();
                ApiError::new(
                    StatusCode::CONFLICT,
                    code,
                    format!("{error}: close a session first, or close all and retry"),
                )
                .with("limit", Value::from(limit))
                .with("active_sessions", serde_json::to_value(sessions).unwrap_or(Value::Null))
            }
            EngineError::ControllersBusy { retry_after } => {
                let seconds = retry_after.as_secs();
                let mut busy = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    code,
                    "controllers are busy: every sandbox slot is taken",
                )
                .with("retry_after_s", Value::from(seconds));
                busy.retry_after_s = Some(seconds);
                busy
            }
            EngineError::ReplaceFailed { ref session_id, .. }
            | EngineError::CloseFailed { ref session_id, .. } => {
                let session_id = session_id.to_string();
                ApiError::new(StatusCode::BAD_GATEWAY, code, error.to_string())
                    .with("session_id", Value::from(session_id))
            }
            EngineError::Refused { message, .. } => ApiError::new(StatusCode::CONFLICT, code, message),
            EngineError::InvalidPrompt { .. } | EngineError::InvalidOption { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, code, error.to_string())
            }
            EngineError::RateLimited { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, error.to_string())
            }
            EngineError::SessionNotActive
            | EngineError::SessionEnded
            | EngineError::TurnInProgress
            | EngineError::QuestionNotPending
            | EngineError::Transition(_) => ApiError::new(StatusCode::CONFLICT, code, error.to_string()),
            EngineError::PushFailed { .. } => ApiError::new(StatusCode::CONFLICT, code, error.to_string()),
            EngineError::InvalidPort { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, code, error.to_string())
            }
            EngineError::PortNotAllowed { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, code, error.to_string())
            }
            EngineError::BinaryFile { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, error.to_string())
            }
            EngineError::NoLiveSession => ApiError::new(StatusCode::NOT_FOUND, code, error.to_string()),
            EngineError::Unauthorized { message } => ApiError::new(StatusCode::UNAUTHORIZED, code, message),
            EngineError::PreviewUnreachable { .. } | EngineError::SandboxFailed { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, code, error.to_string())
            }
            EngineError::Git { ref source, .. } if source.is_about_the_checkout() => ApiError::new(
                StatusCode::CONFLICT,
                code,
                format!("git cannot read this workspace's checkout: {}", source.summary()),
            ),
            error @ EngineError::Git { .. } => {
                let mut failure = ApiError::internal("git failed", &error);
                failure.code = "git_failed";
                failure.message = "git could not read this workspace; the server log says why".into();
                failure
            }
            error @ (EngineError::Io { .. }
            | EngineError::Store { .. }
            | EngineError::Sandbox { .. }
            | EngineError::Unsupported { .. }) => ApiError::internal("engine failed", &error),
        }
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
