//! The JSON shapes of API.md, shared by the server and its clients (the CLI, tests).
//! Requests refuse unknown fields; responses are built from the domain types here and
//! nowhere else.

use berth_core::{Role, User, Workspace};
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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenBody {
    pub token: String,
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
    /// The live session, once sessions exist.
    #[schema(value_type = Option<Object>)]
    pub active_session: Option<serde_json::Value>,
}

impl From<&Workspace> for WorkspaceBody {
    fn from(workspace: &Workspace) -> WorkspaceBody {
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
            active_session: None,
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
