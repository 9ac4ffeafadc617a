//! Sessions: open (or resume) a workspace, list, show, close one, close all, leave; and
//! the administrators' view over the whole installation.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiQuery, Caller};
use crate::wire::{
    AdminSessionBody, AdminSessionList, CloseAllBody, CloseAllRequest, CloseBody, CloseFailureBody,
    ErrorEnvelope, OpenBody, PortsBody, SessionBody, SessionList, SessionListQuery,
};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_engine::{CloseAllReport, CloseAllScope, OpenOutcome};
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions", get(list_sessions))
        .route("/api/sessions/close-all", post(close_all))
        .route("/api/sessions/{id}", get(show_session))
        .route("/api/sessions/{id}/close", post(close_session))
        .route("/api/admin/sessions", get(admin_list_sessions))
        .route("/api/admin/sessions/close-all", post(admin_close_all))
}

/// What only the session's owner serves ([`crate::replicas::owner_routes`]).
pub fn owner_router() -> Router<AppState> {
    Router::new()
        .route("/api/workspaces/{id}/open", post(open_workspace))
        .route("/api/sessions/{id}/ports", get(session_ports))
        .route("/api/sessions/{id}/leave", post(leave_session))
}

fn open_body(outcome: &OpenOutcome) -> OpenBody {
    match outcome {
        OpenOutcome::Opened { session, replaced } => OpenBody {
            session: SessionBody::from(session),
            resumed: false,
            replaced: replaced.iter().map(ToString::to_string).collect(),
        },
        OpenOutcome::Resumed { session } => {
            OpenBody { session: SessionBody::from(session), resumed: true, replaced: Vec::new() }
        }
    }
}

/// Opens a workspace: `201` with a new session, or `200` with `resumed: true` when it
/// already had one (a second tab never starts a second session).
#[utoipa::path(post, path = "/api/workspaces/{id}/open", tag = "sessions",
    params(("id" = String, Path, description = "workspace id")),
    responses((status = 201, body = OpenBody), (status = 200, body = OpenBody, description = "resumed"),
        (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "workspace_not_ready or session_limit (with limit and active_sessions)"),
        (status = 502, body = ErrorEnvelope, description = "sandbox_failed or replace_failed"),
        (status = 503, body = ErrorEnvelope, description = "controllers_busy, with retry_after_s and Retry-After")))]
pub async fn open_workspace(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let outcome = state.engine.sessions.open(&caller, &id).await?;
    let status = match outcome {
        OpenOutcome::Opened { .. } => StatusCode::CREATED,
        OpenOutcome::Resumed { .. } => StatusCode::OK,
    };
    Ok((status, Json(open_body(&outcome))))
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/api/sessions", tag = "sessions",
    params(("state" = Option<String>, Query, description = "`live` (the default)")),
    responses((status = 200, body = SessionList), (status = 400, body = ErrorEnvelope)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<SessionListQuery>,
) -> Result<Json<SessionList>, ApiError> {
    if query.state.as_deref().is_some_and(|wanted| wanted != "live") {
        return Err(ApiError::invalid_request("state must be 'live'"));
    }
    let sessions = state.engine.sessions.live_sessions(&caller).await?;
    Ok(Json(SessionList { sessions: sessions.iter().map(SessionBody::from).collect() }))
}

/// One session.
#[utoipa::path(get, path = "/api/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionBody), (status = 404, body = ErrorEnvelope)))]
pub async fn show_session(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionBody>, ApiError> {
    Ok(Json(SessionBody::from(&state.engine.sessions.session(&caller, &id).await?)))
}

/// Closes exactly this session and powers its sandbox off. Idempotent.
#[utoipa::path(post, path = "/api/sessions/{id}/close", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = CloseBody), (status = 404, body = ErrorEnvelope),
        (status = 502, body = ErrorEnvelope, description = "close_failed, with the reason")))]
