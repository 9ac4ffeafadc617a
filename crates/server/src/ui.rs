//! The web UI: one page shell for every screen (the script draws the screen the path
//! names) and its assets, embedded in the binary so running berth needs nothing else.
//! Pages carry a content security policy that lets them load only berth's own scripts,
//! talk only to berth, and frame only the preview origin. The page names its assets under
//! `/assets/v/<version>/`, the version a digest of every asset, so a browser keeps them
//! for good (`immutable`) and a new build is a new address: no request per module on a
//! page load, and never a stale one.

use crate::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::Digest as _;

#[derive(rust_embed::Embed)]
#[folder = "assets/"]
struct Assets;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/signin", get(page))
        .route("/account", get(page))
        .route("/admin", get(page))
        .route("/workspaces/{id}", get(page))
        .route("/workspaces/{id}/settings", get(page))
        .route("/assets/v/{version}/{*path}", get(versioned_asset))
        .route("/assets/{*path}", get(asset))
}

/// The page shell with its assets' addresses versioned, made once.
fn page_html(shell: &[u8]) -> &'static str {
    static HTML: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HTML.get_or_init(|| {
        String::from_utf8_lossy(shell).replace("\"/assets/", &format!("\"/assets/v/{}/", asset_version()))
    })
}

/// A digest of every embedded asset: what the page's asset addresses carry.
fn asset_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let mut names: Vec<_> = Assets::iter().collect();
        names.sort();
        let mut digest = sha2::Sha256::new();
        for name in names {
            if let Some(file) = Assets::get(&name) {
                sha2::Digest::update(&mut digest, name.as_bytes());
                sha2::Digest::update(&mut digest, file.metadata.sha256_hash());
            }
        }
        hex_of(&sha2::Digest::finalize(digest)[..8])
    })
}

/// The page shell; the script reads the path and draws that screen.
async fn page(State(state): State<AppState>) -> Response {
    let Some(file) = Assets::get("index.html") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // The preview pane starts on berth's origin (the redirect that hands out a ticket) and
    // lands on the workspace's preview host.
    let frames = state
        .preview
        .as_ref()
        .map_or_else(|| "'none'".to_owned(), |hosts| format!("'self' {}", hosts.frame_source()));
    // Styles may be inline: the terminal (xterm.js) sizes its rows with style elements
    // it makes. Scripts stay berth's own files only.
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         frame-src {frames}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    );
    let mut response = Response::new(Body::from(page_html(&file.data)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    security_headers(headers);
    response
}

/// An asset at the page's versioned address: kept for good when the version is this
/// build's (a page of an older build gets today's file, revalidated as usual).
async fn versioned_asset(Path((version, path)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let mut response = asset(Path(path), headers).await;
    if version == asset_version() && response.status() == StatusCode::OK {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    }
    response
}

/// A script, style sheet or image; revalidated by its content hash.
async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(file) = Assets::get(&path) else {
        return crate::error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such asset")
            .into_response();
    };
    let etag = format!("\"{}\"", hex_of(&file.metadata.sha256_hash()[..12]));
    if headers.get(header::IF_NONE_MATCH).and_then(|value| value.to_str().ok()) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut response = Response::new(Body::from(file.data.into_owned()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&path)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    security_headers(headers);
    response
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("html") => "text/html; charset=utf-8",
        Some("png") => "image/png",
        Some("md") => "text/markdown; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
