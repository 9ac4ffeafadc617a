//! Terminals (API.md "Terminals"): shells in a live session's sandbox, for its owner,
//! served by the replica that owns the session (these are owner routes, forwarded there
//! like the live channel). A terminal's WebSocket sends the current screen first on
//! every connect, then the output as binary frames; the client sends what is typed and
//! resizes as JSON text frames.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::wire::{ErrorEnvelope, OpenTerminalRequest, TerminalBody, TerminalCommand, TerminalList};
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use berth_engine::TerminalAttachment;
use berth_engine::TerminalSize;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

/// The most a client frame may hold (a paste).
const MAX_FRAME_BYTES: usize = 128 * 1024;

/// What only the session's owner serves ([`crate::replicas::owner_routes`]).
pub fn owner_router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions/{id}/terminals", get(list_terminals).post(open_terminal))
        .route("/api/sessions/{id}/terminals/{tid}", delete(close_terminal))
        .route("/api/sessions/{id}/terminals/{tid}/live", get(terminal_live))
}

/// Starts a shell on a pseudo-terminal in the caller's live session's sandbox, as its
/// agent runs there.
#[utoipa::path(post, path = "/api/sessions/{id}/terminals", tag = "sessions", request_body = OpenTerminalRequest,
    params(("id" = String, Path, description = "session id")),
    responses((status = 201, body = TerminalBody), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "session_not_live, too_many_terminals, terminal_unavailable")))]
pub async fn open_terminal(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: OpenTerminalRequest = crate::extract::optional_object(&body)?;
    let default = TerminalSize::default();
    let size =
        TerminalSize::bounded(request.rows.unwrap_or(default.rows), request.cols.unwrap_or(default.cols));
    let terminal = state.engine.terminals.open(&caller, &id, size).await?;
    Ok((StatusCode::CREATED, Json(TerminalBody::from(&terminal))).into_response())
}

/// The caller's terminals of a session, oldest first.
#[utoipa::path(get, path = "/api/sessions/{id}/terminals", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = TerminalList), (status = 404, body = ErrorEnvelope)))]
pub async fn list_terminals(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<TerminalList>, ApiError> {
    let terminals = state.engine.terminals.list(&caller, &id).await?;
    Ok(Json(TerminalList { terminals: terminals.iter().map(TerminalBody::from).collect() }))
}

/// Ends a terminal: its shell is hung up.
#[utoipa::path(delete, path = "/api/sessions/{id}/terminals/{tid}", tag = "sessions",
    params(("id" = String, Path, description = "session id"), ("tid" = String, Path, description = "terminal id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn close_terminal(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, tid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.engine.terminals.close(&caller, &id, &tid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A terminal's WebSocket: the current screen, then its output; input and resizes back.
#[utoipa::path(get, path = "/api/sessions/{id}/terminals/{tid}/live", tag = "sessions",
    params(("id" = String, Path, description = "session id"), ("tid" = String, Path, description = "terminal id")),
    responses((status = 101, description = "switched to the terminal's WebSocket"),
        (status = 400, body = ErrorEnvelope, description = "websocket_required: not a WebSocket upgrade"),
        (status = 404, body = ErrorEnvelope)))]
pub async fn terminal_live(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, tid)): Path<(String, String)>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Attach before upgrading, so a refusal is an ordinary HTTP error (and another
    // user's terminal is not found whatever the request).
    let attachment = state.engine.terminals.attach(&caller, &id, &tid).await?;
    let upgrade = upgrade.map_err(|rejection| crate::live::websocket_required("a terminal", &rejection))?;
    Ok(upgrade.max_message_size(MAX_FRAME_BYTES).on_upgrade(move |socket| async move {
        if let Err(error) = serve_terminal(socket, attachment).await {
            tracing::debug!(error = %error, "terminal channel closed");
        }
    }))
}

fn error_frame(code: &str, message: &str) -> Message {
    Message::Text(
        json!({ "type": "error", "error": { "code": code, "message": message } }).to_string().into(),
    )
}

async fn serve_terminal(socket: WebSocket, mut attachment: TerminalAttachment) -> Result<(), axum::Error> {
    let (mut sink, mut stream) = socket.split();
    sink.send(Message::Binary(std::mem::take(&mut attachment.screen).into())).await?;
    let ended = attachment.ended();
    tokio::pin!(ended);
    loop {
        tokio::select! {
            output = attachment.output.recv() => match output {
                Ok(bytes) => sink.send(Message::Binary(Bytes::copy_from_slice(&bytes))).await?,
                // Fell behind: the screen as it is now, then on from there.
                Err(RecvError::Lagged(_)) => {
                    attachment = attachment.again();
                    sink.send(Message::Binary(std::mem::take(&mut attachment.screen).into())).await?;
                }
                Err(RecvError::Closed) => break,
            },
            () = &mut ended => {
                // What the shell printed last is sent before the end.
                while let Ok(bytes) = attachment.output.try_recv() {
                    sink.send(Message::Binary(Bytes::copy_from_slice(&bytes))).await?;
                }
                break;
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<TerminalCommand>(&text) {
                    Ok(TerminalCommand::Input { data }) => {
                        if let Err(error) = attachment.type_in(&data).await {
                            let refusal = ApiError::from(error);
                            sink.send(error_frame(refusal.code, &refusal.message)).await?;
                        }
                    }
                    Ok(TerminalCommand::Resize { cols, rows }) => attachment.resize(rows, cols).await,
                    Err(error) => sink.send(error_frame("invalid_frame", &format!("not a command: {error}"))).await?,
                },
                Some(Ok(Message::Binary(_))) => sink.send(error_frame("invalid_frame", "send JSON text frames")).await?,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    Ok(())
}
