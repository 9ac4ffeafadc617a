//! Operations and entry points: `/healthz`, `/readyz`, `/api/openapi.json`, `/login`.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiQuery, TOKEN_COOKIE};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/openapi.json", get(openapi))
        .route("/login", get(login))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = String), (status = 503, body = crate::wire::ErrorEnvelope)))]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    match state.engine.store().ping().await {
        Ok(()) => Ok("ready"),
        Err(error) => {
            tracing::error!(error = %error, "readiness check failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store does not answer",
            ))
        }
    }
}

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}

#[derive(Deserialize)]
pub struct LoginQuery {
    token: String,
}

/// The one-time login link: checks the token, keeps it in an HTTP-only cookie and goes to
/// the dashboard, so the token leaves the address bar and the history.
/// A refused token sends a browser back to the sign-in page with the reason; other
/// clients get the `401`.
pub async fn login(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    ApiQuery(query): ApiQuery<LoginQuery>,
) -> Result<Response, ApiError> {
    if state.engine.authenticate(&query.token).await?.is_none() {
        let browser = headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
        if browser {
            return Ok(Redirect::to("/signin?refused=1").into_response());
        }
        return Err(ApiError::unauthorized());
    }
    let cookie = format!("{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000", query.token);
    let mut response = Redirect::to("/").into_response();
    let cookie =
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::invalid_request("the token is not valid"))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}
