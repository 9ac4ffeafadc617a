//! Session records. The engine decides; this file only remembers.

use crate::states::{LIVE, SESSIONS_LIVE};
use crate::{Store, StoreError};
use berth_core::session::{EndReason, Session, SessionState};
use berth_core::{SessionId, UserId, WorkspaceEvent, WorkspaceId, WorkspaceState};
use chrono::{DateTime, Utc};

pub(crate) const SESSION_COLUMNS: &str =
    "id, workspace_id, user_id, state, started_at, ended_at, end_reason, grace_expires_at, agent_running";

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: String,
    workspace_id: String,
    user_id: String,
    state: String,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    end_reason: Option<String>,
    grace_expires_at: Option<DateTime<Utc>>,
    agent_running: bool,
}

impl TryFrom<SessionRow> for Session {
    type Error = StoreError;

    fn try_from(row: SessionRow) -> Result<Session, StoreError> {
        let corrupt = |what: &str, value: &str| StoreError::Corrupt {
            what: format!("{what} '{value}' of session {}", row.id),
        };
        let state = SessionState::parse(&row.state).ok_or_else(|| corrupt("state", &row.state))?;
        let end_reason = match &row.end_reason {
            Some(reason) => Some(EndReason::parse(reason).ok_or_else(|| corrupt("end reason", reason))?),
            None => None,
        };
        Ok(Session {
            id: SessionId::from_trusted(row.id),
            workspace_id: WorkspaceId::from_trusted(row.workspace_id),
            user_id: UserId::from_trusted(row.user_id),
            state,
            started_at: row.started_at,
            ended_at: row.ended_at,
            end_reason,
            grace_expires_at: row.grace_expires_at,
            agent_running: row.agent_running,
        })
    }
}

/// What [`Store::insert_session`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionInsert {
    Inserted,
    /// The workspace was not in the expected state any more.
    WorkspaceNotReady,
    /// Every sandbox slot of the installation is taken.
    NoSandboxSlot,
}

/// Ends live session `$id` on transaction `$tx` (fenced to `$fence`'s owner) and moves
/// its workspace from `active` to `idle`; evaluates to whether it ended (false: it had
/// already, and nothing was written).
macro_rules! end_on {
    ($tx:expr, $id:expr, $reason:expr, $at:expr, $fence:expr) => {{
        let ended = sqlx::query(&format!(
            "UPDATE sessions SET state = '{}', ended_at = $1, end_reason = $2, grace_expires_at = NULL,
                    agent_running = FALSE
             WHERE id = $3 AND {} AND replica_id = $4 AND epoch = $5",
            crate::states::ended(),
            *crate::states::LIVE
        ))
        .bind($at)
        .bind($reason.as_str())
        .bind($id.as_str())
        .bind(&$fence.replica)
        .bind($fence.epoch)
        .execute(&mut **$tx)
        .await?;
        let ended = ended.rows_affected() == 1;
        if ended {
            let (active, idle) = crate::states::workspace_move_on_end();
            sqlx::query(
                "UPDATE workspaces SET state = $3
                     WHERE state = $2 AND id = (SELECT workspace_id FROM sessions WHERE id = $1)",
            )
            .bind($id.as_str())
            .bind(active)
            .bind(idle)
            .execute(&mut **$tx)
            .await?;
        }
        ended
    }};
}
pub(crate) use end_on;

/// A live session's move from one state (`$4`) to another (`$1`) with its grace window
/// (`$2`), fenced to its owner (`$5`, `$6`).
pub(crate) const UPDATE_LIVE_STATE: &str = "UPDATE sessions SET state = $1, grace_expires_at = $2
  WHERE id = $3 AND state = $4 AND replica_id = $5 AND epoch = $6";

/// The advisory lock key of the installation's sandbox slots (PostgreSQL).
const SLOTS_LOCK: i64 = 0x6265_7274_6800_0001;

/// Holds a user's opens to one at a time across replicas until dropped.
pub struct UserOpenLock {
    _held: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
}

pub(crate) fn into_sessions(rows: Vec<SessionRow>) -> Result<Vec<Session>, StoreError> {
    rows.into_iter().map(Session::try_from).collect()
}

