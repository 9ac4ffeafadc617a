//! The live previews. Each workspace's preview is served on a host of its own
//! (`<workspace id>.preview.localhost:<preview port>` by default), never on berth's:
//! `/{port}/...` there forwards HTTP and WebSocket to that port inside the workspace's
//! running sandbox, for its owner only, and the sandbox's server sees the path below
//! `/{port}`.
//!
//! berth's login token never reaches a preview host. The owner opens a preview from
//! berth's origin (`GET /api/workspaces/{id}/preview?port=`), which redirects with a
//! one-use ticket to the preview host's `/_berth/auth`; that sets the host's own cookie
//! (`berth_preview`: that workspace only, an hour) and redirects to the port. API clients
//! may send their bearer token to the preview host instead. Neither berth's credentials
//! nor the preview cookie are forwarded to the sandbox, and the sandbox's answers cannot
//! set either cookie.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{
    ApiQuery, Caller, TOKEN_COOKIE, bearer_token, cookies, is_local_path, request_token, wants_html,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use berth_core::{User, WorkspaceId};
use berth_engine::EngineError;
use serde::Deserialize;

/// The preview host's own cookie.
pub const PREVIEW_COOKIE: &str = "berth_preview";
/// The longest path opened on a preview host through berth.
const MAX_PATH: usize = 4096;
/// Where a preview host trades a ticket for its cookie (no port is called `_berth`).
const AUTH_PATH: &str = "/_berth/auth";

/// On berth's origin: where the owner's browser starts a preview.
pub fn open_router() -> Router<AppState> {
    Router::new().route("/api/workspaces/{id}/preview", get(open_preview))
}

/// On the preview listener: every workspace's preview host.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(AUTH_PATH, get(redeem_ticket))
        .route("/{port}", any(to_directory))
        .route("/{port}/", any(forward_root))
        .route("/{port}/{*path}", any(forward))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OpenPreviewQuery {
    /// The port inside the sandbox, 1-65535.
    port: String,
    /// The path to open on it; `/` by default.
    path: Option<String>,
}

/// Sends the workspace's owner to its preview host with a ticket (a minute, one use),
/// which the host trades for a cookie of its own and then shows `/{port}{path}`.
#[utoipa::path(get, path = "/api/workspaces/{id}/preview", tag = "previews",
    params(("id" = String, Path, description = "workspace id"), OpenPreviewQuery),
    responses((status = 303, description = "to `<preview_url>/_berth/auth?ticket=…&next=/{port}{path}`"),
        (status = 400, body = crate::wire::ErrorEnvelope, description = "invalid_port, invalid_request (path)"),
        (status = 403, body = crate::wire::ErrorEnvelope, description = "port_not_allowed"),
        (status = 404, body = crate::wire::ErrorEnvelope, description = "not_found: no such workspace, or previews are off")))]
pub async fn open_preview(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<OpenPreviewQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(hosts) = &state.preview else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "previews are switched off on this installation",
        ));
    };
    let port = berth_core::preview::port(&query.port)
        .ok_or_else(|| EngineError::InvalidPort { text: query.port.chars().take(16).collect() })?;
    if !state.engine.config().preview_ports.allows(port) {
        return Err(EngineError::PortNotAllowed { port }.into());
    }
    let path = query.path.as_deref().unwrap_or("/");
    if !is_local_path(path, MAX_PATH) {
        return Err(ApiError::invalid_request("path must be a path on the preview, starting with one '/'"));
    }
    let token = request_token(&headers).ok_or_else(ApiError::unauthorized)?;
    let ticket = state.engine.previews.ticket(token, &id).await?;
    let workspace = WorkspaceId::parse(&id).ok_or(EngineError::NotFound { what: "workspace" })?;
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("ticket", &ticket)
        .append_pair("next", &format!("/{port}{path}"))
        .finish();
    Ok(no_store(Redirect::to(&format!("{}{AUTH_PATH}?{query}", hosts.url_for(&workspace))).into_response()))
}

#[derive(Debug, Deserialize)]
struct RedeemQuery {
    ticket: String,
    next: String,
}

/// `/_berth/auth?ticket=&next=` on a preview host: the ticket becomes this host's cookie.
async fn redeem_ticket(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<RedeemQuery>,
) -> Result<Response, ApiError> {
    let navigation = wants_html(&headers);
    page_when_unreachable(navigation, redeem(&state, &headers, query).await)
}

async fn redeem(state: &AppState, headers: &HeaderMap, query: RedeemQuery) -> Result<Response, ApiError> {
    let (hosts, workspace) = preview_host(state, headers)?;
    if !is_local_path(&query.next, MAX_PATH) {
        return Err(ApiError::invalid_request("next must be a path on this preview host"));
    }
    let (cookie, max_age) = state.engine.previews.redeem(&query.ticket, &workspace).await?;
    // An iframe in berth's page is a third-party context: there the cookie must be
    // `SameSite=None` (so `Secure`), kept apart per top-level site (`Partitioned`).
    let attributes =
        if hosts.secure_context() { "SameSite=None; Secure; Partitioned" } else { "SameSite=Lax" };
    let cookie = format!("{PREVIEW_COOKIE}={cookie}; Path=/; HttpOnly; Max-Age={max_age}; {attributes}");
    let mut response = no_store(Redirect::to(&query.next).into_response());
    let cookie =
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::invalid_request("the cookie cannot be set"))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// A redirect that no cache keeps and that names no page it came from.
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The preview hosts and the workspace the request's `Host` names; anything else is
/// no preview.
fn preview_host<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
) -> Result<(&'a berth_core::preview::PreviewHosts, WorkspaceId), ApiError> {
    let hosts = state.preview.as_ref().ok_or_else(no_preview_host)?;
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).ok_or_else(no_preview_host)?;
    let workspace = hosts.workspace_of(host).ok_or_else(no_preview_host)?;
    Ok((hosts, workspace))
}

