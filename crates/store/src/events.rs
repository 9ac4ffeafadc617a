//! Session history.

use crate::sessions::{UPDATE_LIVE_STATE, end_on};
use crate::{Backend, Store, StoreError, is_unique_violation};
use berth_core::session::{EndReason, SessionState};
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

/// Appends an event with the next `seq` of its workspace. Written only by the session's
/// owner: a replica whose sessions were taken over writes nothing (no row comes back).
const INSERT_EVENT: &str = "INSERT INTO events (workspace_id, seq, session_id, at, kind, data)
     SELECT $1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE workspace_id = $1), $2, $3, $4, $5
      WHERE EXISTS (SELECT 1 FROM sessions WHERE id = $2 AND replica_id = $6 AND epoch = $7)
     RETURNING seq";

/// The agent's session id of a workspace (`$1`), which a later open resumes.
const SET_AGENT_SESSION: &str = "UPDATE workspaces SET agent_session_id = $1 WHERE id = $2";

/// What [`Store::append_event_after`] writes before the event.
#[derive(Debug, Clone, Copy)]
enum Before<'a> {
    /// A live session's move (fenced); nothing is written when it does not apply.
    LiveState { from: SessionState, to: SessionState },
    /// The workspace's agent session id.
    AgentSession(&'a str),
    /// The session's end (fenced); nothing is written when it had ended already.
    End { reason: EndReason, at: DateTime<Utc> },
}

/// [`INSERT_EVENT`] with its values on `$executor` (a pool or a transaction of either
/// database): the new `seq`, none when fenced.
macro_rules! insert_event {
    ($executor:expr, $workspace:expr, $session:expr, $at:expr, $kind:expr, $data:expr, $fence:expr) => {
        sqlx::query_scalar(INSERT_EVENT)
            .bind($workspace.as_str())
            .bind($session.as_str())
            .bind($at)
            .bind($kind)
            .bind($data)
            .bind(&$fence.replica)
            .bind($fence.epoch)
            .fetch_optional($executor)
            .await?
    };
}

/// [`SET_AGENT_SESSION`] and [`INSERT_EVENT`] as one statement, for PostgreSQL (one round
/// trip, no transaction around it): the id is kept only when the event is written.
const SET_AGENT_SESSION_AND_INSERT_EVENT: &str = "WITH agent AS (
       UPDATE workspaces SET agent_session_id = $8 WHERE id = $1
          AND EXISTS (SELECT 1 FROM sessions WHERE id = $2 AND replica_id = $6 AND epoch = $7))
     INSERT INTO events (workspace_id, seq, session_id, at, kind, data)
     SELECT $1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE workspace_id = $1), $2, $3, $4, $5
      WHERE EXISTS (SELECT 1 FROM sessions WHERE id = $2 AND replica_id = $6 AND epoch = $7)
     RETURNING seq";

/// How many times a write on PostgreSQL is tried again when a concurrent writer of the
/// same workspace took the `seq` it chose: the primary key refuses the second, which
/// then sees the first's and takes the next. (No lock is taken for the numbering: a
/// conflict is rare — one owner writes a session's events — and a lock costs every
/// write its round trips.)
const NUMBERING_ATTEMPTS: usize = 100;

/// Runs `write` until it does not lose the race for its `seq`: the error of the last
/// attempt when it keeps losing.
async fn numbered<T, F>(mut write: impl FnMut() -> F) -> Result<T, StoreError>
where
    F: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempts = 1;
    loop {
        match write().await {
            Err(StoreError::Query { source })
                if is_unique_violation(&source) && attempts < NUMBERING_ATTEMPTS =>
            {
                attempts += 1;
            }
            done => return done,
        }
    }
}

