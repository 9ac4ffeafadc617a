//! How replicas hear of each other's changes: a [`ChangeFeed`]. One replica alone (SQLite)
//! has nobody to tell: [`InProcess`]. Replicas on one PostgreSQL tell each other with
//! `LISTEN/NOTIFY`: [`Notify`]. [`Store::change_feed`] gives the one the database allows,
//! so nothing outside the store asks which database it is.

use crate::{Store, StoreError};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// The channel replicas tell each other of changes on (PostgreSQL `LISTEN/NOTIFY`).
const CHANGES_CHANNEL: &str = "berth_changes";

/// A change one replica tells the others of: what its readers must not keep serving
/// from a cache, and what their live dashboards should show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Session(berth_core::SessionId),
    Workspace(berth_core::WorkspaceId),
    /// A token revoked or a user disabled: cached credentials must be read again.
    Access,
}

impl Change {
    fn encode(&self, replica: &str) -> String {
        match self {
            Change::Session(id) => format!("{replica} session {id}"),
            Change::Workspace(id) => format!("{replica} workspace {id}"),
            Change::Access => format!("{replica} access -"),
        }
    }

    /// The change and the replica it came from; `None` for anything else.
    fn decode(payload: &str) -> Option<(String, Change)> {
        let mut parts = payload.splitn(3, ' ');
        let (replica, kind, id) = (parts.next()?, parts.next()?, parts.next()?);
        let change = match kind {
            "session" => Change::Session(berth_core::SessionId::parse(id)?),
            "workspace" => Change::Workspace(berth_core::WorkspaceId::parse(id)?),
            "access" => Change::Access,
            _ => return None,
        };
        Some((replica.to_owned(), change))
    }
}

/// Where a replica tells its changes and hears those of the others.
#[async_trait::async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Tells every other replica of `change`.
    async fn tell(&self, change: &Change) -> Result<(), StoreError>;

    /// The changes other replicas tell of, as they come. The stream ends only with the
    /// store (at once when there is nobody else to hear).
    async fn listen(&self) -> Result<UnboundedReceiver<Change>, StoreError>;

    /// Whether other replicas can share this installation's database (and so own some of
    /// its sessions).
    fn spans_replicas(&self) -> bool;
}

/// One replica, alone on its database: nothing to tell, nothing to hear.
pub struct InProcess;

#[async_trait::async_trait]
impl ChangeFeed for InProcess {
    async fn tell(&self, _change: &Change) -> Result<(), StoreError> {
        Ok(())
    }

    async fn listen(&self) -> Result<UnboundedReceiver<Change>, StoreError> {
        Ok(tokio::sync::mpsc::unbounded_channel().1)
    }

    fn spans_replicas(&self) -> bool {
        false
    }
}

/// Replicas on one PostgreSQL, told through `LISTEN/NOTIFY` on one channel.
pub struct Notify {
    store: Store,
    pool: sqlx::PgPool,
}

impl Store {
    /// The change feed this store's database allows.
    pub fn change_feed(&self) -> Arc<dyn ChangeFeed> {
        match &self.backend {
            crate::Backend::Sqlite(_) => Arc::new(InProcess),
            crate::Backend::Postgres(pool) => Arc::new(Notify { store: self.clone(), pool: pool.clone() }),
        }
    }
}

#[async_trait::async_trait]
impl ChangeFeed for Notify {
    async fn tell(&self, change: &Change) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(change.encode(&self.store.fence().replica))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Each change heard also makes this store's cached reads stale. A lost connection
    /// is made again (what was told meanwhile is missed, so every cached read is made
    /// stale then too, and `Access` is heard).
    async fn listen(&self) -> Result<UnboundedReceiver<Change>, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        let (sender, changes) = tokio::sync::mpsc::unbounded_channel();
        let store = self.store.clone();
        tokio::spawn(async move {
            loop {
                // `try_recv` answers `None` when the connection was lost (and is made again
                // on the next call).
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        let Some((from, change)) = Change::decode(notification.payload()) else { continue };
                        if from == store.fence().replica {
                            continue;
                        }
                        drop(store.reads.change());
                        if sender.send(change).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        drop(store.reads.change());
                        if sender.send(Change::Access).is_err() {
                            return;
                        }
                    }
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(error) => {
                        tracing::warn!(error = %error, "listening to other replicas failed; trying again");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(changes)
    }

    fn spans_replicas(&self) -> bool {
        true
    }
}
