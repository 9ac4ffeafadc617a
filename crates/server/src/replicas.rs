//! Any replica serves any request. What only a session's owner can do — its live
//! channel, leave, the ports it listens on, and resuming it by opening its workspace —
//! lives on one sub-router ([`owner_routes`]) whose layer sends each request, as it came,
//! to the replica that owns the session (HTTP and WebSocket alike): being on that router
//! *is* being forwarded. Requests are marked with the replicas' shared secret so they are
//! never forwarded twice.
//!
//! [`HttpPeers`] is how this replica reaches the others, over HTTP: forwarding a request,
//! and for the engine (as [`Peers`]) closing a session and tunnelling to a sandbox's
//! port, which the owner answers on `/internal/sessions/{id}/…` only to that secret.

use crate::AppState;
use crate::error::{AnswerElsewhere, ApiError};
use axum::body::Body;
use axum::extract::{Path, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use berth_core::session::EndReason;
use berth_core::{SessionId, WorkspaceId};
use berth_engine::replicas::REPLICA_SECRET_HEADER;
use berth_engine::{EngineError, Owner, Peer, PeerStream, Peers};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// How long a call to another replica may take.
const REPLICA_CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/internal/sessions/{id}/close", post(close_here))
        .route("/internal/sessions/{id}/tunnel/{port}", axum::routing::get(tunnel))
}

/// The routes only a session's owner serves, each naming the session (`{id}` a session
/// id) or the workspace whose live session it is (`{id}` a workspace id): every request
/// to one of them is forwarded to the replica that owns that session.
pub fn owner_routes(state: &AppState, routes: Router<AppState>) -> Router<AppState> {
    routes.route_layer(axum::middleware::from_fn_with_state(state.clone(), forward_to_owner))
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
    let sandbox = state.engine.previews.connect_here(&id, port).await?;
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
    headers
        .get(REPLICA_SECRET_HEADER)
        .is_some_and(|value| state.engine.replicas.is_replica_secret(value.as_bytes()))
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
    let closed = state.engine.sessions.close_here(&id, reason).await?;
    Ok(Json(serde_json::json!({ "id": closed.id.as_str(), "state": closed.state.as_str() })))
}

/// The layer of [`owner_routes`]: where the owner of the session the path names runs,
/// the request goes; here, the handler answers — and when the session became live on
/// another replica meanwhile (an open racing one there), the request goes there after
/// all.
async fn forward_to_owner(
    State(state): State<AppState>,
    params: RawPathParams,
    request: Request,
    next: Next,
) -> Response {
    if from_a_replica(&state, request.headers()) {
        return next.run(request).await;
    }
    let id = params.iter().find(|(name, _)| *name == "id").map(|(_, value)| value.to_owned());
    let sessions = &state.engine.sessions;
    let owner = match id.as_deref() {
        Some(id) if let Some(session) = SessionId::parse(id) => sessions.owner(&session).await,
        Some(id) if let Some(workspace) = WorkspaceId::parse(id) => {
            sessions.owner_of_workspace(&workspace).await
        }
        // Not an id: the handler says so.
        _ => return next.run(request).await,
    };
    match owner {
        Ok(Owner::There(peer)) => {
            state.peers.forward(&peer, request).await.unwrap_or_else(IntoResponse::into_response)
        }
        // An upgrade (the live channel) cannot be sent twice: the handler's answer stands.
        _ if crate::preview::is_upgrade(request.headers()) => next.run(request).await,
        // Here, or the store cannot say: the handler answers, and may find the owner
        // elsewhere after all.
        _ => {
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
                Some(AnswerElsewhere(peer)) => {
                    let peer = peer.clone();
                    state.peers.forward(&peer, again).await.unwrap_or_else(IntoResponse::into_response)
                }
                None => response,
            }
        }
    }
}

/// How this replica reaches the others: over HTTP/1.1 to each one's `replica.url`,
/// carrying the replicas' shared secret.
pub struct HttpPeers {
    secret: String,
}

impl HttpPeers {
    pub fn new(secret: &str) -> HttpPeers {
        HttpPeers { secret: secret.to_owned() }
    }