impl Store {
    /// Appends an event with the next `seq` of its workspace, in one statement: two
    /// writers can never keep the same number.
    pub async fn append_event(
        &self,
        workspace: &WorkspaceId,
        session: &SessionId,
        at: DateTime<Utc>,
        kind: &str,
        data: &str,
    ) -> Result<Event, StoreError> {
        let fence = self.fence();
        let seq: Option<i64> = match &self.backend {
            // One writer at a time on SQLite: the statement is atomic as it is.
            Backend::Sqlite(pool) => {
                let _turn = self.turn().await;
                insert_event!(pool, workspace, session, at, kind, data, fence)
            }
            // Concurrent writers on PostgreSQL: the one that lost the number tries again.
            Backend::Postgres(pool) => {
                numbered(|| async { Ok(insert_event!(pool, workspace, session, at, kind, data, fence)) })
                    .await?
            }
        };
        let seq = seq.ok_or_else(|| StoreError::Fenced { session: session.to_string() })?;
        Ok(Event { seq, session_id: session.clone(), at, kind: kind.to_owned(), data: data.to_owned() })
    }

    /// Moves a live session from `from` to `to` and appends its event, in one commit: an
    /// open's "made live" and its `session_started` are one durable write, not two. `None`
    /// when the session was not in `from` or is not this replica's: nothing was written.
    pub async fn update_live_session_with_event(
        &self,
        workspace: &WorkspaceId,
        session: &SessionId,
        (from, to): (SessionState, SessionState),
        at: DateTime<Utc>,
        kind: &str,
        data: &str,
    ) -> Result<Option<Event>, StoreError> {
        self.append_event_after(Before::LiveState { from, to }, workspace, session, at, kind, data).await
    }

    /// Records the agent's session id for the workspace (what a later open resumes) and
    /// appends the event that says the agent is ready, in one commit.
    pub async fn append_event_with_agent_session(
        &self,
        workspace: &WorkspaceId,
        session: &SessionId,
        agent_session: &str,
        at: DateTime<Utc>,
        kind: &str,
        data: &str,
    ) -> Result<Event, StoreError> {
        let appended = self
            .append_event_after(Before::AgentSession(agent_session), workspace, session, at, kind, data)
            .await?;
        appended.ok_or_else(|| StoreError::Fenced { session: session.to_string() })
    }

    /// Ends a live session (its workspace moves on to `idle`) and appends the event that
    /// says so, in one commit. `None` when it had ended already: nothing was written;
    /// `Fenced` when it is not this replica's any more.
    pub async fn end_session_with_event(
        &self,
        workspace: &WorkspaceId,
        session: &SessionId,
        reason: EndReason,
        at: DateTime<Utc>,
        (kind, data): (&str, &str),
    ) -> Result<Option<Event>, StoreError> {
        self.append_event_after(Before::End { reason, at }, workspace, session, at, kind, data).await
    }

