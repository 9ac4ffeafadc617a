//! `/api/workspaces`: create, list, show, change settings, initialisation log, git status,
//! changes, commit, push, delete, retry.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Caller};
use crate::wire::{
    ChangesBody, CommitRequest, CommittedBody, CreateWorkspaceRequest, DeleteQuery, DeletedBody,
    ErrorEnvelope, FileBody, FilesQuery, GitStatusBody, PushBody, RenameFileRequest, RenamedFileBody,
    UpdateWorkspaceRequest, WorkspaceBody, WorkspaceList, WriteFileRequest, WrittenFileBody,
};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_core::User;
use berth_core::preview::PreviewHosts;
use berth_engine::{Engine, NewWorkspace, WorkspaceSettings};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/workspaces", post(create_workspace).get(list_workspaces))
        .route("/api/workspaces/{id}", get(show_workspace).patch(update_workspace).delete(delete_workspace))
        .route("/api/workspaces/{id}/init-log", get(init_log))
        .route("/api/workspaces/{id}/git", get(git_status))
        .route("/api/workspaces/{id}/retry", post(retry_workspace))
        .route("/api/workspaces/{id}/push", post(push_workspace))
        .route("/api/workspaces/{id}/diff", get(workspace_diff))
        .route("/api/workspaces/{id}/commit", post(commit_workspace))
        .route(
            "/api/workspaces/{id}/files",
            get(workspace_files)
                .put(write_file)
                .delete(delete_file)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_FILE_REQUEST_BYTES)),
        )
        .route("/api/workspaces/{id}/files/rename", axum::routing::post(rename_file))
}

/// Creates a workspace; it answers at once in `initialising` and clones in the background.
#[utoipa::path(post, path = "/api/workspaces", tag = "workspaces", request_body = CreateWorkspaceRequest,
    responses((status = 202, body = WorkspaceBody),
        (status = 400, body = ErrorEnvelope, description = "invalid_repo (saying why), credentials_in_url, invalid_name, invalid_branch, invalid_agent"),
        (status = 409, body = ErrorEnvelope, description = "name_taken"),
        (status = 413, body = ErrorEnvelope)))]
pub async fn create_workspace(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(request): ApiJson<CreateWorkspaceRequest>,
) -> Result<(StatusCode, Json<WorkspaceBody>), ApiError> {
    let request =
        NewWorkspace { repo: request.repo, branch: request.branch, name: request.name, agent: request.agent };
    let workspace = state.engine.workspaces.create(&caller, request).await?;
    Ok((StatusCode::ACCEPTED, Json(WorkspaceBody::new(&workspace, None, state.preview.as_ref()))))
}

/// The caller's workspaces, oldest first.
#[utoipa::path(get, path = "/api/workspaces", tag = "workspaces",
    responses((status = 200, body = WorkspaceList), (status = 401, body = ErrorEnvelope)))]
pub async fn list_workspaces(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<WorkspaceList>, ApiError> {
    Ok(Json(workspace_list(&state.engine, state.preview.as_ref(), &caller).await?))
}

/// The caller's workspaces with their live sessions: the list endpoint's answer and what
/// the dashboard's change feed sends.
pub async fn workspace_list(
    engine: &Engine,
    previews: Option<&PreviewHosts>,
    caller: &User,
) -> Result<WorkspaceList, ApiError> {
    let workspaces = engine.workspaces.list(caller).await?;
    let live = engine.sessions.live_sessions(caller).await?;
    let live: std::collections::HashMap<_, _> =
        live.iter().map(|session| (&session.workspace_id, session)).collect();
    let body = |workspace: &berth_core::Workspace| {
        WorkspaceBody::new(workspace, live.get(&workspace.id).copied(), previews)
    };
    Ok(WorkspaceList { workspaces: workspaces.iter().map(body).collect() })
}

/// One of the caller's workspaces.
#[utoipa::path(get, path = "/api/workspaces/{id}", tag = "workspaces",
    params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = WorkspaceBody), (status = 404, body = ErrorEnvelope)))]
