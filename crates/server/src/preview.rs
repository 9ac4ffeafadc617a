//! The live preview proxy: `/w/{workspace_id}/preview/{port}/...` forwards HTTP and
//! WebSocket to that port inside the workspace's running sandbox, for its owner only.
//! The path below the prefix is what the sandbox's server sees. berth's own credentials
//! (the bearer token, the login cookie) never reach the sandbox, and the sandbox cannot
//! set berth's cookie.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Caller, TOKEN_COOKIE};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::any;
use hyper_util::rt::TokioIo;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/w/{workspace_id}/preview/{port}", any(to_directory))
        .route("/w/{workspace_id}/preview/{port}/", any(forward_root))
        .route("/w/{workspace_id}/preview/{port}/{*path}", any(forward))
}

/// `/w/ID/preview/3000` → `/w/ID/preview/3000/`, so the page's relative links work.
async fn to_directory(uri: Uri) -> Redirect {
    let query = uri.query().map(|query| format!("?{query}")).unwrap_or_default();
    Redirect::permanent(&format!("{}/{query}", uri.path()))
}

async fn forward_root(
    state: State<AppState>,
    caller: Caller,
    Path((workspace_id, port)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    proxy(state, caller, workspace_id, port, String::new(), request).await
}

async fn forward(
    state: State<AppState>,
    caller: Caller,
    Path((workspace_id, port, path)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    proxy(state, caller, workspace_id, port, path, request).await
}

async fn proxy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    workspace_id: String,
    port: String,
    path: String,
    mut request: Request,
) -> Result<Response, ApiError> {
    let stream = state.engine.preview_connect(&caller, &workspace_id, &port).await?;
    let prefix = format!("/w/{workspace_id}/preview/{port}");
    let query = request.uri().query().map(|query| format!("?{query}")).unwrap_or_default();
    let inner_uri: Uri = format!("/{path}{query}")
        .parse()
        .map_err(|_| ApiError::invalid_request("the preview path is not a valid URL path"))?;
    let client_upgrade = is_upgrade(request.headers()).then(|| hyper::upgrade::on(&mut request));

    let (parts, body) = request.into_parts();
    let mut upstream = hyper::Request::builder()
        .method(parts.method)
        .uri(inner_uri)
        .body(body)
        .map_err(|_| ApiError::invalid_request("the preview request cannot be forwarded"))?;
    *upstream.headers_mut() = forwarded_headers(&parts.headers, &prefix, &port);

    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| unreachable_preview(&port, &error))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(error = %error, "a preview connection ended with an error");
        }
    });
    let mut response =
        sender.send_request(upstream).await.map_err(|error| unreachable_preview(&port, &error))?;

    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let sandbox_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (Ok(client), Ok(sandbox)) = (client_upgrade.await, sandbox_upgrade.await) else { return };
            let (mut client, mut sandbox) = (TokioIo::new(client), TokioIo::new(sandbox));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut sandbox).await;
        });
    }
    let (mut parts, body) = response.into_parts();
    // The browser talks to berth, whatever HTTP version the sandbox's server speaks.
    parts.version = axum::http::Version::HTTP_11;
    strip_berth_cookie_settings(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)).into_response())
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| value.split(',').any(|token| token.trim().eq_ignore_ascii_case("upgrade")))
}

/// The browser's headers minus berth's credentials and the hop-by-hop ones (an upgrade
/// keeps `Connection: upgrade` and `Upgrade`), plus where the preview is mounted.
fn forwarded_headers(incoming: &HeaderMap, prefix: &str, port: &str) -> HeaderMap {
    const HOP_BY_HOP: [&str; 6] =
        ["keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding"];
    let upgrade = is_upgrade(incoming);
    let mut headers = HeaderMap::new();
    for (name, value) in incoming {
        let lower = name.as_str();
        if HOP_BY_HOP.contains(&lower)
            || name == header::AUTHORIZATION
            || name == header::HOST
            || name == header::COOKIE
            || ((name == header::CONNECTION || name == header::UPGRADE) && !upgrade)
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    // Cookies of the previewed application pass; berth's own does not.
    let cookies: Vec<&str> = incoming
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !pair.starts_with(&format!("{TOKEN_COOKIE}=")))
        .collect();
    if !cookies.is_empty()
        && let Ok(value) = HeaderValue::from_str(&cookies.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
    if let Ok(host) = HeaderValue::from_str(&format!("localhost:{port}")) {
        headers.insert(header::HOST, host);
    }
    if let Ok(prefix) = HeaderValue::from_str(prefix) {
        headers.insert("x-forwarded-prefix", prefix);
    }
    if let Some(host) = incoming.get(header::HOST) {
        headers.insert("x-forwarded-host", host.clone());
    }
    headers
}

/// A previewed application may set its own cookies, never berth's login cookie.
fn strip_berth_cookie_settings(headers: &mut HeaderMap) {
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|value| {
            value.to_str().map_or(true, |text| !text.trim_start().starts_with(&format!("{TOKEN_COOKIE}=")))
        })
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in kept {
        headers.append(header::SET_COOKIE, value);
    }
}

fn unreachable_preview(port: &str, error: &hyper::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "preview_unreachable",
        format!("the server on port {port} in the sandbox did not answer: {error}"),
    )
}
