//! The JSON shapes of API.md, shared by the server and its clients (the CLI, tests).
//! Requests refuse unknown fields; responses are built from the domain types here and
//! nowhere else.

use berth_core::preview::PreviewHosts;
use berth_core::{Role, Session, User, Workspace};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserBody {
    pub id: String,
    pub name: String,
    #[schema(value_type = String, example = "member")]
    pub role: Role,
}

impl From<&User> for UserBody {
    fn from(user: &User) -> UserBody {
        UserBody { id: user.id.to_string(), name: user.name.clone(), role: user.role }
    }
}

/// The caller, with what they are called and reached at (what their commits carry).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MeBody {
    pub id: String,
    pub name: String,
    #[schema(value_type = String, example = "member")]
    pub role: Role,
    /// Empty until set; commits then carry the user name.
    pub display_name: String,
    /// Empty until set; commits then carry `<name>@users.berth.invalid`.
    pub email: String,
    /// An identity provider sets both at each sign-in (`PATCH /api/me` refuses them).
    pub managed_by_provider: bool,
}

impl MeBody {
    pub fn new(user: &User, profile: &berth_core::Profile) -> MeBody {
        MeBody {
            id: user.id.to_string(),
            name: user.name.clone(),
            role: user.role,
            display_name: profile.display_name.clone(),
            email: profile.email.clone(),
            managed_by_provider: profile.from_provider,
        }
    }
}

/// `PATCH /api/me`: either field may be left out (kept) or empty (cleared).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "member")]
    pub role: Option<Role>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedUser {
    pub user: UserBody,
    pub token: String,
}

/// `POST /api/tokens`: optional name and lifetime.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    #[serde(default)]
    pub name: Option<String>,
    /// Seconds until the token stops working; none: it lives until revoked.
    #[serde(default, deserialize_with = "whole_seconds")]
    #[schema(value_type = Option<u64>, minimum = 1)]
    pub expires_in_s: Option<u64>,
}

/// A whole number of seconds, also when written as `60.0` (JSON does not tell integers
/// from other numbers).
fn whole_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
    if let Some(seconds) = number.as_u64() {
        return Ok(Some(seconds));
    }
    match number.as_f64() {
        Some(seconds) if seconds >= 0.0 && seconds.fract() == 0.0 && seconds < u64::MAX as f64 => {
            Ok(Some(seconds as u64))
        }
        _ => Err(serde::de::Error::custom(format!("{number} is not a whole number of seconds"))),
    }
}

