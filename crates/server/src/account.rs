//! `/api/credentials` and `/api/secrets`: what a user keeps for their git and their
//! agents. Nothing secret ever comes back out.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller};
use crate::wire::{
    AgentBody, AgentList, CreateCredentialRequest, CredentialBody, CredentialList, ErrorEnvelope, SecretBody,
    SecretList, SetSecretRequest, SshKeyBody,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/credentials", post(add_credential).get(list_credentials))
        .route("/api/credentials/{id}", delete(remove_credential))
        .route("/api/secrets", get(list_secrets))
        .route("/api/secrets/{name}", axum::routing::put(set_secret).delete(remove_secret))
        .route("/api/agents", get(list_agents))
        .route("/api/me/ssh-key", get(ssh_key))
}

/// The caller's SSH public key, made on first use: add it to GitHub or GitLab and
/// `ssh://` and `user@host:path` repositories clone and push with it.
#[utoipa::path(get, path = "/api/me/ssh-key", tag = "credentials", responses((status = 200, body = SshKeyBody)))]
pub async fn ssh_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<SshKeyBody>, ApiError> {
    let key = state.engine.accounts.ssh_public_key(&caller).await?;
    Ok(Json(SshKeyBody { public_key: key.public_key, fingerprint: key.fingerprint }))
}

/// The agents this installation offers (the built-in one first), each with the secrets
/// it needs that the caller has not set.
#[utoipa::path(get, path = "/api/agents", tag = "credentials", responses((status = 200, body = AgentList)))]
pub async fn list_agents(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<AgentList>, ApiError> {
    let agents = state.engine.accounts.agents(&caller).await?;
    let agents = agents
        .into_iter()
        .map(|agent| AgentBody {
            name: agent.name,
            description: agent.description,
            needs: agent.needs,
            missing: agent.missing,
            settings: agent.settings,
            installed: agent.installed,
            install: agent.install,
        })
        .collect();
    Ok(Json(AgentList { agents }))
}

/// Stores a git credential of the caller for a host (replacing theirs for that host).
#[utoipa::path(post, path = "/api/credentials", tag = "credentials", request_body = CreateCredentialRequest,
    responses((status = 201, body = CredentialBody),
        (status = 400, body = ErrorEnvelope, description = "invalid_host, invalid_credential")))]
pub async fn add_credential(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(request): ApiJson<CreateCredentialRequest>,
) -> Result<(StatusCode, Json<CredentialBody>), ApiError> {
    let info = state
        .engine
        .accounts
        .add_credential(&caller, &request.host, &request.username, &request.secret)
        .await?;
    Ok((StatusCode::CREATED, Json(CredentialBody::from(&info))))
}

/// The caller's git credentials, without their secrets.
#[utoipa::path(get, path = "/api/credentials", tag = "credentials",
    responses((status = 200, body = CredentialList)))]
pub async fn list_credentials(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<CredentialList>, ApiError> {
    let credentials = state.engine.accounts.credentials(&caller).await?;
    Ok(Json(CredentialList { credentials: credentials.iter().map(CredentialBody::from).collect() }))
}

#[utoipa::path(delete, path = "/api/credentials/{id}", tag = "credentials",
    params(("id" = String, Path, description = "credential id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn remove_credential(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.accounts.remove_credential(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a secret of the caller; their agents have it in their environment from their
/// next power on.
#[utoipa::path(put, path = "/api/secrets/{name}", tag = "credentials", request_body = SetSecretRequest,
    params(("name" = String, Path, description = "`[A-Z_][A-Z0-9_]{0,63}`")),
    responses((status = 204),
        (status = 400, body = ErrorEnvelope, description = "invalid_secret_name, invalid_secret")))]
pub async fn set_secret(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<SetSecretRequest>,
) -> Result<StatusCode, ApiError> {
    state.engine.accounts.set_secret(&caller, &name, &request.value).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's secrets: names only.
#[utoipa::path(get, path = "/api/secrets", tag = "credentials", responses((status = 200, body = SecretList)))]
pub async fn list_secrets(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<SecretList>, ApiError> {
    let secrets = state.engine.accounts.secrets(&caller).await?;
    let secrets = secrets
        .into_iter()
        .map(|secret| SecretBody { name: secret.name, updated_at: secret.updated_at })
        .collect();
    Ok(Json(SecretList { secrets }))
}

#[utoipa::path(delete, path = "/api/secrets/{name}", tag = "credentials",
    params(("name" = String, Path, description = "secret name")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn remove_secret(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.accounts.remove_secret(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