fn no_preview_host() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "this is not a workspace's preview host; previews are served at the workspace's preview_url",
    )
}

/// The owner on a preview host: a bearer token (API clients), else any of the host's
/// cookies that is a valid pass for this workspace (a pass tossed in from another
/// preview host opens nothing here).
async fn preview_caller(
    state: &AppState,
    headers: &HeaderMap,
    workspace: &WorkspaceId,
) -> Result<User, ApiError> {
    if let Some(token) = bearer_token(headers) {
        return state.engine.accounts.authenticate(token).await?.ok_or_else(ApiError::unauthorized);
    }
    let mut refusal = None;
    for (_, pass) in cookies(headers).filter(|(name, _)| *name == PREVIEW_COOKIE) {
        match state.engine.previews.caller(pass, workspace).await {
            Ok(user) => return Ok(user),
            Err(error) => refusal = Some(error),
        }
    }
    Err(refusal.map(ApiError::from).unwrap_or_else(|| {
        ApiError::from(EngineError::Unauthorized {
            message: "open this preview from berth: the workspace page's preview, or GET /api/workspaces/{id}/preview?port= on berth",
        })
    }))
}

/// `/3000` → `/3000/`, so the page's relative links work.
async fn to_directory(uri: Uri) -> Redirect {
    let query = uri.query().map(|query| format!("?{query}")).unwrap_or_default();
    Redirect::permanent(&format!("{}/{query}", uri.path()))
}

async fn forward_root(
    state: State<AppState>,
    Path(port): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let navigation = wants_html(request.headers());
    page_when_unreachable(navigation, proxy(state, port, String::new(), request).await)
}

async fn forward(
    state: State<AppState>,
    Path((port, path)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let navigation = wants_html(request.headers());
    page_when_unreachable(navigation, proxy(state, port, path, request).await)
}

/// A person's browser that opens a preview gets a page, never the JSON envelope: a port
/// nothing answers on yet tries again every two seconds (the server may still be
/// starting); a workspace that is not running, a preview that does not exist or a pass
/// that expired each say so in a sentence. Scripts (and a page's own requests) still get
/// the envelope.
fn page_when_unreachable(navigation: bool, answer: Result<Response, ApiError>) -> Result<Response, ApiError> {
    let error = match answer {
        Err(error) if navigation => error,
        answer => return answer,
    };
    let (title, retry) = match error.code {
        "preview_unreachable" => ("Nothing answers on this port yet", true),
        "no_live_session" => ("This workspace is not running", false),
        "not_found" => ("There is no such preview", false),
        "unauthorized" => ("This preview needs a pass from berth", false),
        _ => ("The preview cannot be shown", false),
    };
    let advice = match error.code {
        "preview_unreachable" => "This page tries again every two seconds.",
        "no_live_session" => "Open the workspace in berth; its preview is here again once it runs.",
        "not_found" => "The address names no workspace of yours, or no port berth previews.",
        _ => "Open the preview from the workspace's page in berth.",
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{}<title>{}</title>\
         <style>body{{font:16px system-ui,sans-serif;margin:2rem;color:#333}}\
         @media (prefers-color-scheme:dark){{body{{background:#111;color:#ddd}}}}</style></head>\
         <body><h1>{}</h1><p>{}</p><p>{}</p></body></html>",
        if retry { "<meta http-equiv=\"refresh\" content=\"2\">" } else { "" },
        crate::page::escape_html(title),
        crate::page::escape_html(title),
        crate::page::escape_html(&error.message),
        crate::page::escape_html(advice),
    );
    let mut response = (error.status, page).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn proxy(
    State(state): State<AppState>,
    port: String,
    path: String,
    mut request: Request,
) -> Result<Response, ApiError> {
    let (_, workspace) = preview_host(&state, request.headers())?;
    let caller = preview_caller(&state, request.headers(), &workspace).await?;
    let stream = state.engine.previews.connect(&caller, workspace.as_str(), &port).await?;
    let prefix = format!("/{port}");
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

    let response = crate::replicas::relay(stream, upstream, client_upgrade)
        .await
        .map_err(|error| unreachable_preview(&port, &error))?;
    let (mut parts, body) = response.into_parts();
    // The browser talks to berth, whatever HTTP version the sandbox's server speaks.
    parts.version = axum::http::Version::HTTP_11;
    strip_berth_cookie_settings(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)).into_response())
}

pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
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
    // Cookies of the previewed application pass; berth's own do not.
    let cookies: Vec<String> = cookies(incoming)
        .filter(|(name, _)| !is_berth_cookie(name))
        .map(|(name, value)| format!("{name}={value}"))
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

/// berth's login cookie or a preview host's pass, however a header spells the name.
fn is_berth_cookie(name: &str) -> bool {
    let name = name.trim();
    name.eq_ignore_ascii_case(TOKEN_COOKIE) || name.eq_ignore_ascii_case(PREVIEW_COOKIE)
}

/// A previewed application may set its own cookies, never berth's (`berth_token =x`,
/// `Berth_Preview=x` and an unreadable header included).
fn strip_berth_cookie_settings(headers: &mut HeaderMap) {
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|value| {
            value
                .to_str()
                .is_ok_and(|text| !is_berth_cookie(text.split_once('=').map_or(text, |(name, _)| name)))
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
