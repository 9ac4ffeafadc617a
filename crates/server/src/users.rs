//! `/api/me`, `/api/users`, `/api/tokens`, `/api/sign-ins`.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller};
use crate::wire::{
    AccountBody, AccountList, CreateTokenRequest, CreateUserRequest, CreatedUser, ErrorEnvelope, MeBody,
    SignInBody, SignInList, TokenBody, TokenInfoBody, TokenList, UpdateMeRequest, UpdateUserRequest,
    UserBody,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use berth_core::Role;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/me", get(me).patch(update_me))
        .route("/api/users", post(create_user).get(list_users))
        .route("/api/users/{id}", patch(update_user))
        .route("/api/tokens", post(create_token).get(list_tokens))
        .route("/api/tokens/{id}", delete(revoke_token))
        .route("/api/sign-ins", get(list_sign_ins))
        .route("/api/sign-ins/{id}", delete(end_sign_in))
}

/// The caller, with the display name and email their commits carry.
#[utoipa::path(get, path = "/api/me", tag = "users",
    responses((status = 200, body = MeBody), (status = 401, body = ErrorEnvelope)))]
pub async fn me(State(state): State<AppState>, Caller(user): Caller) -> Result<Json<MeBody>, ApiError> {
    let profile = state.engine.accounts.profile(&user).await?;
    Ok(Json(MeBody::new(&user, &profile)))
}

/// Changes the caller's display name or email (a person whose identity provider sets them
/// cannot: `409 managed_by_provider`).
#[utoipa::path(patch, path = "/api/me", tag = "users", request_body = UpdateMeRequest,
    responses((status = 200, body = MeBody), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn update_me(
    State(state): State<AppState>,
    Caller(user): Caller,
    ApiJson(body): ApiJson<UpdateMeRequest>,
) -> Result<Json<MeBody>, ApiError> {
    let profile = state
        .engine
        .accounts
        .update_profile(&user, body.display_name.as_deref(), body.email.as_deref())
        .await?;
    Ok(Json(MeBody::new(&user, &profile)))
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
    let (user, token) = state.engine.accounts.create_user_as(&caller, &request.name, role).await?;
    Ok((StatusCode::CREATED, Json(CreatedUser { user: UserBody::from(&user), token: token.0 })))
}

/// A new token for the caller, optionally named and expiring; the body may be empty.
#[utoipa::path(post, path = "/api/tokens", tag = "users", request_body(content = Option<CreateTokenRequest>),
    responses((status = 201, body = TokenBody), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope,
            description = "invalid_token_name or invalid_expiry")))]
pub async fn create_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<TokenBody>), ApiError> {
    let request: CreateTokenRequest = crate::extract::optional_object(&body)?;
    let lifetime = request.expires_in_s.map(std::time::Duration::from_secs);
    let (record, token) =
        state.engine.accounts.create_token(&caller, request.name.as_deref(), lifetime).await?;
    let body = TokenBody {
        id: record.id.to_string(),
        token: token.0,
        name: record.name,
        created_at: record.created_at,
        expires_at: record.expires_at,
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// The caller's tokens, without their secrets.
#[utoipa::path(get, path = "/api/tokens", tag = "users",
    responses((status = 200, body = TokenList), (status = 401, body = ErrorEnvelope)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.engine.accounts.tokens(&caller).await?;
    Ok(Json(TokenList { tokens: tokens.iter().map(TokenInfoBody::from).collect() }))
}

/// Revokes one of the caller's tokens; it fails at once.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "users",
    params(("id" = String, Path, description = "token id")),
    responses((status = 204), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.accounts.revoke_token(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's browser sign-ins, the asking browser's marked `current`.
#[utoipa::path(get, path = "/api/sign-ins", tag = "users",
    responses((status = 200, body = SignInList), (status = 401, body = ErrorEnvelope)))]
pub async fn list_sign_ins(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: axum::http::HeaderMap,
) -> Result<Json<SignInList>, ApiError> {
    let current = crate::extract::cookie_token(&headers);
    let sign_ins = state.engine.accounts.sign_ins(&caller, current).await?;
    Ok(Json(SignInList {
        sign_ins: sign_ins.iter().map(|(sign_in, current)| SignInBody::new(sign_in, *current)).collect(),
    }))
}

/// Ends one of the caller's browser sign-ins; that browser is signed out at once.
#[utoipa::path(delete, path = "/api/sign-ins/{id}", tag = "users",
    params(("id" = String, Path, description = "sign-in id")),
    responses((status = 204), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn end_sign_in(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.accounts.end_sign_in(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every user (administrators only).
#[utoipa::path(get, path = "/api/users", tag = "users",
    responses((status = 200, body = AccountList), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope)))]
pub async fn list_users(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<AccountList>, ApiError> {
    let accounts = state.engine.accounts.accounts(&caller).await?;
    Ok(Json(AccountList { users: accounts.iter().map(AccountBody::from).collect() }))
}

/// Disables (or enables) a user or changes their role (administrators only). A disabled
/// user's tokens stop working and their live sessions close (`admin`).
#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", request_body = UpdateUserRequest,
    params(("id" = String, Path, description = "user id")),
    responses((status = 200, body = AccountBody), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "cannot_change_yourself")))]
pub async fn update_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UpdateUserRequest>,
) -> Result<Json<AccountBody>, ApiError> {
    let account = state.engine.accounts.update_account(&caller, &id, request.disabled, request.role).await?;
    Ok(Json(AccountBody::from(&account)))
}
