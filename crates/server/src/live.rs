//! The live channel (`GET /api/sessions/{id}/live?after=SEQ`, WebSocket) and the history
//! endpoints. A client gets the workspace's history after `after` (every session, so a
//! reopened workspace shows its whole conversation), then live events, session changes
//! and questions; it sends prompts, answers and cancels. A client that falls more than
//! the live buffer behind is disconnected and resumes with `after`: history is stored
//! first, so it loses nothing. When the last client of a session goes, the person left.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiQuery, Caller};
use crate::wire::{ErrorEnvelope, EventBody, EventPage, EventQuery, LiveCommand, SessionBody};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use berth_core::User;
use berth_engine::{Engine, LiveMessage};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// Events per page of history (and per replay step).
const PAGE: i64 = 500;
/// The most a client frame may hold.
const MAX_FRAME_BYTES: usize = 256 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions/{id}/events", get(session_events))
        .route("/api/workspaces/{id}/events", get(workspace_events))
}

/// What only the session's owner serves ([`crate::replicas::owner_routes`]).
pub fn owner_router() -> Router<AppState> {
    Router::new().route("/api/sessions/{id}/live", get(live))
}

fn page(events: Vec<berth_core::Event>, after: i64) -> EventPage {
    let next_after = events.last().map_or(after, |event| event.seq);
    EventPage { events: events.iter().map(EventBody::from).collect(), next_after }
}

fn bounds(query: &EventQuery) -> (i64, i64) {
    (query.after.unwrap_or(0).max(0), query.limit.unwrap_or(PAGE).clamp(1, 5000))
}

/// A session's history, oldest first.
#[utoipa::path(get, path = "/api/sessions/{id}/events", tag = "sessions",
    params(("id" = String, Path, description = "session id"), ("after" = Option<i64>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = EventPage), (status = 404, body = ErrorEnvelope)))]
pub async fn session_events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let (after, limit) = bounds(&query);
    Ok(Json(page(state.engine.sessions.session_events(&caller, &id, after, limit).await?, after)))
}

/// A workspace's whole history across its sessions, oldest first.
#[utoipa::path(get, path = "/api/workspaces/{id}/events", tag = "workspaces",
    params(("id" = String, Path, description = "workspace id"), ("after" = Option<i64>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = EventPage), (status = 404, body = ErrorEnvelope)))]
pub async fn workspace_events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let (after, limit) = bounds(&query);
    Ok(Json(page(state.engine.sessions.workspace_events(&caller, &id, after, limit).await?, after)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    #[serde(default)]
    after: Option<i64>,
}

/// The live channel: a WebSocket of the session's history after `after`, then its live
/// events, session changes and waiting questions; prompts, answers and cancels go back
/// (API.md "Live channel").
#[utoipa::path(get, path = "/api/sessions/{id}/live", tag = "sessions",
    params(("id" = String, Path, description = "session id"),
        ("after" = Option<i64>, Query, description = "replay history after this seq")),
    responses((status = 101, description = "switched to the WebSocket live channel"),
        (status = 400, body = ErrorEnvelope, description = "websocket_required: not a WebSocket upgrade"),
        (status = 404, body = ErrorEnvelope)))]
pub async fn live(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<LiveQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| websocket_required("the live channel", &rejection))?;
    // Attach before upgrading, so a refusal is an ordinary HTTP error.
    let subscription = state.engine.sessions.attach_live(&caller, &id).await?;
    let engine = Arc::clone(&state.engine);
    let after = query.after.unwrap_or(0).max(0);
    // Client frames are small commands: small buffers keep 1,000 connections cheap (the
    // default read buffer alone is 128 KiB per connection).
    let upgrade =
        upgrade.read_buffer_size(4 * 1024).write_buffer_size(8 * 1024).max_write_buffer_size(4 << 20);
    Ok(upgrade.max_message_size(MAX_FRAME_BYTES).on_upgrade(move |socket| async move {
        if let Err(error) = serve_live(socket, engine, caller, subscription, after).await {
            tracing::debug!(error = %error, "live channel closed");
        }
    }))
}

