//! Workspace records and their initialisation logs.

use crate::{Store, StoreError, is_unique_violation};
use berth_core::{UserId, Workspace, WorkspaceEvent, WorkspaceId, WorkspaceState};
use chrono::{DateTime, Utc};

pub(crate) const WORKSPACE_COLUMNS: &str =
    "id, owner, name, repo, branch, agent, state, error, created_at, last_opened_at";

#[derive(sqlx::FromRow)]
pub(crate) struct WorkspaceRow {
    id: String,
    owner: String,
    name: String,
    repo: String,
    branch: Option<String>,
    agent: Option<String>,
    state: String,
    error: Option<String>,
    created_at: DateTime<Utc>,
    last_opened_at: Option<DateTime<Utc>>,
}

impl TryFrom<WorkspaceRow> for Workspace {
    type Error = StoreError;

    fn try_from(row: WorkspaceRow) -> Result<Workspace, StoreError> {
        let state = WorkspaceState::parse(&row.state).ok_or_else(|| StoreError::Corrupt {
            what: format!("state '{}' of workspace {}", row.state, row.id),
        })?;
        Ok(Workspace {
            id: WorkspaceId::from_trusted(row.id),
            name: row.name,
            owner: UserId::from_trusted(row.owner),
            repo: row.repo,
            branch: row.branch,
            agent: row.agent,
            state,
            error: row.error,
            created_at: row.created_at,
            last_opened_at: row.last_opened_at,
        })
    }
}

pub(crate) fn into_workspaces(rows: Vec<WorkspaceRow>) -> Result<Vec<Workspace>, StoreError> {
    rows.into_iter().map(Workspace::try_from).collect()
}

/// How a clone ended, as recorded on the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialisationOutcome {
    /// Cloned; `branch` is the branch the checkout is on.
    Ready { branch: Option<String> },
    /// Failed; `error` says why in one line.
    Failed { error: String },
}

