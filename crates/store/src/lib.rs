//! berth's persistence. Callers see one type, [`Store`], with one method per question or
//! change the engine needs; which database answers is decided once, at [`Store::open`].
//! Only this crate knows SQL.

/// Runs `$body` with `$pool` bound to the connection pool of the database the store
/// uses. Queries are written once, with `$n` placeholders numbered in the order they
/// first appear (which every database berth supports binds by position).
macro_rules! with_pool {
    ($backend:expr, |$pool:ident| $body:expr) => {
        match $backend {
            crate::Backend::Sqlite($pool) => $body,
            crate::Backend::Postgres($pool) => $body,
        }
    };
}

mod events;
mod feed;
mod postgres;
mod reads;
mod replicas;
mod secrets;
mod sessions;
mod sign_ins;
mod sqlite;
mod states;
mod users;
mod workspaces;

use sqlx::{PgPool, SqlitePool};
use std::time::Duration;

pub use feed::{Change, ChangeFeed, InProcess, Notify};
pub use postgres::create_database;
pub use replicas::{Fence, ReplicaInfo, TakenOver};
pub use secrets::SealedCredential;
pub use sessions::{SessionInsert, UserOpenLock};
pub use sign_ins::PendingOidcLogin;
pub use workspaces::InitialisationOutcome;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database url '{url}': berth speaks sqlite:// and postgres://")]
    UnsupportedUrl { url: String },
    #[error("cannot open the database at '{url}'")]
    Open { url: String, source: sqlx::Error },
    #[error("cannot apply the database migrations")]
    Migrate { source: sqlx::migrate::MigrateError },
    #[error("the name '{name}' is already taken")]
    NameTaken { name: String },
    #[error("a stored value is not valid: {what}")]
    Corrupt { what: String },
    /// The database does not answer (down, unreachable, every connection taken for too
    /// long): the request may work again shortly.
    #[error("the database does not answer")]
    Unavailable { source: sqlx::Error },
    /// A write to a session this replica no longer owns (its lease was lost and another
    /// replica took the session over).
    #[error("session {session} belongs to another replica now")]
    Fenced { session: String },
    #[error("database query failed")]
    Query { source: sqlx::Error },
}

impl From<sqlx::Error> for StoreError {
    fn from(source: sqlx::Error) -> StoreError {
        match source {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable { source },
            source => StoreError::Query { source },
        }
    }
}

/// The handle every part of berth uses to read and write its records. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    reads: std::sync::Arc<reads::ReadCache>,
    /// The replica and epoch this store writes sessions as.
    fence: replicas::SharedFence,
    /// PostgreSQL: the connections that hold users' open locks.
    locks: Option<PgPool>,
    /// SQLite: this process's writers, one at a time. SQLite lets one write at once
    /// anyway, and a connection that tries meanwhile waits in SQLite's busy handler,
    /// which sleeps (1, 2, 5 ms…) rather than being woken; here the next writer is woken
    /// as soon as the one before has finished.
    writer: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

/// Held by a write for its whole duration: its turn among this process's writers
/// (SQLite), and the read cache's [`reads::Change`].
pub(crate) struct Write<'a> {
    // Dropped in this order: the cache's generation moves on before the next writer runs.
    _change: reads::Change<'a>,
    _turn: Option<tokio::sync::MutexGuard<'a, ()>>,
}

/// The databases berth can keep its records in; the methods of [`Store`] run the same
/// queries on either (`with_pool!`).
#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// Opens (creating if needed) the database at `url` and applies the migrations that
    /// ship inside the binary.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let (backend, locks) = if url.starts_with("sqlite:") {
            (Backend::Sqlite(sqlite::open(url).await?), None)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (pool, locks) = postgres::open(url).await?;
            (Backend::Postgres(pool), Some(locks))
        } else {
            return Err(StoreError::UnsupportedUrl { url: postgres::redacted(url) });
        };
        let writer = matches!(backend, Backend::Sqlite(_)).then(Default::default);
        let store = Store { backend, reads: Default::default(), fence: Default::default(), locks, writer };
        store.name_unnamed_tokens().await?;
        Ok(store)
    }

    /// Waits for this write's turn (SQLite), and says when it has finished.
    pub(crate) async fn write(&self) -> Write<'_> {
        let turn = self.turn().await;
        Write { _change: self.reads.change(), _turn: turn }
    }

    /// Waits for a write's turn among this process's writers (SQLite), for a write that
    /// changes nothing the read cache holds.
    pub(crate) async fn turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.writer {
            Some(writer) => Some(writer.lock().await),
            None => None,
        }
    }

    /// Whether several replicas can share this database (PostgreSQL) or only one can
    /// use it (SQLite).
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Whether the database answers, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(&self.backend, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }

    pub async fn close(&self) {
        if let Some(locks) = &self.locks {
            locks.close().await;
        }
        with_pool!(&self.backend, |pool| pool.close().await)
    }
}

/// How long a writer waits for another writer before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
