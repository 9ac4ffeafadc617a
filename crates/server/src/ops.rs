//! Operations and entry points: `/healthz`, `/readyz`, `/api/openapi.json`, `/login`,
//! `/logout`.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiQuery, TOKEN_COOKIE, cookie_token, is_local_path, wants_html};
use axum::extract::FromRequestParts;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_engine::{Browser, is_sign_in_secret};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/openapi.json", get(openapi))
        .route("/login", get(login).post(switch_login))
        .route("/logout", post(logout))
}

/// Whether the browser reached berth over https (berth behind a TLS proxy says so with
/// `X-Forwarded-Proto` or `Forwarded`): the cookie is then `Secure`.
pub(crate) fn over_https(headers: &axum::http::HeaderMap) -> bool {
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
pub(crate) fn login_cookie(value: &str, max_age: u64, secure: bool) -> String {
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
    responses((status = 303, description = "signed in: a browser sign-in of its own is made and its cookie set, on to `next` (a refused token sends a browser to /signin)"),
        (status = 200, description = "the browser is signed in as another person: a page naming both accounts, with a button that switches (a POST to /login)", content_type = "text/html", body = String),
        (status = 400, body = crate::wire::ErrorEnvelope), (status = 401, body = crate::wire::ErrorEnvelope)))]
/// The login link: trades the token for a browser sign-in of its own (a random secret in
/// an HTTP-only cookie, stored hashed; never the token) and goes on to `next`, so the
/// token leaves the address bar and the history. A browser already signed in as another
/// person is not switched by a link (someone may have sent it to sign the browser in as
/// themselves): it gets a page naming both accounts, and switching takes a POST from
/// berth's own page. A refused token sends a browser back to the sign-in page with the
/// reason; other clients get the `401`.
pub async fn login(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let ApiQuery(query) = ApiQuery::<LoginQuery>::from_request_parts(&mut parts, &state).await?;
    let headers = &parts.headers;
    let next = local_page(query.next.as_deref());
    let Some(arriving) = state.engine.accounts.token_user(&query.token).await? else {
        return refused(headers, query.next.as_deref());
    };
    let signed_in = match cookie_token(headers).filter(|secret| is_sign_in_secret(secret)) {
        Some(secret) => state.engine.accounts.authenticate(secret).await?,
        None => None,
    };
    match signed_in {
        Some(current) if current.id == arriving.id => Ok(Redirect::to(next).into_response()),
        Some(current) => Ok(switch_page(&current.name, &arriving.name, &query.token, next)),
        None => sign_in(&state, &parts, &query.token, next).await,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchLogin {
    /// A token of the person to sign in as.
    token: String,
    /// The page of berth to go on to.
    next: Option<String>,
}

/// Signs the browser in with `token`, in place of whoever it was signed in as: what the
/// page of `GET /login` sends (a form), or a script of berth's own page (JSON). Only from
/// berth's own origin — another site's form cannot sign a browser in as someone else.
#[utoipa::path(post, path = "/login", tag = "users", security(()), request_body = SwitchLogin,
    responses((status = 303, description = "signed in as the token's user, on to `next`"),
        (status = 400, body = crate::wire::ErrorEnvelope), (status = 401, body = crate::wire::ErrorEnvelope),
        (status = 403, body = crate::wire::ErrorEnvelope)))]
pub async fn switch_login(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    if !crate::extract::same_origin(&parts) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "a sign-in can only be switched from berth's own page",
        ));
    }
    let body = axum::body::to_bytes(body, crate::MAX_REQUEST_BODY_BYTES)
        .await
        .map_err(|_| ApiError::invalid_request("the request body is too large"))?;
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let switch: SwitchLogin = if form {
        switch_form(&body)?
    } else {
        serde_json::from_slice(&body)
            .map_err(|error| ApiError::invalid_request(format!("the request body is not valid: {error}")))?
    };
    if state.engine.accounts.token_user(&switch.token).await?.is_none() {
        return refused(&parts.headers, switch.next.as_deref());
    }
    // The sign-in being replaced ends: switching is signing out, then in.
    if let Some(secret) = cookie_token(&parts.headers) {
        state.engine.accounts.sign_out(secret).await?;
    }
    sign_in(&state, &parts, &switch.token, local_page(switch.next.as_deref())).await
}