    /// `before`, then the event, on one transaction of either database. `None` when
    /// `before` is a state change that did not apply: nothing was written.
    async fn append_event_after(
        &self,
        before: Before<'_>,
        workspace: &WorkspaceId,
        session: &SessionId,
        at: DateTime<Utc>,
        kind: &str,
        data: &str,
    ) -> Result<Option<Event>, StoreError> {
        let fence = self.fence();
        let _write = self.write().await;
        // The seq written, `None` when nothing was.
        macro_rules! in_one_commit {
            ($pool:expr) => {
                async {
                    let mut tx = $pool.begin().await?;
                    match before {
                        Before::LiveState { from, to } => {
                            let moved = sqlx::query(UPDATE_LIVE_STATE)
                                .bind(to.as_str())
                                .bind(None::<DateTime<Utc>>)
                                .bind(session.as_str())
                                .bind(from.as_str())
                                .bind(&fence.replica)
                                .bind(fence.epoch)
                                .execute(&mut *tx)
                                .await?;
                            if moved.rows_affected() != 1 {
                                tx.rollback().await?;
                                return Ok(None);
                            }
                        }
                        Before::End { reason, at } => {
                            if !end_on!(&mut tx, session, reason, at, fence) {
                                // Ended already by its owner (nothing to say twice), or not
                                // this replica's any more (taken over: refused).
                                let owned: Option<i32> = sqlx::query_scalar(
                                    "SELECT 1 FROM sessions WHERE id = $1 AND replica_id = $2 AND epoch = $3",
                                )
                                .bind(session.as_str())
                                .bind(&fence.replica)
                                .bind(fence.epoch)
                                .fetch_optional(&mut *tx)
                                .await?;
                                tx.rollback().await?;
                                return match owned {
                                    Some(_) => Ok(None),
                                    None => Err(StoreError::Fenced { session: session.to_string() }),
                                };
                            }
                        }
                        Before::AgentSession(agent_session) => {
                            sqlx::query(SET_AGENT_SESSION)
                                .bind(agent_session)
                                .bind(workspace.as_str())
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    let seq: Option<i64> = insert_event!(&mut *tx, workspace, session, at, kind, data, fence);
                    // Fenced: a replica whose sessions were taken over writes nothing.
                    let Some(seq) = seq else {
                        tx.rollback().await?;
                        return Err(StoreError::Fenced { session: session.to_string() });
                    };
                    tx.commit().await?;
                    Ok::<_, StoreError>(Some(seq))
                }
            };
        }
        let seq = match (&self.backend, before) {
            (Backend::Sqlite(pool), _) => in_one_commit!(pool).await?,
            // The agent's session id and its event: one statement, one round trip.
            (Backend::Postgres(pool), Before::AgentSession(agent_session)) => {
                let write = || async {
                    let seq: Option<i64> = sqlx::query_scalar(SET_AGENT_SESSION_AND_INSERT_EVENT)
                        .bind(workspace.as_str())
                        .bind(session.as_str())
                        .bind(at)
                        .bind(kind)
                        .bind(data)
                        .bind(&fence.replica)
                        .bind(fence.epoch)
                        .bind(agent_session)
                        .fetch_optional(pool)
                        .await?;
                    // Fenced: a replica whose sessions were taken over writes nothing.
                    seq.map(Some).ok_or_else(|| StoreError::Fenced { session: session.to_string() })
                };
                numbered(write).await?
            }
            (Backend::Postgres(pool), _) => numbered(|| in_one_commit!(pool)).await?,
        };
        let Some(seq) = seq else { return Ok(None) };
        Ok(Some(Event { seq, session_id: session.clone(), at, kind: kind.to_owned(), data: data.to_owned() }))
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

    /// Events of one session of the given kinds after `after`, oldest first, at most
    /// `limit`: what a reader that wants a few kinds gets without the rest of a long
    /// history (an agent's messages are most of it).
    pub async fn session_events_of_kinds(
        &self,
        session: &SessionId,
        kinds: &[&str],
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let placeholders: Vec<String> = (0..kinds.len()).map(|n| format!("${}", n + 4)).collect();
        let query = format!(
            "SELECT seq, session_id, at, kind, data FROM events
              WHERE session_id = $1 AND seq > $2 AND kind IN ({}) ORDER BY seq LIMIT $3",
            placeholders.join(", ")
        );
        with_pool!(&self.backend, |pool| {
            let mut select =
                sqlx::query_as::<_, EventRow>(&query).bind(session.as_str()).bind(after).bind(limit);
            for kind in kinds {
                select = select.bind(*kind);
            }
            Ok(select.fetch_all(pool).await?.into_iter().map(Event::from).collect())
        })
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
                "SELECT seq, session_id, at, kind, data FROM events WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            }
            EventScope::Workspace => {
                "SELECT seq, session_id, at, kind, data FROM events WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            }
        };
        with_pool!(&self.backend, |pool| Ok(sqlx::query_as::<_, EventRow>(query)
            .bind(id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(Event::from)
            .collect()))
    }

    pub async fn agent_session_id(&self, workspace: &WorkspaceId) -> Result<Option<String>, StoreError> {
        with_pool!(&self.backend, |pool| {
            Ok(sqlx::query_scalar("SELECT agent_session_id FROM workspaces WHERE id = $1")
                .bind(workspace.as_str())
                .fetch_optional(pool)
                .await?
                .flatten())
        })
    }
}
