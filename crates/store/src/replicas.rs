//! Replicas and who owns a session. Each `berth serve` registers as a replica with a
//! lease it keeps renewing and an **epoch** that grows every time it registers again.
//! A session records the replica and epoch that started it, and every write to a
//! session (its state, its end, its events) names this store's [`Fence`]: a write from
//! a replica whose sessions were taken over — it stopped renewing, another replica
//! ended its sessions — changes nothing, even if it comes back.

use crate::{Store, StoreError};
use berth_core::{Session, WorkspaceState};
use std::sync::{Arc, PoisonError, RwLock};

/// Which replica (and which of its epochs) this store writes as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fence {
    pub replica: String,
    pub epoch: i64,
}

/// The fence shared by every clone of a store.
#[derive(Debug, Default, Clone)]
pub(crate) struct SharedFence(Arc<RwLock<Fence>>);

impl SharedFence {
    pub(crate) fn get(&self) -> Fence {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set(&self, fence: Fence) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = fence;
    }
}

/// What a replica took over from a lost one.
#[derive(Debug, Default)]
pub struct TakenOver {
    /// Its live sessions, to end.
    pub sessions: Vec<Session>,
    /// Its workspaces still initialising, to clone again.
    pub clones: Vec<berth_core::Workspace>,
}

/// A replica as the database knows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReplicaInfo {
    pub id: String,
    /// Where other replicas reach it (`replica.url`).
    pub url: String,
    pub epoch: i64,
    /// Unix milliseconds; 0 once it was taken over.
    pub lease_expires_ms: i64,
}

impl ReplicaInfo {
    /// Whether its lease still holds at `now_ms`.
    pub fn is_alive(&self, now_ms: i64) -> bool {
        self.lease_expires_ms > now_ms
    }
}

impl Store {
    /// The replica and epoch this store writes sessions as.
    pub fn fence(&self) -> Fence {
        self.fence.get()
    }

    /// Registers this process as replica `id`, reachable at `url`, with a lease until
    /// `lease_until_ms`: a new epoch, so whatever an earlier run of `id` left behind is
    /// not its to change until claimed ([`Store::claim_own_sessions`]).
    pub async fn register_replica(
        &self,
        id: &str,
        url: &str,
        lease_until_ms: i64,
    ) -> Result<i64, StoreError> {
        let epoch: i64 = with_pool!(&self.backend, |pool| sqlx::query_scalar(
            "INSERT INTO replicas (id, url, epoch, lease_expires_ms) VALUES ($1, $2, 1, $3)
             ON CONFLICT (id) DO UPDATE SET url = $2, epoch = replicas.epoch + 1, lease_expires_ms = $3
             RETURNING epoch"
        )
        .bind(id)
        .bind(url)
        .bind(lease_until_ms)
        .fetch_one(pool)
        .await?);
        self.fence.set(Fence { replica: id.to_owned(), epoch });
        Ok(epoch)
    }

    /// Extends this replica's lease; false when it was lost (another replica took its
    /// sessions over, and its epoch moved on).
    pub async fn renew_lease(&self, until_ms: i64) -> Result<bool, StoreError> {
        let fence = self.fence();
        with_pool!(&self.backend, |pool| {
            let renewed =
                sqlx::query("UPDATE replicas SET lease_expires_ms = $1 WHERE id = $2 AND epoch = $3")
                    .bind(until_ms)
                    .bind(&fence.replica)
                    .bind(fence.epoch)
                    .execute(pool)
                    .await?;
            Ok(renewed.rows_affected() == 1)
        })
    }

    /// A clean stop: the lease ends now (expired, not 0), so no one waits for it and the
    /// next replica to look takes over what it left (clones it stopped).
    pub async fn release_lease(&self) -> Result<(), StoreError> {
        let fence = self.fence();
        with_pool!(&self.backend, |pool| {
            sqlx::query("UPDATE replicas SET lease_expires_ms = 1 WHERE id = $1 AND epoch = $2")
                .bind(&fence.replica)
                .bind(fence.epoch)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Every replica the database has known.
    pub async fn replicas(&self) -> Result<Vec<ReplicaInfo>, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query_as::<_, ReplicaInfo>(
            "SELECT id, url, epoch, lease_expires_ms FROM replicas ORDER BY id"
        )
        .fetch_all(pool)
        .await?))
    }

