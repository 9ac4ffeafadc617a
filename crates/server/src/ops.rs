//! Operations and entry points: `/healthz`, `/readyz`, `/api/openapi.json`, `/login`,
//! `/logout`.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiQuery, TOKEN_COOKIE, is_local_path, wants_html};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/openapi.json", get(openapi))
        .route("/login", get(login))
        .route("/logout", post(logout))
}

/// Whether the browser reached berth over https (berth behind a TLS proxy says so with
/// `X-Forwarded-Proto` or `Forwarded`): the cookie is then `Secure`.
fn over_https(headers: &axum::http::HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    let forwarded =
        headers.get(header::FORWARDED).and_then(|value| value.to_str().ok()).is_some_and(|value| {
            value.to_ascii_lowercase().split([';', ',']).any(|part| part.trim() == "proto=https")
        });
    forwarded_proto || forwarded
}

/// The login cookie: host-only (no `Domain`), HTTP-only, `SameSite=Lax`, living `max_age`
/// seconds (0 clears it), `Secure` over https.
fn login_cookie(value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{TOKEN_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoginQuery {
    /// A token of the user signing in.
    token: String,
    /// The page of berth to go to once signed in (a path, such as `/workspaces/w_…`);
    /// the dashboard by default.
    next: Option<String>,
}

/// The longest `next` page a login goes on to.
const MAX_NEXT: usize = 2048;

/// `next` when it is a page of berth itself, else the dashboard.
fn local_page(next: Option<&str>) -> &str {
    next.filter(|path| is_local_path(path, MAX_NEXT)).unwrap_or("/")
}

#[utoipa::path(get, path = "/login", tag = "users", security(()), params(LoginQuery),
    responses((status = 303, description = "signed in: the cookie is set, on to the dashboard (a refused token sends a browser to /signin)"),
        (status = 400, body = crate::wire::ErrorEnvelope), (status = 401, body = crate::wire::ErrorEnvelope)))]
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
        let browser = wants_html(&headers);
        if browser {
            // Where the person was going, when it was a page of berth, goes along.
            let mut again = form_urlencoded::Serializer::new(String::new());
            again.append_pair("refused", "1");
            if let Some(next) = query.next.as_deref().filter(|next| is_local_path(next, MAX_NEXT)) {
                again.append_pair("next", next);
            }
            let again = again.finish();
            return Ok(Redirect::to(&format!("/signin?{again}")).into_response());
        }
        return Err(ApiError::unauthorized());
    }
    let cookie = login_cookie(&query.token, state.engine.config().cookie_ttl.as_secs(), over_https(&headers));
    let mut response = Redirect::to(local_page(query.next.as_deref())).into_response();
    let cookie =
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::invalid_request("the token is not valid"))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Signs the browser out: revokes the cookie's token and clears the cookie.
#[utoipa::path(post, path = "/logout", tag = "users",
    responses((status = 204, description = "the token is revoked and the cookie cleared"),
        (status = 401, body = crate::wire::ErrorEnvelope), (status = 403, body = crate::wire::ErrorEnvelope)))]
pub async fn logout(
    State(state): State<AppState>,
    crate::extract::Caller(_caller): crate::extract::Caller,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    if let Some(token) = crate::extract::cookie_token(&parts.headers) {
        state.engine.logout(token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let cleared = HeaderValue::from_str(&login_cookie("", 0, over_https(&parts.headers)))
        .map_err(|_| ApiError::invalid_request("the cookie cannot be cleared"))?;
    response.headers_mut().insert(header::SET_COOKIE, cleared);
    Ok(response)
}