/// A token just made: the secret is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenBody {
    pub id: String,
    pub token: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfoBody {
    pub id: String,
    pub name: String,
    /// The token's first characters.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<&berth_core::TokenInfo> for TokenInfoBody {
    fn from(token: &berth_core::TokenInfo) -> TokenInfoBody {
        TokenInfoBody {
            id: token.id.to_string(),
            name: token.name.clone(),
            prefix: token.prefix.clone(),
            created_at: token.created_at,
            last_used_at: token.last_used_at,
            expires_at: token.expires_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfoBody>,
}

/// A browser's sign-in as its owner sees it: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignInBody {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The browser, as it named itself.
    pub user_agent: String,
    /// Where it signed in from.
    pub address: String,
    /// `token` (a login link) or `oidc`.
    pub via: String,
    /// The sign-in of the browser asking.
    pub current: bool,
}

impl SignInBody {
    pub fn new(sign_in: &berth_core::SignInInfo, current: bool) -> SignInBody {
        SignInBody {
            id: sign_in.id.to_string(),
            created_at: sign_in.created_at,
            last_seen_at: sign_in.last_seen_at,
            expires_at: sign_in.expires_at,
            user_agent: sign_in.user_agent.clone(),
            address: sign_in.address.clone(),
            via: sign_in.via.as_str().to_owned(),
            current,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignInList {
    pub sign_ins: Vec<SignInBody>,
}

/// A user as an administrator sees them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountBody {
    pub id: String,
    pub name: String,
    #[schema(value_type = String, example = "member")]
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    /// How they sign in: `oidc` (the identity provider) or `token` (login links).
    pub signs_in_with: String,
}

impl From<&berth_core::Account> for AccountBody {
    fn from(account: &berth_core::Account) -> AccountBody {
        AccountBody {
            id: account.user.id.to_string(),
            name: account.user.name.clone(),
            role: account.user.role,
            disabled: account.disabled,
            created_at: account.user.created_at,
            signs_in_with: if account.from_provider { "oidc" } else { "token" }.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountList {
    pub users: Vec<AccountBody>,
}

/// `PATCH /api/users/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "member")]
    pub role: Option<Role>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceBody {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub repo: String,
    pub branch: Option<String>,
    /// The agent command of this workspace when it differs from the installation's.
    pub agent: Option<String>,
    /// `initialising`, `ready`, `active`, `idle` or `error`.
    pub state: String,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_opened_at: Option<DateTime<Utc>>,
    /// The workspace's live session, if it has one.
    pub active_session: Option<SessionBody>,
    /// Whether berth can push its branch: false for a repository that is a directory of
    /// the server (berth pushes only to remote repositories).
    pub pushable: bool,
    /// The origin of this workspace's previews (a host of its own); `null` when previews
    /// are switched off. A port's preview is `<preview_url>/<port>/`, opened through
    /// `GET /api/workspaces/{id}/preview?port=`.
    pub preview_url: Option<String>,
}

impl WorkspaceBody {
    pub fn new(
        workspace: &Workspace,
        live_session: Option<&Session>,
        previews: Option<&PreviewHosts>,
    ) -> WorkspaceBody {
        WorkspaceBody {
            id: workspace.id.to_string(),
            name: workspace.name.clone(),
            owner: workspace.owner.to_string(),
            repo: workspace.repo.clone(),
            branch: workspace.branch.clone(),
            agent: workspace.agent.clone(),
            state: workspace.state.as_str().to_owned(),
            error: workspace.error.clone(),
            created_at: workspace.created_at,
            last_opened_at: workspace.last_opened_at,
            active_session: live_session.map(SessionBody::from),
            pushable: workspace.pushable(),
            preview_url: previews.map(|hosts| hosts.url_for(&workspace.id)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceList {
    pub workspaces: Vec<WorkspaceBody>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspaceRequest {
    /// An https://, ssh:// or git:// URL, `user@host:path`, or an absolute local path.
    pub repo: String,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// An agent command for this workspace instead of the installation's.
    #[serde(default)]
    pub agent: Option<String>,
}

/// `PATCH /api/workspaces/{id}`: only the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspaceRequest {
    #[serde(default)]
    pub name: Option<String>,
    /// Switches the checkout to this branch (no live session, no conflicting changes).
    #[serde(default)]
    pub branch: Option<String>,
    /// The agent command from the next open on; an empty string goes back to the
    /// installation's agent.
    #[serde(default)]
    pub agent: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GitStatusBody {
    pub branch: Option<String>,
    pub head: Option<String>,
    pub clean: bool,
    pub uncommitted: Vec<String>,
    pub unpushed_commits: u64,
}

impl From<berth_engine::WorkspaceGitStatus> for GitStatusBody {
    fn from(status: berth_engine::WorkspaceGitStatus) -> GitStatusBody {
        GitStatusBody {
            branch: status.branch,
            head: status.head,
            clean: status.clean,
            uncommitted: status.uncommitted,
            unpushed_commits: status.unpushed_commits,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedBody {
    pub deleted: String,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    pub force: bool,
}

/// `{"error": {"code", "message", ...}}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, snake_case; clients branch on it.
    pub code: String,
    /// For people.
    pub message: String,
    /// Extra fields that depend on the code (for example `git` with `unsaved_work`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionBody {
    pub id: String,
    pub workspace_id: String,
    pub user_id: String,
    /// `starting`, `active`, `disconnected` or `ended`.
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `closed`, `closed_all`, `replaced`, `left`, `grace_expired`, `deleted`, `failed`,
    /// `server_restart`, `replica_lost` or `admin`.
    pub end_reason: Option<String>,
    pub grace_expires_at: Option<DateTime<Utc>>,
    pub agent_running: bool,
    /// The terminal command that continues this session.
    pub resume_command: String,
}

impl From<&Session> for SessionBody {
    fn from(session: &Session) -> SessionBody {
        SessionBody {
            id: session.id.to_string(),
            workspace_id: session.workspace_id.to_string(),
            user_id: session.user_id.to_string(),
            state: session.state.as_str().to_owned(),
            started_at: session.started_at,
            ended_at: session.ended_at,
            end_reason: session.end_reason.map(|reason| reason.as_str().to_owned()),
            grace_expires_at: session.grace_expires_at,
            agent_running: session.agent_running,
            resume_command: session.resume_command(),
        }
    }
}

/// A session in the administrators' list: the session, and whose and which it is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminSessionBody {
    #[serde(flatten)]
    pub session: SessionBody,
    pub user_name: Option<String>,
    pub workspace_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminSessionList {
    pub sessions: Vec<AdminSessionBody>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionBody>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionListQuery {
    /// Only `live` (the default): sessions that have not ended.
    #[serde(default)]
    pub state: Option<String>,
}

/// The answer to opening a workspace.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenBody {
    pub session: SessionBody,
    /// True when a live session existed and was attached to instead of starting one.
    pub resumed: bool,
    /// Sessions powered off to make room (policy `replace`).
    pub replaced: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CloseBody {
    /// Always `workspace_closed`.
    pub outcome: String,
    pub session: SessionBody,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseAllRequest {
    /// A workspace whose launch was blocked: opened again after the cleanup.
    #[serde(default)]
    pub retry_open: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CloseFailureBody {
    pub session_id: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CloseAllBody {
    /// `active_workspaces_closed`, `cleanup_partially_complete` or `nothing_to_close`.
    pub outcome: String,
    pub closed: Vec<String>,
    pub failed: Vec<CloseFailureBody>,
    /// The relaunch asked for with `retry_open`: an open answer or `{"error": {...}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub retried_open: Option<serde_json::Value>,
}

/// One entry of a session's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventBody {
    /// Grows by one within a workspace.
    pub seq: i64,
    pub session_id: String,
    pub at: DateTime<Utc>,
    pub kind: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<&berth_core::Event> for EventBody {
    fn from(event: &berth_core::Event) -> EventBody {
        EventBody {
            seq: event.seq,
            session_id: event.session_id.to_string(),
            at: event.at,
            kind: event.kind.clone(),
            data: serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventBody>,
    /// Pass as `after` for the next page; equal to `after` when there is nothing more.
    pub next_after: i64,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    #[serde(default)]
    pub after: Option<i64>,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// What a live-channel client may send.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LiveCommand {
    Prompt { text: String },
    Cancel,
    Answer { question_id: String, option_id: String },
}

/// `POST /api/credentials`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCredentialRequest {
    /// `github.com`, `127.0.0.1:8080`.
    pub host: String,
    pub username: String,
    /// A token or password; never shown again.
    pub secret: String,
}

/// A git credential as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialBody {
    pub id: String,
    pub host: String,
    pub username: String,
    pub created_at: DateTime<Utc>,
}

impl From<&berth_core::CredentialInfo> for CredentialBody {
    fn from(credential: &berth_core::CredentialInfo) -> CredentialBody {
        CredentialBody {
            id: credential.id.to_string(),
            host: credential.host.clone(),
            username: credential.username.clone(),
            created_at: credential.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialList {
    pub credentials: Vec<CredentialBody>,
}

/// `PUT /api/secrets/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSecretRequest {
    pub value: String,
}

/// A secret as listed: never its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretBody {
    pub name: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    pub secrets: Vec<SecretBody>,
}

/// `POST /api/workspaces/{id}/push`: what was pushed where.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushBody {
    /// The repository the workspace was made from.
    pub remote: String,
    pub branch: String,
    /// The commit pushed.
    pub head: String,
}

/// An agent the installation offers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentBody {
    /// What a workspace's `agent` names to use it (`builtin`: berth's own).
    pub name: String,
    pub description: String,
    /// The secrets it needs.
    pub needs: Vec<String>,
    /// Those the caller has not set (`PUT /api/secrets/{name}`).
    pub missing: Vec<String>,
    /// The settings it reads from its environment (its provider's address, its model).
    pub settings: Vec<String>,
    /// Whether it can start on this server.
    pub installed: bool,
    /// How it gets installed, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentBody>,
}

/// `GET /api/me/ssh-key`: the caller's SSH public key, to add to a git host.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SshKeyBody {
    /// OpenSSH format.
    pub public_key: String,
    /// `SHA256:…`.
    pub fingerprint: String,
}

/// One uncommitted file of `GET /api/workspaces/{id}/diff`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangedFileBody {
    pub path: String,
    /// The path before a rename.
    pub old_path: Option<String>,
    /// `added`, `modified`, `deleted` or `renamed` (untracked files are `added`).
    pub status: String,
    /// `null` for a binary file.
    pub additions: Option<u64>,
    pub deletions: Option<u64>,
    pub binary: bool,
    /// The unified diff against HEAD; `null` for a binary file.
    pub diff: Option<String>,
    /// The diff was cut at 256 KiB.
    pub diff_truncated: bool,
}

impl From<&berth_git::ChangedFile> for ChangedFileBody {
    fn from(file: &berth_git::ChangedFile) -> ChangedFileBody {
        ChangedFileBody {
            path: file.path.clone(),
            old_path: file.old_path.clone(),
            status: match file.change {
                berth_git::FileChange::Added => "added",
                berth_git::FileChange::Modified => "modified",
                berth_git::FileChange::Deleted => "deleted",
                berth_git::FileChange::Renamed => "renamed",
            }
            .to_owned(),
            additions: file.additions,
            deletions: file.deletions,
            binary: file.binary,
            diff: file.diff.clone(),
            diff_truncated: file.diff_truncated,
        }
    }
}

/// A commit no remote has.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommitBody {
    pub sha: String,
    pub subject: String,
}

/// `GET /api/workspaces/{id}/diff`: what changed since HEAD, and what is not pushed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangesBody {
    /// At most 1,000.
    pub files: Vec<ChangedFileBody>,
    /// Newest first, at most 100.
    pub unpushed: Vec<CommitBody>,
    /// A bound was reached: the lists are partial.
    pub truncated: bool,
}

impl From<&berth_git::Changes> for ChangesBody {
    fn from(changes: &berth_git::Changes) -> ChangesBody {
        ChangesBody {
            files: changes.files.iter().map(ChangedFileBody::from).collect(),
            unpushed: changes
                .unpushed
                .iter()
                .map(|commit| CommitBody { sha: commit.sha.clone(), subject: commit.subject.clone() })
                .collect(),
            truncated: changes.truncated,
        }
    }
}

/// `POST /api/workspaces/{id}/commit`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    pub message: String,
}

/// The commit made.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommittedBody {
    pub head: String,
    pub branch: Option<String>,
}

/// `GET /api/workspaces/{id}/files?path=`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FilesQuery {
    /// A directory or file of the checkout, relative to it; empty for the checkout itself.
    #[serde(default)]
    pub path: String,
}

/// One entry of a directory.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EntryBody {
    pub name: String,
    /// `dir`, `file`, `symlink` or `other` (a FIFO, socket or device).
    pub kind: String,
    pub size: u64,
}

/// A path of a checkout: a directory's entries (directories first), a file's text, or a
/// symbolic link's target (never followed).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileBody {
    pub path: String,
    /// `dir`, `file` or `symlink`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<EntryBody>>,
    /// A file's size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A file's text: its first MiB when `truncated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The version of a whole file (absent when `truncated`): what a write names as
    /// `expected_sha` to be sure it replaces what was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    /// A link's target, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// More than 5,000 entries, or a file over 1 MiB: only the first are here.
    pub truncated: bool,
}

impl FileBody {
    pub fn new(path: &str, file: berth_engine::WorkspaceFile) -> FileBody {
        let mut body = FileBody {
            path: path.trim_matches('/').to_owned(),
            kind: String::new(),
            entries: None,
            size: None,
            content: None,
            sha: None,
            target: None,
            truncated: false,
        };
        match file {
            berth_engine::WorkspaceFile::Dir { entries, truncated } => {
                body.kind = "dir".into();
                body.entries = Some(
                    entries
                        .into_iter()
                        .map(|entry| EntryBody {
                            name: entry.name,
                            kind: entry.kind.as_str().into(),
                            size: entry.size,
                        })
                        .collect(),
                );
                body.truncated = truncated;
            }
            berth_engine::WorkspaceFile::Text { size, text, truncated, sha } => {
                body.kind = "file".into();
                body.size = Some(size);
                body.content = Some(text);
                body.sha = sha;
                body.truncated = truncated;
            }
            berth_engine::WorkspaceFile::Symlink { target } => {
                body.kind = "symlink".into();
                body.target = Some(target);
            }
        }
        body
    }
}

/// `GET /api/sessions/{id}/ports`: what listens inside the sandbox, for the preview.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PortsBody {
    /// Ports with a listening socket that the preview may reach, in order.
    pub ports: Vec<u16>,
}

/// `POST /api/sessions/{id}/terminals`: the terminal's size (80×24 when not given).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenTerminalRequest {
    #[serde(default)]
    pub cols: Option<u16>,
    #[serde(default)]
    pub rows: Option<u16>,
}

/// A terminal of a live session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TerminalBody {
    pub id: String,
    pub created_at: DateTime<Utc>,
}

impl From<&berth_engine::TerminalInfo> for TerminalBody {
    fn from(terminal: &berth_engine::TerminalInfo) -> TerminalBody {
        TerminalBody { id: terminal.id.to_string(), created_at: terminal.created_at }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TerminalList {
    pub terminals: Vec<TerminalBody>,
}

/// What a client sends on a terminal's WebSocket, one JSON object per text frame.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TerminalCommand {
    /// Keys typed (or text pasted).
    Input { data: String },
    /// The terminal's new size in cells.
    Resize { cols: u16, rows: u16 },
}

/// `PUT /api/workspaces/{id}/files?path=FILE`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileRequest {
    /// The file's whole new text (at most 1 MiB).
    pub content: String,
    /// The version the file must still be (`sha` of the read); `null`: it must not exist
    /// yet; absent: whatever it is.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub expected_sha: Option<Option<String>>,
}

/// A field that may be given as `null`, told apart from one not given.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    value: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(value).map(Some)
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WrittenFileBody {
    pub path: String,
    pub sha: String,
}

/// `POST /api/workspaces/{id}/files/rename`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameFileRequest {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RenamedFileBody {
    pub path: String,
}
