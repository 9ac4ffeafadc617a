//! berth's persistence. Callers see one type, [`Store`], with one method per question or
//! change the engine needs; which database answers is decided once, at [`Store::open`].
//! Only this crate knows SQL.

mod events;
mod reads;
mod secrets;
mod sessions;
mod sqlite;
mod users;
mod workspaces;

use sqlx::SqlitePool;
use std::time::Duration;

pub use secrets::SealedCredential;
pub use workspaces::InitialisationOutcome;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database url '{url}': only sqlite:// is built in")]
    UnsupportedUrl { url: String },
    #[error("cannot open the database at '{url}'")]
    Open { url: String, source: sqlx::Error },
    #[error("cannot apply the database migrations")]
    Migrate { source: sqlx::migrate::MigrateError },
    #[error("the name '{name}' is already taken")]
    NameTaken { name: String },
    #[error("a stored value is not valid: {what}")]
    Corrupt { what: String },
    #[error("database query failed")]
    Query {
        #[from]
        source: sqlx::Error,
    },
}

/// The handle every part of berth uses to read and write its records. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    reads: std::sync::Arc<reads::ReadCache>,
}

/// The databases berth can keep its records in. PostgreSQL joins as a second variant; the
/// methods of [`Store`] dispatch on it so no caller changes.
#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePool),
}

impl Store {
    /// Opens (creating if needed) the database at `url` and applies the migrations that
    /// ship inside the binary.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            let pool = sqlite::open(url).await?;
            let store = Store { backend: Backend::Sqlite(pool), reads: Default::default() };
            store.name_unnamed_tokens().await?;
            return Ok(store);
        }
        Err(StoreError::UnsupportedUrl { url: url.to_owned() })
    }

    /// Whether the database answers, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(pool) => pool.close().await,
        }
    }
}

/// How long a writer waits for another writer before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