impl Store {
    /// Records a new session, owned by this store's replica and epoch, and moves its
    /// workspace to `active`, in one transaction — if the workspace is still `from` and
    /// fewer than `running_sandboxes` sessions are live on every replica together (the
    /// count and the insert are one step: SQLite has one writer, PostgreSQL takes the
    /// installation's slot lock). Records nothing otherwise.
    pub async fn insert_session(
        &self,
        session: &Session,
        from: WorkspaceState,
        running_sandboxes: u32,
    ) -> Result<SessionInsert, StoreError> {
        let fence = self.fence();
        let _write = self.write().await;
        let postgres = self.is_postgres();
        with_pool!(&self.backend, |pool| {
            let mut tx = pool.begin().await?;
            if postgres {
                // This commit does not wait for the disk: nobody hears of the session
                // until it is made live, a commit that does wait — and flushes this one
                // with it (PostgreSQL writes its log in order). A database lost before
                // then loses a session nobody was told of, whose sandbox the failed
                // made-live powers off. Seen by every replica at once all the same.
                sqlx::query(
                    "SELECT pg_advisory_xact_lock($1), set_config('synchronous_commit', 'off', true)",
                )
                .bind(SLOTS_LOCK)
                .execute(&mut *tx)
                .await?;
            }
            let Some(to) = crate::states::workspace_after(from, WorkspaceEvent::SessionOpened) else {
                return Ok(SessionInsert::WorkspaceNotReady);
            };
            let moved = sqlx::query(
                "UPDATE workspaces SET state = $4, last_opened_at = $1 WHERE id = $2 AND state = $3",
            )
            .bind(session.started_at)
            .bind(session.workspace_id.as_str())
            .bind(from.as_str())
            .bind(to)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() != 1 {
                return Ok(SessionInsert::WorkspaceNotReady);
            }
            let live: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM sessions WHERE {}", *LIVE))
                .fetch_one(&mut *tx)
                .await?;
            if live >= i64::from(running_sandboxes) {
                return Ok(SessionInsert::NoSandboxSlot);
            }
            sqlx::query(&format!(
                "INSERT INTO sessions ({SESSION_COLUMNS}, replica_id, epoch)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ))
            .bind(session.id.as_str())
            .bind(session.workspace_id.as_str())
            .bind(session.user_id.as_str())
            .bind(session.state.as_str())
            .bind(session.started_at)
            .bind(session.ended_at)
            .bind(session.end_reason.map(EndReason::as_str))
            .bind(session.grace_expires_at)
            .bind(session.agent_running)
            .bind(&fence.replica)
            .bind(fence.epoch)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(SessionInsert::Inserted)
        })
    }

    /// Serialises the opens of `user` across every replica until the returned lock is
    /// dropped: on PostgreSQL a transaction holding the user's advisory lock, on a
    /// connection of the locks' own pool (opens that wait hold none of the work's); on
    /// SQLite (one replica) nothing — the engine's own lock does it.
    pub async fn lock_user_opens(&self, user: &UserId) -> Result<UserOpenLock, StoreError> {
        match &self.locks {
            None => Ok(UserOpenLock { _held: None }),
            Some(locks) => {
                let mut tx = locks.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))")
                    .bind(user.as_str())
                    .execute(&mut *tx)
                    .await?;
                Ok(UserOpenLock { _held: Some(tx) })
            }
        }
    }

