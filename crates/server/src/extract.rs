//! Request extractors whose refusals use the API's error envelope: JSON bodies, query
//! strings, and the authenticated caller.

use crate::{AppState, error::ApiError};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use berth_core::User;

/// A JSON body; malformed JSON, unknown fields, a wrong content type or a body over the
/// size limit are refused with `invalid_request` or `payload_too_large`.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

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

/// The caller, from `Authorization: Bearer <token>` or the login cookie.
pub struct Caller(pub User);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let token = bearer_token(parts).or_else(|| cookie_token(parts)).ok_or_else(ApiError::unauthorized)?;
        match state.engine.authenticate(token).await? {
            Some(user) => Ok(Caller(user)),
            None => Err(ApiError::unauthorized()),
        }
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn cookie_token(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
}
