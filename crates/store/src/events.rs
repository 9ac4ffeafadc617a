//! Session history.

use crate::{Backend, Store, StoreError};
use berth_core::{Event, SessionId, WorkspaceId};
use chrono::{DateTime, Utc};

/// Whose events a history read returns.
enum EventScope {
    Session,
    Workspace,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    session_id: String,
    at: DateTime<Utc>,
    kind: String,
    data: String,
}

impl From<EventRow> for Event {
    fn from(row: EventRow) -> Event {
        Event {
            seq: row.seq,
            session_id: SessionId::from_trusted(row.session_id),
            at: row.at,
            kind: row.kind,
            data: row.data,
        }
    }
}

impl Store {
    /// Appends an event with the next `seq` of its workspace, in one statement so two
    /// writers can never take the same number.
    pub async fn append_event(
        &self,
        workspace: &WorkspaceId,
        session: &SessionId,
        at: DateTime<Utc>,
        kind: &str,
        data: &str,
    ) -> Result<Event, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                let seq: i64 = sqlx::query_scalar(
                    "INSERT INTO events (workspace_id, seq, session_id, at, kind, data)
                     SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5 FROM events WHERE workspace_id = ?1
                     RETURNING seq",
                )
                .bind(workspace.as_str())
                .bind(session.as_str())
                .bind(at)
                .bind(kind)
                .bind(data)
                .fetch_one(pool)
                .await?;
                Ok(Event {
                    seq,
                    session_id: session.clone(),
                    at,
                    kind: kind.to_owned(),
                    data: data.to_owned(),
                })
            }
        }
    }

    /// Events of one session after `after`, oldest first, at most `limit`.
    pub async fn session_events(
        &self,
        session: &SessionId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        self.events_where(EventScope::Session, session.as_str(), after, limit).await
    }

    /// Events of a workspace (every session) after `after`, oldest first, at most `limit`.
    pub async fn workspace_events(
        &self,
        workspace: &WorkspaceId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        self.events_where(EventScope::Workspace, workspace.as_str(), after, limit).await
    }

    async fn events_where(
        &self,
        scope: EventScope,
        id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let query = match scope {
            EventScope::Session => {
                "SELECT seq, session_id, at, kind, data FROM events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?"
            }
            EventScope::Workspace => {
                "SELECT seq, session_id, at, kind, data FROM events WHERE workspace_id = ? AND seq > ? ORDER BY seq LIMIT ?"
            }
        };
        match &self.backend {
            Backend::Sqlite(pool) => Ok(sqlx::query_as::<_, EventRow>(query)
                .bind(id)
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(Event::from)
                .collect()),
        }
    }

    pub async fn set_agent_session_id(
        &self,
        workspace: &WorkspaceId,
        agent_session: &str,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlx::query("UPDATE workspaces SET agent_session_id = ? WHERE id = ?")
                    .bind(agent_session)
                    .bind(workspace.as_str())
                    .execute(pool)
                    .await?;
                Ok(())
            }
        }
    }

    pub async fn agent_session_id(&self, workspace: &WorkspaceId) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                Ok(sqlx::query_scalar("SELECT agent_session_id FROM workspaces WHERE id = ?")
                    .bind(workspace.as_str())
                    .fetch_optional(pool)
                    .await?
                    .flatten())
            }
        }
    }
}