pub async fn close_session(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<CloseBody>, ApiError> {
    let session = state.engine.sessions.close(&caller, &id).await?;
    Ok(Json(CloseBody { outcome: "workspace_closed".into(), session: SessionBody::from(&session) }))
}

/// The browser's leave signal (sent with `sendBeacon`): ends the session, or opens the
/// reconnect grace window while the agent works.
#[utoipa::path(post, path = "/api/sessions/{id}/leave", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn leave_session(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.sessions.leave(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Closes every live session of the caller in parallel; reports each one; optionally
/// relaunches the workspace that was blocked.
#[utoipa::path(post, path = "/api/sessions/close-all", tag = "sessions", request_body = Option<CloseAllRequest>,
    responses((status = 200, body = CloseAllBody), (status = 400, body = ErrorEnvelope)))]
pub async fn close_all(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Bytes,
) -> Result<Json<CloseAllBody>, ApiError> {
    let request: CloseAllRequest = crate::extract::optional_object(&body)?;
    let report =
        state.engine.sessions.close_all(&caller, CloseAllScope::Own, request.retry_open.as_deref()).await?;
    Ok(Json(close_all_body(report)))
}

/// Every live session of the installation, with its user's and workspace's names
/// (administrators).
#[utoipa::path(get, path = "/api/admin/sessions", tag = "admin",
    responses((status = 200, body = AdminSessionList), (status = 403, body = ErrorEnvelope)))]
pub async fn admin_list_sessions(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<AdminSessionList>, ApiError> {
    Ok(Json(admin_session_list(&state.engine, &caller).await?))
}

/// Every live session of the installation with its names (administrators only).
pub(crate) async fn admin_session_list(
    engine: &berth_engine::Engine,
    caller: &berth_core::User,
) -> Result<AdminSessionList, ApiError> {
    let sessions = engine.sessions.all_live_sessions_named(caller).await?;
    let body = |(session, names): (berth_core::Session, Option<(String, String)>)| {
        let (user_name, workspace_name) = names.unzip();
        AdminSessionBody { session: SessionBody::from(&session), user_name, workspace_name }
    };
    Ok(AdminSessionList { sessions: sessions.into_iter().map(body).collect() })
}

/// Closes every live session of the installation (administrators).
#[utoipa::path(post, path = "/api/admin/sessions/close-all", tag = "admin",
    responses((status = 200, body = CloseAllBody), (status = 403, body = ErrorEnvelope)))]
pub async fn admin_close_all(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Bytes,
) -> Result<Json<CloseAllBody>, ApiError> {
    let request: CloseAllRequest = crate::extract::optional_object(&body)?;
    let report = state
        .engine
        .sessions
        .close_all(&caller, CloseAllScope::Installation, request.retry_open.as_deref())
        .await?;
    Ok(Json(close_all_body(report)))
}

/// Close-all takes an optional JSON body: nothing at all, or `null`, is the same as `{}`.
fn close_all_body(report: CloseAllReport) -> CloseAllBody {
    let retried_open = report.retried_open.map(|result| match result {
        Ok(outcome) => serde_json::to_value(open_body(&outcome)).unwrap_or(Value::Null),
        Err(error) => {
            let refusal = ApiError::from(error);
            let mut body = *refusal.extra;
            body.insert("code".into(), Value::from(refusal.code));
            body.insert("message".into(), Value::from(refusal.message));
            json!({ "error": body })
        }
    });
    CloseAllBody {
        outcome: report.outcome.as_str().into(),
        closed: report.closed.iter().map(ToString::to_string).collect(),
        failed: report
            .failed
            .into_iter()
            .map(|failure| CloseFailureBody {
                session_id: failure.session_id.to_string(),
                code: failure.code.into(),
                message: failure.message,
            })
            .collect(),
        retried_open,
    }
}

/// The ports something listens on inside the caller's live session (those the preview
/// may reach), read from the kernel's view of the sandbox's own network.
#[utoipa::path(get, path = "/api/sessions/{id}/ports", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = PortsBody), (status = 404, body = ErrorEnvelope, description = "not_found, no_live_session"),
        (status = 409, body = ErrorEnvelope, description = "ports_unavailable: the sandbox shares the host's network, or its driver cannot tell")))]
pub async fn session_ports(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<PortsBody>, ApiError> {
    Ok(Json(PortsBody { ports: state.engine.previews.ports(&caller, &id).await? }))
}
