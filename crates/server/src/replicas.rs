//! Any replica serves any request. What only a session's owner can do — its live
//! channel, leave, the ports it listens on, and resuming it by opening its workspace —
//! is forwarded, as it came, to the replica that owns it (HTTP and WebSocket alike),
//! marked with the replicas' shared secret so it is never forwarded twice. Other
//! replicas close a session here through `POST /internal/sessions/{id}/close`, which
//! answers only to that secret.

use crate::AppState;
use crate::error::{AnswerElsewhere, ApiError};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use berth_core::session::EndReason;
use berth_core::{SessionId, WorkspaceId};
use berth_engine::replicas::{REPLICA_SECRET_HEADER, SessionHome};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/internal/sessions/{id}/close", post(close_here))
        .route("/internal/sessions/{id}/tunnel/{port}", axum::routing::get(tunnel))
}

/// Another replica serving a preview of a session owned here: the connection becomes a
/// tunnel to `port` in the session's sandbox.
async fn tunnel(
    State(state): State<AppState>,
    Path((id, port)): Path<(String, u16)>,
    mut request: Request,
) -> Result<Response, ApiError> {
    if !from_a_replica(&state, request.headers()) {
        return Err(ApiError::unauthorized());
    }
    let id = SessionId::parse(&id).ok_or_else(|| ApiError::invalid_request("not a session id"))?;
    let sandbox = state.engine.connect_here(&id, port).await?;
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let (mut replica, mut sandbox) = (TokioIo::new(upgraded), sandbox);
        let _ = tokio::io::copy_bidirectional(&mut replica, &mut sandbox).await;
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("berth-tunnel"));
    Ok(response)
}

/// Whether the request carries the replicas' shared secret.
fn from_a_replica(state: &AppState, headers: &HeaderMap) -> bool {
    headers.get(REPLICA_SECRET_HEADER).is_some_and(|value| state.engine.is_replica_secret(value.as_bytes()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseHere {
    reason: String,
}

/// Another replica asks this one, the owner, to close a session.
async fn close_here(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<CloseHere>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !from_a_replica(&state, &headers) {
        return Err(ApiError::unauthorized());
    }
    let id = SessionId::parse(&id).ok_or_else(|| ApiError::invalid_request("not a session id"))?;
    let reason =
        EndReason::parse(&body.reason).ok_or_else(|| ApiError::invalid_request("not an end reason"))?;
    let closed = state.engine.close_here(&id, reason).await?;
    Ok(Json(serde_json::json!({ "id": closed.id.as_str(), "state": closed.state.as_str() })))
}

/// What a path names that only a session's owner serves.
enum Owned {
    Session(SessionId),
    Workspace(WorkspaceId),
}

fn owned_target(path: &str) -> Option<Owned> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", "sessions", id, "live" | "leave" | "ports"] => SessionId::parse(id).map(Owned::Session),
        ["api", "workspaces", id, "open"] => WorkspaceId::parse(id).map(Owned::Workspace),
        _ => None,
    }
}

/// Forwards a request for a session another replica owns to that replica.
pub async fn forward_to_owner(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !state.engine.store().is_postgres() || from_a_replica(&state, request.headers()) {
        return next.run(request).await;
    }
    let Some(target) = owned_target(request.uri().path()) else {
        return next.run(request).await;
    };
    let (home, open) = match target {
        Owned::Session(id) => (state.engine.session_home(&id).await, false),
        Owned::Workspace(id) => (state.engine.workspace_home(&id).await, true),
    };
    match home {
        Ok(SessionHome::Elsewhere { url }) => {
            forward(&state, &url, request).await.unwrap_or_else(IntoResponse::into_response)
        }
        // Here, or the store cannot say: the handler answers — and when the session an
        // open resumes became live on another replica meanwhile (racing an open there),
        // the request goes there after all.
        _ if open => {
            let (parts, body) = request.into_parts();
            let Ok(body) = axum::body::to_bytes(body, crate::MAX_REQUEST_BODY_BYTES).await else {
                return ApiError::invalid_request("the request body is too large").into_response();
            };
            let mut again = Request::new(Body::from(body.clone()));
            *again.method_mut() = parts.method.clone();
            *again.uri_mut() = parts.uri.clone();
            *again.headers_mut() = parts.headers.clone();
            let response = next.run(Request::from_parts(parts, Body::from(body))).await;
            match response.extensions().get::<AnswerElsewhere>() {
                Some(AnswerElsewhere(url)) => {
                    let url = url.clone();
                    forward(&state, &url, again).await.unwrap_or_else(IntoResponse::into_response)
                }
                None => response,
            }
        }
        _ => next.run(request).await,
    }
}

async fn forward(state: &AppState, url: &str, mut request: Request) -> Result<Response, ApiError> {
    let unavailable =
        |message: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "replica_unavailable", message);
    let authority = url.strip_prefix("http://").ok_or_else(|| {
        unavailable("the session's replica has an address this replica cannot reach (http:// only)".into())
    })?;
    let stream = tokio::net::TcpStream::connect(authority).await.map_err(|error| {
        unavailable(format!("the replica that owns the session does not answer: {error}"))
    })?;
    let client_upgrade =
        crate::preview::is_upgrade(request.headers()).then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    parts.headers.remove(REPLICA_SECRET_HEADER);
    if let Ok(secret) = HeaderValue::from_str(state.engine.replica_secret()) {
        parts.headers.insert(REPLICA_SECRET_HEADER, secret);
    }
    // `Host` stays the one the browser sent: the owner checks a cookie's request
    // against it (`Origin` must be that host), as the first replica would have.
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str()).to_owned();
    let mut upstream = hyper::Request::builder()
        .method(parts.method)
        .uri(path)
        .body(body)
        .map_err(|_| ApiError::invalid_request("the request cannot be forwarded"))?;
    *upstream.headers_mut() = parts.headers;
    let response = relay(stream, upstream, client_upgrade).await.map_err(|error| {
        unavailable(format!("the replica that owns the session failed to answer: {error}"))
    })?;
    let (mut parts, body) = response.into_parts();
    parts.version = axum::http::Version::HTTP_11;
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Sends `upstream` over `stream` (HTTP/1.1) and returns the answer; when both sides
/// switch protocols (a WebSocket), the two connections are joined byte for byte.
pub(crate) async fn relay(
    stream: tokio::net::TcpStream,
    upstream: hyper::Request<Body>,
    client_upgrade: Option<OnUpgrade>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(error = %error, "a relayed connection ended with an error");
        }
    });
    let mut response = sender.send_request(upstream).await?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) else { return };
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
    Ok(response)
}