pub async fn show_workspace(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<WorkspaceBody>, ApiError> {
    let workspace = state.engine.workspaces.workspace(&caller, &id).await?;
    let live = state.engine.sessions.live_session_of_workspace(&workspace.id).await?;
    Ok(Json(WorkspaceBody::new(&workspace, live.as_ref(), state.preview.as_ref())))
}

/// Changes a workspace's name, agent command or branch; only the fields given change.
#[utoipa::path(patch, path = "/api/workspaces/{id}", tag = "workspaces", request_body = UpdateWorkspaceRequest,
    params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = WorkspaceBody), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope,
            description = "name_taken, workspace_not_ready, workspace_active, branch_switch_failed or git_failed")))]
pub async fn update_workspace(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UpdateWorkspaceRequest>,
) -> Result<Json<WorkspaceBody>, ApiError> {
    let settings = WorkspaceSettings { name: request.name, branch: request.branch, agent: request.agent };
    let workspace = state.engine.workspaces.update(&caller, &id, settings).await?;
    let live = state.engine.sessions.live_session_of_workspace(&workspace.id).await?;
    Ok(Json(WorkspaceBody::new(&workspace, live.as_ref(), state.preview.as_ref())))
}

/// The initialisation log (everything git printed while cloning), as plain text.
#[utoipa::path(get, path = "/api/workspaces/{id}/init-log", tag = "workspaces",
    params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 404, body = ErrorEnvelope)))]
pub async fn init_log(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let log = state.engine.workspaces.init_log(&caller, &id).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], log))
}

/// Branch, head, uncommitted paths and unpushed commits of the workspace's checkout.
#[utoipa::path(get, path = "/api/workspaces/{id}/git", tag = "workspaces",
    params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = GitStatusBody), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope,
            description = "workspace_not_ready, or git_failed with git's reason (a checkout git cannot read)")))]
pub async fn git_status(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<GitStatusBody>, ApiError> {
    Ok(Json(GitStatusBody::from(state.engine.workspaces.git_status(&caller, &id).await?)))
}

/// Destroys the workspace's files and record; never touches the remote repository.
#[utoipa::path(delete, path = "/api/workspaces/{id}", tag = "workspaces",
    params(("id" = String, Path, description = "workspace id"),
        ("force" = Option<bool>, Query, description = "delete even with unsaved work")),
    responses((status = 200, body = DeletedBody), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "unsaved_work, with the git summary in `git`")))]
pub async fn delete_workspace(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<Json<DeletedBody>, ApiError> {
    let deleted = state.engine.workspaces.delete(&caller, &id, query.force).await?;
    Ok(Json(DeletedBody { deleted: deleted.to_string() }))
}

/// Clones a workspace whose initialisation failed again.
#[utoipa::path(post, path = "/api/workspaces/{id}/retry", tag = "workspaces",
    params(("id" = String, Path, description = "workspace id")),
    responses((status = 202, body = WorkspaceBody), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "not_retryable")))]
pub async fn retry_workspace(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<WorkspaceBody>), ApiError> {
    let workspace = state.engine.workspaces.retry(&caller, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(WorkspaceBody::new(&workspace, None, state.preview.as_ref()))))
}

/// Pushes the checked-out branch, from a sandbox of the workspace, to the repository it
/// was made from, with the caller's credential for that host.
#[utoipa::path(post, path = "/api/workspaces/{id}/push", tag = "workspaces",
    params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = PushBody), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope,
            description = "push_failed with git's reason (no secret in it), workspace_not_ready")))]
pub async fn push_workspace(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<PushBody>, ApiError> {
    let pushed = state.engine.workspaces.push(&caller, &id).await?;
    Ok(Json(PushBody { remote: pushed.remote, branch: pushed.branch, head: pushed.head }))
}

/// Each uncommitted file's unified diff against HEAD (untracked files as new files) and
/// the commits no remote has, read in a sandbox of the workspace. Bounded: 1,000 files,
/// 256 KiB of diff per file, 100 commits; binary files have no diff.
#[utoipa::path(get, path = "/api/workspaces/{id}/diff", tag = "workspaces",
    params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = ChangesBody), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "workspace_not_ready, git_failed")))]
