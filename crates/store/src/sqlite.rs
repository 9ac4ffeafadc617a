//! Opening the embedded SQLite database: WAL, foreign keys, migrations.

use crate::{BUSY_TIMEOUT, StoreError};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;

pub(crate) async fn open(url: &str) -> Result<SqlitePool, StoreError> {
    let open_error = |source| StoreError::Open { url: url.to_owned(), source };
    let options = SqliteConnectOptions::from_str(url)
        .map_err(open_error)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL loses no committed transaction on a process crash (only on a
        // power cut), which is the promise berth makes.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await.map_err(open_error)?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&pool)
        .await
        .map_err(|source| StoreError::Migrate { source })?;
    Ok(pool)
}