impl Store {
    pub async fn insert_workspace(&self, workspace: &Workspace) -> Result<(), StoreError> {
        let _write = self.write().await;
        with_pool!(&self.backend, |pool| {
            sqlx::query(
                    "INSERT INTO workspaces (id, owner, name, repo, branch, agent, state, error, created_at, last_opened_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(workspace.id.as_str())
                .bind(workspace.owner.as_str())
                .bind(&workspace.name)
                .bind(&workspace.repo)
                .bind(&workspace.branch)
                .bind(&workspace.agent)
                .bind(workspace.state.as_str())
                .bind(&workspace.error)
                .bind(workspace.created_at)
                .bind(workspace.last_opened_at)
                .execute(pool)
                .await
                .map_err(|error| {
                    if is_unique_violation(&error) {
                        StoreError::NameTaken { name: workspace.name.clone() }
                    } else {
                        error.into()
                    }
                })?;
            Ok(())
        })
    }

    pub async fn workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        with_pool!(&self.backend, |pool| sqlx::query_as::<_, WorkspaceRow>(&format!(
            "SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?
        .map(Workspace::try_from)
        .transpose())
    }

    /// The workspaces of `owner`, oldest first.
    pub async fn workspaces_of(&self, owner: &UserId) -> Result<Vec<Workspace>, StoreError> {
        if let Some(cached) = self.reads.workspaces(owner) {
            return Ok(cached.as_ref().clone());
        }
        let generation = self.reads.generation();
        let workspaces = with_pool!(&self.backend, |pool| into_workspaces(
            sqlx::query_as::<_, WorkspaceRow>(&format!(
                "SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE owner = $1 ORDER BY created_at, id"
            ))
            .bind(owner.as_str())
            .fetch_all(pool)
            .await?,
        )?);
        self.reads.keep_workspaces(owner, generation, workspaces.clone());
        Ok(workspaces)
    }

    pub async fn workspace_names_of(&self, owner: &UserId) -> Result<Vec<String>, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query_scalar(
            "SELECT name FROM workspaces WHERE owner = $1"
        )
        .bind(owner.as_str())
        .fetch_all(pool)
        .await?))
    }

    pub async fn workspaces_in_state(&self, state: WorkspaceState) -> Result<Vec<Workspace>, StoreError> {
        with_pool!(&self.backend, |pool| into_workspaces(
            sqlx::query_as::<_, WorkspaceRow>(&format!(
                "SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE state = $1 ORDER BY created_at, id"
            ))
            .bind(state.as_str())
            .fetch_all(pool)
            .await?,
        ))
    }

    /// Moves the workspace from `from` to `to` only if it is still in `from`; returns
    /// whether it moved. Two racing writers cannot both win.
    pub async fn set_workspace_state(
        &self,
        id: &WorkspaceId,
        from: WorkspaceState,
        to: WorkspaceState,
    ) -> Result<bool, StoreError> {
        let _write = self.write().await;
        with_pool!(&self.backend, |pool| {
            let result = sqlx::query("UPDATE workspaces SET state = $1 WHERE id = $2 AND state = $3")
                .bind(to.as_str())
                .bind(id.as_str())
                .bind(from.as_str())
                .execute(pool)
                .await?;
            Ok(result.rows_affected() == 1)
        })
    }

    /// Records how the clone of an `initialising` workspace ended; returns false when the
    /// workspace is gone or no longer initialising (deleted while cloning).
    pub async fn finish_initialisation(
        &self,
        id: &WorkspaceId,
        outcome: &InitialisationOutcome,
    ) -> Result<bool, StoreError> {
        let _write = self.write().await;
        let (event, branch, error) = match outcome {
            InitialisationOutcome::Ready { branch } => {
                (WorkspaceEvent::CloneSucceeded, branch.as_deref(), None)
            }
            InitialisationOutcome::Failed { error } => {
                (WorkspaceEvent::CloneFailed, None, Some(error.as_str()))
            }
        };
        let to = crate::states::workspace_after(WorkspaceState::Initialising, event)
            .unwrap_or(WorkspaceState::Initialising.as_str());
        let fence = self.fence();
        with_pool!(&self.backend, |pool| {
            let result = sqlx::query(
                "UPDATE workspaces SET state = $1, branch = COALESCE($2, branch), error = $3
                     WHERE id = $4 AND state = $6 AND (cloner = $5 OR cloner = '')",
            )
            .bind(to)
            .bind(branch)
            .bind(error)
            .bind(id.as_str())
            .bind(&fence.replica)
            .bind(crate::states::workspace(WorkspaceState::Initialising))
            .execute(pool)
            .await?;
            Ok(result.rows_affected() == 1)
        })
    }

    /// Makes this replica the one cloning `id`: from now on only it finishes the clone.
    pub async fn claim_clone(&self, id: &WorkspaceId) -> Result<(), StoreError> {
        let fence = self.fence();
        with_pool!(&self.backend, |pool| {
            sqlx::query("UPDATE workspaces SET cloner = $1 WHERE id = $2 AND state = $3")
                .bind(&fence.replica)
                .bind(id.as_str())
                .bind(crate::states::workspace(WorkspaceState::Initialising))
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Workspaces left `initialising` by an earlier run of this replica (or by no replica
    /// in particular): their clones start again.
    pub async fn interrupted_clones(&self) -> Result<Vec<Workspace>, StoreError> {
        let fence = self.fence();
        with_pool!(&self.backend, |pool| into_workspaces(
            sqlx::query_as::<_, WorkspaceRow>(&format!(
                "SELECT {WORKSPACE_COLUMNS} FROM workspaces
                  WHERE state = $2 AND (cloner = $1 OR cloner = '') ORDER BY created_at, id"
            ))
            .bind(&fence.replica)
            .bind(crate::states::workspace(WorkspaceState::Initialising))
            .fetch_all(pool)
            .await?,
        ))
    }

    /// Puts a failed workspace back to `initialising` with an empty log, for a retry;
    /// returns false when it was not in `error`.
    pub async fn restart_initialisation(&self, id: &WorkspaceId) -> Result<bool, StoreError> {
        let _write = self.write().await;
        with_pool!(&self.backend, |pool| {
            let from = WorkspaceState::Error;
            let to =
                crate::states::workspace_after(from, WorkspaceEvent::RetryRequested).unwrap_or(from.as_str());
            let result = sqlx::query(
                "UPDATE workspaces SET state = $3, error = NULL, init_log = ''
                     WHERE id = $1 AND state = $2",
            )
            .bind(id.as_str())
            .bind(from.as_str())
            .bind(to)
            .execute(pool)
            .await?;
            Ok(result.rows_affected() == 1)
        })
    }

    pub async fn append_init_log(&self, id: &WorkspaceId, text: &str) -> Result<(), StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query("UPDATE workspaces SET init_log = init_log || $1 WHERE id = $2")
                .bind(text)
                .bind(id.as_str())
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    pub async fn init_log(&self, id: &WorkspaceId) -> Result<Option<String>, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query_scalar(
            "SELECT init_log FROM workspaces WHERE id = $1"
        )
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?))
    }

    /// Saves the settings a person may change after creation: name, agent command and
    /// the branch the checkout is on. Returns false when the workspace is gone.
    pub async fn update_workspace_settings(
        &self,
        id: &WorkspaceId,
        name: &str,
        branch: Option<&str>,
        agent: Option<&str>,
    ) -> Result<bool, StoreError> {
        let _write = self.write().await;
        with_pool!(&self.backend, |pool| {
            let result =
                sqlx::query("UPDATE workspaces SET name = $1, branch = $2, agent = $3 WHERE id = $4")
                    .bind(name)
                    .bind(branch)
                    .bind(agent)
                    .bind(id.as_str())
                    .execute(pool)
                    .await
                    .map_err(|error| {
                        if is_unique_violation(&error) {
                            StoreError::NameTaken { name: name.to_owned() }
                        } else {
                            error.into()
                        }
                    })?;
            Ok(result.rows_affected() == 1)
        })
    }

    /// Removes the record; returns whether there was one.
    pub async fn delete_workspace(&self, id: &WorkspaceId) -> Result<bool, StoreError> {
        let _write = self.write().await;
        with_pool!(&self.backend, |pool| {
            let result =
                sqlx::query("DELETE FROM workspaces WHERE id = $1").bind(id.as_str()).execute(pool).await?;
            Ok(result.rows_affected() == 1)
        })
    }
}