/// The answer to a plain request on a WebSocket route.
pub(crate) fn websocket_required(
    what: &str,
    rejection: &axum::extract::ws::rejection::WebSocketUpgradeRejection,
) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "websocket_required",
        format!("{what} is a WebSocket: {}", rejection.body_text()),
    )
}

fn frame(value: Value) -> Message {
    Message::Text(value.to_string().into())
}

fn error_frame(code: &str, message: &str) -> Message {
    frame(json!({ "type": "error", "error": { "code": code, "message": message } }))
}

async fn serve_live(
    socket: WebSocket,
    engine: Arc<Engine>,
    caller: User,
    subscription: berth_engine::LiveSubscription,
    after: i64,
) -> Result<(), axum::Error> {
    let berth_engine::LiveSubscription { session, mut messages, pending_questions, attachment } =
        subscription;
    let session_id = session.id.to_string();
    let (mut sink, mut stream) = socket.split();
    let mut last = after;
    loop {
        // The whole conversation of the workspace, across its sessions, comes back.
        let events = match engine
            .sessions
            .workspace_events(&caller, session.workspace_id.as_str(), last, PAGE)
            .await
        {
            Ok(events) => events,
            Err(error) => {
                sink.send(error_frame("internal", &error.to_string())).await?;
                return Ok(());
            }
        };
        for event in &events {
            sink.send(frame(json!({ "type": "event", "event": EventBody::from(event) }))).await?;
            last = event.seq;
        }
        if (events.len() as i64) < PAGE {
            break;
        }
    }
    sink.send(frame(json!({ "type": "session", "session": SessionBody::from(&session) }))).await?;
    for question in pending_questions {
        sink.send(frame(json!({ "type": "question", "question": question }))).await?;
    }
    loop {
        tokio::select! {
            message = messages.recv() => match message.as_deref() {
                Ok(LiveMessage::Event(event)) if event.seq <= last => {}
                Ok(LiveMessage::Event(event)) => {
                    last = event.seq;
                    sink.send(frame(json!({ "type": "event", "event": EventBody::from(event) }))).await?;
                }
                Ok(LiveMessage::Session(session)) => {
                    sink.send(frame(json!({ "type": "session", "session": SessionBody::from(session) }))).await?;
                    if !session.state.is_live() {
                        break;
                    }
                }
                Ok(LiveMessage::Question(question)) => {
                    sink.send(frame(json!({ "type": "question", "question": question }))).await?;
                }
                Err(RecvError::Lagged(_)) => {
                    let message = format!("this connection fell behind; reconnect with after={last}");
                    sink.send(error_frame("too_slow", &message)).await?;
                    break;
                }
                Err(RecvError::Closed) => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(refusal) = handle_command(&engine, &caller, &session_id, &text).await {
                        sink.send(refusal).await?;
                    }
                }
                Some(Ok(Message::Binary(_))) => sink.send(error_frame("invalid_frame", "send JSON text frames")).await?,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
        }
    }
    drop(attachment);
    // Best effort: the client may be gone already.
    let _ = sink.send(Message::Close(None)).await;
    Ok(())
}

/// Applies a client's command; returns an error frame when it was refused.
async fn handle_command(engine: &Engine, caller: &User, session_id: &str, text: &str) -> Option<Message> {
    let command = match serde_json::from_str::<LiveCommand>(text) {
        Ok(command) => command,
        Err(error) => return Some(error_frame("invalid_frame", &format!("not a command: {error}"))),
    };
    let outcome = match command {
        LiveCommand::Prompt { text } => engine.sessions.prompt(caller, session_id, &text).await.map(drop),
        LiveCommand::Cancel => engine.sessions.cancel(caller, session_id).await,
        LiveCommand::Answer { question_id, option_id } => {
            engine.sessions.answer(caller, session_id, &question_id, &option_id).await.map(drop)
        }
    };
    outcome.err().map(|error| {
        let refusal = ApiError::from(error);
        error_frame(refusal.code, &refusal.message)
    })
}