/// Reads a form body of `token` and `next`.
fn switch_form(body: &[u8]) -> Result<SwitchLogin, ApiError> {
    let mut token = None;
    let mut next = None;
    for (name, value) in form_urlencoded::parse(body) {
        match name.as_ref() {
            "token" => token = Some(value.into_owned()),
            "next" => next = Some(value.into_owned()),
            _ => return Err(ApiError::invalid_request(format!("unknown field '{name}'"))),
        }
    }
    let token = token.ok_or_else(|| ApiError::invalid_request("the token is missing"))?;
    Ok(SwitchLogin { token, next })
}

/// A refused token: a browser goes back to the sign-in page with the reason (and where it
/// was going); other clients get the `401`.
fn refused(headers: &axum::http::HeaderMap, next: Option<&str>) -> Result<Response, ApiError> {
    if !wants_html(headers) {
        return Err(ApiError::unauthorized());
    }
    let mut again = form_urlencoded::Serializer::new(String::new());
    again.append_pair("refused", "1");
    if let Some(next) = next.filter(|next| is_local_path(next, MAX_NEXT)) {
        again.append_pair("next", next);
    }
    Ok(Redirect::to(&format!("/signin?{}", again.finish())).into_response())
}

/// Makes a browser sign-in from `token` and answers with its cookie, on to `next`.
async fn sign_in(
    state: &AppState,
    parts: &axum::http::request::Parts,
    token: &str,
    next: &str,
) -> Result<Response, ApiError> {
    let headers = &parts.headers;
    let user_agent =
        headers.get(header::USER_AGENT).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let address = client_address(parts);
    let browser = Browser { user_agent, address: &address };
    let Some((_, made)) = state.engine.accounts.sign_in_with_token(token, browser).await? else {
        return refused(headers, Some(next));
    };
    let cookie = login_cookie(&made.secret, made.max_age.as_secs(), over_https(headers));
    let mut response = Redirect::to(next).into_response();
    let cookie =
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::invalid_request("the token is not valid"))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Where a request came from: the first address a proxy in front names
/// (`X-Forwarded-For`), else the connection's peer. Shown to the person only.
pub(crate) fn client_address(parts: &axum::http::request::Parts) -> String {
    let forwarded = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(str::trim)
        .filter(|value| !value.is_empty());
    match forwarded {
        Some(address) => address.to_owned(),
        None => parts
            .extensions
            .get::<axum::extract::ConnectInfo<crate::enveloped::PeerAddress>>()
            .map(|info| info.0.0.ip().to_string())
            .unwrap_or_default(),
    }
}

/// The page a login link opened in a browser signed in as someone else gets: who is
/// signed in, who the link is for, and a button that switches (a form posted from this
/// very page, so from berth's origin). No script; everything said is escaped.
fn switch_page(current: &str, arriving: &str, token: &str, next: &str) -> Response {
    use crate::page::escape_html as escape;
    let (current, arriving) = (escape(current), escape(arriving));
    let main = format!(
        "<h1>You are signed in as {current}</h1>\
         <p>This login link signs in as <strong>{arriving}</strong>. This browser stays signed in as \
         <strong>{current}</strong> unless you switch.</p>\
         <p>Switch only if you opened this link yourself: a link someone sent you could sign you in to \
         their account, where what you save would be theirs.</p>\
         <form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <button type=\"submit\" class=\"danger\">Sign out {current} and sign in as {arriving}</button></form>\
         <p><a href=\"{}\">Stay signed in as {current}</a></p>",
        escape(token),
        escape(next),
        escape(next),
    );
    let mut response = crate::page::server_page(StatusCode::OK, "Switch account?", &main);
    // Not `no-referrer`: a browser then sends `Origin: null` with the form, which is
    // refused. The address (with its token) never goes to another site all the same.
    response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// Signs the browser out: ends this browser's sign-in (never the token it was made from,
/// so a login link works again) and clears the cookie.
#[utoipa::path(post, path = "/logout", tag = "users",
    responses((status = 204, description = "the sign-in is ended and the cookie cleared"),
        (status = 401, body = crate::wire::ErrorEnvelope), (status = 403, body = crate::wire::ErrorEnvelope)))]
pub async fn logout(
    State(state): State<AppState>,
    crate::extract::Caller(_caller): crate::extract::Caller,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    if let Some(secret) = cookie_token(&parts.headers) {
        state.engine.accounts.sign_out(secret).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let cleared = HeaderValue::from_str(&login_cookie("", 0, over_https(&parts.headers)))
        .map_err(|_| ApiError::invalid_request("the cookie cannot be cleared"))?;
    response.headers_mut().insert(header::SET_COOKIE, cleared);
    Ok(response)
}