pub async fn workspace_diff(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<ChangesBody>, ApiError> {
    Ok(Json(ChangesBody::from(&state.engine.workspaces.changes(&caller, &id).await?)))
}

/// The file browser: a directory's entries or a file's text, read in a sandbox of the
/// workspace; links are shown, never followed, and `.git` is left out. Bounded: 5,000
/// entries, 1 MiB of a file; a binary file is refused.
#[utoipa::path(get, path = "/api/workspaces/{id}/files", tag = "workspaces",
    params(("id" = String, Path, description = "workspace id"), FilesQuery),
    responses((status = 200, body = FileBody), (status = 400, body = ErrorEnvelope, description = "invalid_path"),
        (status = 404, body = ErrorEnvelope, description = "the workspace, or nothing at that path"),
        (status = 409, body = ErrorEnvelope, description = "workspace_not_ready, git_failed"),
        (status = 422, body = ErrorEnvelope, description = "binary_file")))]
pub async fn workspace_files(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<FilesQuery>,
) -> Result<Json<FileBody>, ApiError> {
    let file = state.engine.workspaces.path(&caller, &id, &query.path).await?;
    Ok(Json(FileBody::new(&query.path, file)))
}

/// The most a file write's request may hold: 1 MiB of text, escaped in JSON.
const MAX_FILE_REQUEST_BYTES: usize = 4 << 20;

/// Writes a file of the checkout, in a sandbox of the workspace: its directories are
/// made, nothing on the way is followed, and with `expected_sha` only over the version
/// read (`null`: only a new file).
#[utoipa::path(put, path = "/api/workspaces/{id}/files", tag = "workspaces", request_body = WriteFileRequest,
    params(("id" = String, Path, description = "workspace id"), FilesQuery),
    responses((status = 200, body = WrittenFileBody),
        (status = 400, body = ErrorEnvelope, description = "invalid_path: `..`, `.git`, a link or a file on the way"),
        (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "file_changed (with the file's `sha` now), workspace_not_ready"),
        (status = 413, body = ErrorEnvelope, description = "file_too_large: over 1 MiB")))]
pub async fn write_file(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<FilesQuery>,
    ApiJson(request): ApiJson<WriteFileRequest>,
) -> Result<Json<WrittenFileBody>, ApiError> {
    let expected = match request.expected_sha {
        None => berth_git::Expected::Any,
        Some(None) => berth_git::Expected::Absent,
        Some(Some(sha)) => berth_git::Expected::Version(sha),
    };
    let sha =
        state.engine.workspaces.write_file(&caller, &id, &query.path, &request.content, &expected).await?;
    Ok(Json(WrittenFileBody { path: query.path.trim_matches('/').to_owned(), sha }))
}

/// Removes a file (or a link, not followed) of the checkout.
#[utoipa::path(delete, path = "/api/workspaces/{id}/files", tag = "workspaces",
    params(("id" = String, Path, description = "workspace id"), FilesQuery),
    responses((status = 204), (status = 400, body = ErrorEnvelope, description = "invalid_path"),
        (status = 404, body = ErrorEnvelope)))]
pub async fn delete_file(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<FilesQuery>,
) -> Result<StatusCode, ApiError> {
    state.engine.workspaces.delete_file(&caller, &id, &query.path).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Renames a file or directory of the checkout; the new name must be free.
#[utoipa::path(post, path = "/api/workspaces/{id}/files/rename", tag = "workspaces", request_body = RenameFileRequest,
    params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = RenamedFileBody), (status = 400, body = ErrorEnvelope, description = "invalid_path"),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope, description = "file_exists")))]
pub async fn rename_file(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<RenameFileRequest>,
) -> Result<Json<RenamedFileBody>, ApiError> {
    let path = state.engine.workspaces.rename_file(&caller, &id, &request.from, &request.to).await?;
    Ok(Json(RenamedFileBody { path }))
}

/// Commits everything in the checkout (new, changed and deleted files) as the caller, in
/// a sandbox of the workspace; hooks do not run.
#[utoipa::path(post, path = "/api/workspaces/{id}/commit", tag = "workspaces", request_body = CommitRequest,
    params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = CommittedBody), (status = 400, body = ErrorEnvelope, description = "invalid_message"),
        (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "nothing_to_commit, workspace_not_ready, git_failed")))]
pub async fn commit_workspace(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CommitRequest>,
) -> Result<Json<CommittedBody>, ApiError> {
    let committed = state.engine.workspaces.commit(&caller, &id, &request.message).await?;
    Ok(Json(CommittedBody { head: committed.head, branch: committed.branch }))
}
