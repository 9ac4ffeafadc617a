//! `/api/me`, `/api/users`, `/api/tokens`.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller};
use crate::wire::{CreateUserRequest, CreatedUser, ErrorEnvelope, MeBody, TokenBody, UserBody};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_core::Role;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/me", get(me))
        .route("/api/users", post(create_user))
        .route("/api/tokens", post(create_token))
}

/// The caller, and where their browser finds the previews.
#[utoipa::path(get, path = "/api/me", tag = "users",
    responses((status = 200, body = MeBody), (status = 401, body = ErrorEnvelope)))]
pub async fn me(State(state): State<AppState>, Caller(user): Caller, headers: HeaderMap) -> Json<MeBody> {
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
    let preview_url = state.preview.as_ref().and_then(|preview| preview.for_host(host));
    Json(MeBody { user: UserBody::from(&user), preview_url })
}

/// Creates a user with a first token (administrators only).
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = CreateUserRequest,
    responses((status = 201, body = CreatedUser), (status = 400, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(request): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    let role = request.role.unwrap_or(Role::Member);
    let (user, token) = state.engine.create_user_as(&caller, &request.name, role).await?;
    Ok((StatusCode::CREATED, Json(CreatedUser { user: UserBody::from(&user), token: token.0 })))
}

/// A new token for the caller.
#[utoipa::path(post, path = "/api/tokens", tag = "users",
    responses((status = 201, body = TokenBody), (status = 401, body = ErrorEnvelope)))]
pub async fn create_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<(StatusCode, Json<TokenBody>), ApiError> {
    let token = state.engine.create_token(&caller).await?;
    Ok((StatusCode::CREATED, Json(TokenBody { token: token.0 })))
}
