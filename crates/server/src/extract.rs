//! Request extractors whose refusals use the API's error envelope: JSON bodies, query
//! strings, and the authenticated caller.

use crate::{AppState, error::ApiError};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use berth_core::User;

/// A JSON object body; malformed JSON, anything but an object (`[]` included), unknown
/// fields, a wrong content type or a body over the size limit are refused with
/// `invalid_request` or `payload_too_large`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(request, state).await?;
        if !value.is_object() {
            return Err(ApiError::invalid_request("the request body must be a JSON object"));
        }
        serde_json::from_value(value)
            .map(ApiJson)
            .map_err(|error| ApiError::invalid_request(format!("the request body is not valid: {error}")))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than {} bytes", crate::MAX_REQUEST_BODY_BYTES),
            );
        }
        ApiError::invalid_request(rejection.body_text())
    }
}

/// A body that is a JSON object of `T`'s fields, or empty (all defaults). Anything else —
/// an array, a number, unknown fields — is refused with `invalid_request`.
pub fn optional_object<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::invalid_request("the body is not UTF-8"))?;
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "null" {
        return Ok(T::default());
    }
    if !trimmed.starts_with('{') {
        return Err(ApiError::invalid_request("the body must be a JSON object"));
    }
    serde_json::from_str(trimmed)
        .map_err(|error| ApiError::invalid_request(format!("the body is not valid: {error}")))
}

/// A query string; values of the wrong type are refused with `invalid_request`.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::invalid_request(rejection.body_text())
    }
}

/// The cookie the web UI carries its token in, set by `GET /login`.
pub const TOKEN_COOKIE: &str = "berth_token";

/// The caller, from `Authorization: Bearer <token>` or the login cookie. A browser sends
/// the cookie with requests other pages start too (another site's form, a previewed
/// page on berth's host); so a cookie counts for a request that changes something, or
/// opens a WebSocket, only when the request comes from berth's own origin.
pub struct Caller(pub User);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let token = match bearer_token(&parts.headers) {
            Some(token) => token,
            None => {
                // The cookie holds a browser sign-in's secret, never a token.
                let token = cookie_token(&parts.headers)
                    .filter(|secret| berth_engine::is_sign_in_secret(secret))
                    .ok_or_else(ApiError::unauthorized)?;
                if !same_origin_or_safe(parts) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "cross_origin",
                        "this request came from another origin; berth's cookie is not accepted for it",
                    ));
                }
                token
            }
        };
        match state.engine.accounts.authenticate(token).await? {
            Some(user) => Ok(Caller(user)),
            None if state.engine.accounts.is_disabled(token).await? => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "account_disabled",
                "this berth account is disabled; an administrator can enable it again",
            )),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// A read that is no WebSocket (its answer stays with the origin that asked, as the
/// browser keeps it), or a request whose `Origin` is the host it was sent to. Browsers
/// send `Origin` with every such request; a client without one is no browser page.
fn same_origin_or_safe(parts: &Parts) -> bool {
    use axum::http::{Method, header};
    let websocket = parts.headers.get(header::UPGRADE).is_some();
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) && !websocket {
        return true;
    }
    same_origin(parts)
}

/// Whether a request that changes something came from berth's own pages: its `Origin`,
/// when it has one (browsers send it with every such request), is the host it was sent
/// to, and the browser does not call it cross-site.
pub(crate) fn same_origin(parts: &Parts) -> bool {
    use axum::http::header;
    let cross_site = parts
        .headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|site| site.eq_ignore_ascii_case("cross-site"));
    if cross_site {
        return false;
    }
    let Some(origin) = parts.headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()) else {
        return true;
    };
    let origin_authority = origin.split_once("://").map(|(_, authority)| authority);
    let host = parts.headers.get(header::HOST).and_then(|value| value.to_str().ok());
    origin_authority.is_some() && origin_authority == host
}

/// The token a request carries: `Authorization: Bearer`, else the login cookie.
pub(crate) fn request_token(headers: &HeaderMap) -> Option<&str> {
    bearer_token(headers).or_else(|| cookie_token(headers))
}

pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub(crate) fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    cookies(headers).find_map(|(name, value)| (name == TOKEN_COOKIE).then_some(value))
}

/// The `name=value` pairs of a request's `Cookie` headers.
pub(crate) fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(name, value)| (name.trim(), value.trim()))
}

/// A path on the same host, safe to redirect to: one leading `/` (`//host` would leave
/// it), no backslash (browsers read it as `/`), nothing invisible, at most `max` bytes.
pub(crate) fn is_local_path(path: &str, max: usize) -> bool {
    path.starts_with('/')
        && !path[1..].starts_with(['/', '\\'])
        && path.len() <= max
        && !path.chars().any(|c| c == '\\' || c.is_control() || c.is_whitespace())
}

/// Whether a browser asks for a page (it accepts HTML), rather than a script or a client
/// for its answer.
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("text/html"))
}
