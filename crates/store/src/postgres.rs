//! Opening a PostgreSQL database: a bounded pool, a statement time-out on every
//! connection, and the migrations that ship in the binary.

use crate::StoreError;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// Connections per server: enough for a replica's concurrency, few enough that many
/// replicas stay under PostgreSQL's default of 100.
const MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a free connection (or for an unreachable database)
/// before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections that only hold users' open locks, apart from the pool the work itself
/// uses, so opens holding their locks can never starve it.
const MAX_LOCK_CONNECTIONS: u32 = 32;

/// The work's pool and the pool of open locks (connected on first use).
pub(crate) async fn open(url: &str) -> Result<(PgPool, PgPool), StoreError> {
    let open_error = |source| StoreError::Open { url: redacted(url), source };
    let options = PgConnectOptions::from_str(url)
        .map_err(open_error)?
        // No statement may hold a connection (or a lock) for long.
        .options([("statement_timeout", "10s"), ("lock_timeout", "10s")]);
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await
        .map_err(open_error)?;
    let locks = PgPoolOptions::new()
        .max_connections(MAX_LOCK_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(options);
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .map_err(|source| StoreError::Migrate { source })?;
    Ok((pool, locks))
}

/// Makes an empty database `name` on the server `url` names, and returns its URL (for
/// benchmarks and drills that need a database of their own).
pub async fn create_database(url: &str, name: &str) -> Result<String, StoreError> {
    use sqlx::Connection;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(StoreError::Corrupt { what: format!("'{name}' is not a database name berth makes") });
    }
    let open_error = |source| StoreError::Open { url: redacted(url), source };
    let mut connection = sqlx::PgConnection::connect(url).await.map_err(open_error)?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut connection).await?;
    connection.close().await?;
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let host_start = base.find("://").map_or(0, |at| at + 3);
    let base = match base[host_start..].find('/') {
        Some(slash) => &base[..host_start + slash],
        None => base,
    };
    Ok(match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    })
}

/// The URL without its password, for messages.
pub(crate) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_info = &url[scheme + 3..at];
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{}{user}:…{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(
            super::redacted("postgres://berth:s3cret@db:5432/berth"),
            "postgres://berth:…@db:5432/berth"
        );
        assert_eq!(super::redacted("postgres:///berth?host=/run"), "postgres:///berth?host=/run");
    }
}