    async fn connect(&self, peer: &Peer) -> Result<tokio::net::TcpStream, String> {
        let authority = peer
            .url
            .strip_prefix("http://")
            .ok_or("the replica that owns the session is not reachable over http://")?;
        tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|error| format!("the replica that owns the session does not answer: {error}"))
    }

    fn secret(&self) -> HeaderValue {
        HeaderValue::from_str(&self.secret).unwrap_or(HeaderValue::from_static(""))
    }

    /// Sends a person's request to `peer` as it came (an upgrade joined byte for byte).
    pub async fn forward(&self, peer: &Peer, mut request: Request) -> Result<Response, ApiError> {
        let unavailable =
            |message: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "replica_unavailable", message);
        let stream = self.connect(peer).await.map_err(unavailable)?;
        let client_upgrade =
            crate::preview::is_upgrade(request.headers()).then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        parts.headers.insert(REPLICA_SECRET_HEADER, self.secret());
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

    /// Sends berth's own request to `peer` at `path`.
    async fn call(
        &self,
        peer: &Peer,
        request: hyper::Request<Body>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let stream = self.connect(peer).await?;
        let mut sender = client_connection(stream).await.map_err(|error| error.to_string())?;
        let sent = tokio::time::timeout(REPLICA_CALL_TIMEOUT, sender.send_request(request)).await;
        match sent {
            Ok(answer) => answer.map_err(|error| error.to_string()),
            Err(_) => Err("it did not answer in time".to_owned()),
        }
    }

    fn request(&self, peer: &Peer, method: &str, path: &str) -> hyper::http::request::Builder {
        let authority = peer.url.trim_start_matches("http://");
        hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, authority)
            .header(REPLICA_SECRET_HEADER, self.secret())
    }
}

#[async_trait::async_trait]
impl Peers for HttpPeers {
    async fn close(&self, peer: &Peer, id: &SessionId, reason: EndReason) -> Result<(), EngineError> {
        let failed = |message: String| EngineError::CloseFailed { session_id: id.clone(), message };
        let body = serde_json::json!({ "reason": reason.as_str() }).to_string();
        let request = self
            .request(peer, "POST", &format!("/internal/sessions/{id}/close"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .map_err(|error| failed(error.to_string()))?;
        let response = self
            .call(peer, request)
            .await
            .map_err(|error| failed(format!("the replica that owns it did not answer: {error}")))?;
        if response.status().is_success() {
            return Ok(());
        }
        let body = axum::body::to_bytes(Body::new(response.into_body()), crate::MAX_REQUEST_BODY_BYTES).await;
        let said =
            body.ok().and_then(|body| serde_json::from_slice::<crate::wire::ErrorEnvelope>(&body).ok());
        Err(failed(
            said.map_or_else(|| "the replica that owns it refused".to_owned(), |said| said.error.message),
        ))
    }

    async fn tunnel(&self, peer: &Peer, id: &SessionId, port: u16) -> Result<PeerStream, EngineError> {
        let unreachable = |message: String| EngineError::PreviewUnreachable { port, message };
        let request = self
            .request(peer, "GET", &format!("/internal/sessions/{id}/tunnel/{port}"))
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "berth-tunnel")
            .body(Body::empty())
            .map_err(|error| unreachable(error.to_string()))?;
        let mut response = self.call(peer, request).await.map_err(unreachable)?;
        match response.status() {
            StatusCode::SWITCHING_PROTOCOLS => {
                let upgraded = hyper::upgrade::on(&mut response)
                    .await
                    .map_err(|error| unreachable(error.to_string()))?;
                Ok(Box::new(TokioIo::new(upgraded)))
            }
            StatusCode::NOT_FOUND => Err(EngineError::NoLiveSession),
            status => Err(unreachable(format!("the replica that owns the session answered {status}"))),
        }
    }
}

/// Sends `upstream` over `stream` (HTTP/1.1) and returns the answer; when both sides
/// switch protocols (a WebSocket), the two connections are joined byte for byte.
pub(crate) async fn relay<S>(
    stream: S,
    upstream: hyper::Request<Body>,
    client_upgrade: Option<OnUpgrade>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut sender = client_connection(stream).await?;
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

/// An HTTP/1.1 client connection over `stream`, driven in a task of its own (upgrades
/// allowed), and the way to send on it.
async fn client_connection<S>(
    stream: S,
) -> Result<hyper::client::conn::http1::SendRequest<Body>, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(error = %error, "a connection to another replica or a sandbox ended with an error");
        }
    });
    Ok(sender)
}