    /// The live sessions of `user` as the database has them now (no cache): what an
    /// open decides on.
    pub async fn live_sessions_of_now(&self, user: &UserId) -> Result<Vec<Session>, StoreError> {
        with_pool!(&self.backend, |pool| {
            into_sessions(
            sqlx::query_as::<_, SessionRow>(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND {} ORDER BY started_at, id",
                *LIVE
            ))
            .bind(user.as_str())
            .fetch_all(pool)
            .await?,
        )
        })
    }

    pub async fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        with_pool!(&self.backend, |pool| sqlx::query_as::<_, SessionRow>(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?
        .map(Session::try_from)
        .transpose())
    }

    /// Live (not ended) sessions of one user, oldest first.
    pub async fn live_sessions_of(&self, user: &UserId) -> Result<Vec<Session>, StoreError> {
        if let Some(cached) = self.reads.live_sessions(user) {
            return Ok(cached.as_ref().clone());
        }
        let generation = self.reads.generation();
        let sessions = self.live_sessions_of_now(user).await?;
        self.reads.keep_live_sessions(user, generation, sessions.clone());
        Ok(sessions)
    }

    /// Every live session of the installation, oldest first.
    pub async fn live_sessions(&self) -> Result<Vec<Session>, StoreError> {
        with_pool!(&self.backend, |pool| into_sessions(
            sqlx::query_as::<_, SessionRow>(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE {} ORDER BY started_at, id",
                *LIVE
            ))
            .fetch_all(pool)
            .await?,
        ))
    }

    /// For every live session: its id, its user's name and its workspace's name (what an
    /// administrator reads in a list of everyone's sessions).
    pub async fn live_session_names(&self) -> Result<Vec<(SessionId, String, String)>, StoreError> {
        with_pool!(&self.backend, |pool| {
            let rows: Vec<(String, String, String)> = sqlx::query_as(&format!(
                "SELECT sessions.id, users.name, workspaces.name FROM sessions
                     JOIN users ON users.id = sessions.user_id
                     JOIN workspaces ON workspaces.id = sessions.workspace_id
                     WHERE {}",
                *SESSIONS_LIVE
            ))
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(id, user, workspace)| (SessionId::from_trusted(id), user, workspace))
                .collect())
        })
    }

    /// The live session of a workspace, if it has one.
    pub async fn live_session_of_workspace(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<Option<Session>, StoreError> {
        with_pool!(&self.backend, |pool| sqlx::query_as::<_, SessionRow>(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE workspace_id = $1 AND {} LIMIT 1",
            *LIVE
        ))
        .bind(workspace.as_str())
        .fetch_optional(pool)
        .await?
        .map(Session::try_from)
        .transpose())
    }

    /// Moves a live session from state `from` to `to` (a transition `core` allowed) with
    /// its grace window, compared and set in one statement; false when it is not in `from`
    /// any more (it ended, or someone else moved it).
    pub async fn update_live_session(
        &self,
        id: &SessionId,
        from: SessionState,
        to: SessionState,
        grace_expires_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let fence = self.fence();
        let _write = self.write().await;
        with_pool!(&self.backend, |pool| {
            let result = sqlx::query(UPDATE_LIVE_STATE)
                .bind(to.as_str())
                .bind(grace_expires_at)
                .bind(id.as_str())
                .bind(from.as_str())
                .bind(&fence.replica)
                .bind(fence.epoch)
                .execute(pool)
                .await?;
            Ok(result.rows_affected() == 1)
        })
    }

    pub async fn set_agent_running(&self, id: &SessionId, running: bool) -> Result<bool, StoreError> {
        let fence = self.fence();
        let _write = self.write().await;
        with_pool!(&self.backend, |pool| {
            let result = sqlx::query(&format!(
                "UPDATE sessions SET agent_running = $1
                  WHERE id = $2 AND {} AND replica_id = $3 AND epoch = $4",
                *LIVE
            ))
            .bind(running)
            .bind(id.as_str())
            .bind(&fence.replica)
            .bind(fence.epoch)
            .execute(pool)
            .await?;
            Ok(result.rows_affected() == 1)
        })
    }

    /// Workspaces left `active` with no live session (after a crash) become `idle`.
    pub async fn idle_workspaces_without_sessions(&self) -> Result<u64, StoreError> {
        let _write = self.write().await;
        with_pool!(&self.backend, |pool| {
            let (active, idle) = crate::states::workspace_move_on_end();
            let result = sqlx::query(&format!(
                "UPDATE workspaces SET state = $2 WHERE state = $1 AND NOT EXISTS
                   (SELECT 1 FROM sessions WHERE sessions.workspace_id = workspaces.id AND {})",
                *SESSIONS_LIVE
            ))
            .bind(active)
            .bind(idle)
            .execute(pool)
            .await?;
            Ok(result.rows_affected())
        })
    }

    /// How many sessions are in each state, for metrics.
    pub async fn count_sessions_by_state(&self) -> Result<Vec<(SessionState, i64)>, StoreError> {
        with_pool!(&self.backend, |pool| {
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT state, COUNT(*) FROM sessions GROUP BY state").fetch_all(pool).await?;
            Ok(rows
                .into_iter()
                .filter_map(|(state, count)| Some((SessionState::parse(&state)?, count)))
                .collect())
        })
    }
}