    /// The replica that owns live session `id`, if it is live.
    pub async fn session_owner(&self, id: &berth_core::SessionId) -> Result<Option<ReplicaInfo>, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query_as::<_, ReplicaInfo>(&format!(
            "SELECT replicas.id, replicas.url, replicas.epoch, replicas.lease_expires_ms
               FROM sessions JOIN replicas ON replicas.id = sessions.replica_id
              WHERE sessions.id = $1 AND {}",
            *crate::states::SESSIONS_LIVE
        ))
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?))
    }

    /// Takes over the live sessions and the clones of replica `lost` if its lease (of
    /// epoch `lost.epoch`) has expired at `now_ms`: in one transaction its epoch moves on
    /// (its renewals fail from now on) and its live sessions and initialising workspaces
    /// become this replica's, returned for ending and cloning again. Empty when it renewed
    /// meanwhile or another replica was first.
    pub async fn take_over(&self, lost: &ReplicaInfo, now_ms: i64) -> Result<TakenOver, StoreError> {
        let fence = self.fence();
        let _write = self.write().await;
        with_pool!(&self.backend, |pool| {
            let mut tx = pool.begin().await?;
            let fenced = sqlx::query(
                "UPDATE replicas SET epoch = epoch + 1, lease_expires_ms = 0
                  WHERE id = $1 AND epoch = $2 AND lease_expires_ms < $3 AND id <> $4",
            )
            .bind(&lost.id)
            .bind(lost.epoch)
            .bind(now_ms)
            .bind(&fence.replica)
            .execute(&mut *tx)
            .await?;
            if fenced.rows_affected() != 1 {
                return Ok(TakenOver::default());
            }
            let sessions = crate::sessions::into_sessions(
                sqlx::query_as(&format!(
                    "UPDATE sessions SET replica_id = $1, epoch = $2
                      WHERE replica_id = $3 AND {} RETURNING {}",
                    *crate::states::LIVE,
                    crate::sessions::SESSION_COLUMNS
                ))
                .bind(&fence.replica)
                .bind(fence.epoch)
                .bind(&lost.id)
                .fetch_all(&mut *tx)
                .await?,
            )?;
            let clones = crate::workspaces::into_workspaces(
                sqlx::query_as(&format!(
                    "UPDATE workspaces SET cloner = $1 WHERE cloner = $2 AND state = '{}' RETURNING {}",
                    crate::states::workspace(WorkspaceState::Initialising),
                    crate::workspaces::WORKSPACE_COLUMNS
                ))
                .bind(&fence.replica)
                .bind(&lost.id)
                .fetch_all(&mut *tx)
                .await?,
            )?;
            tx.commit().await?;
            Ok(TakenOver { sessions, clones })
        })
    }

    /// The live sessions an earlier run of this replica left (an older epoch, or no
    /// owner at all: sessions from before replicas), made this run's, for ending.
    pub async fn claim_own_sessions(&self) -> Result<Vec<Session>, StoreError> {
        let fence = self.fence();
        let _write = self.write().await;
        with_pool!(&self.backend, |pool| crate::sessions::into_sessions(
            sqlx::query_as(&format!(
                "UPDATE sessions SET replica_id = $1, epoch = $2
                  WHERE (replica_id = $1 OR replica_id = '') AND {} RETURNING {}",
                *crate::states::LIVE,
                crate::sessions::SESSION_COLUMNS
            ))
            .bind(&fence.replica)
            .bind(fence.epoch)
            .fetch_all(pool)
            .await?,
        ))
    }

    /// How many sessions are live on every replica together.
    pub async fn live_session_count(&self) -> Result<i64, StoreError> {
        with_pool!(&self.backend, |pool| Ok(sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM sessions WHERE {}",
            *crate::states::LIVE
        ))
        .fetch_one(pool)
        .await?))
    }
}
