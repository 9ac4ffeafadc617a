//! Several replicas on one database, managed by [`Replicas`] (the shape of coder's
//! `replicasync`). Each registers at start (a new epoch), renews its lease every third of
//! `replica.lease`, and looks every second for replicas whose lease expired: the first to
//! see one takes its live sessions over in one transaction and ends them (`replica_lost`:
//! sandbox off, tool calls closed, questions cancelled, workspace `idle`, slot free). A
//! replica that finds its own lease lost abandons its sessions (sandboxes off, nothing
//! written: they are no longer its to change), then registers again.
//!
//! Changes reach the other replicas through the store's [`ChangeFeed`]. What only a
//! session's owner can do is asked of it through [`Peers`], which the server implements
//! over HTTP (authenticated by a secret derived from the shared `secrets.key`) and hands
//! to the engine: the engine itself speaks no HTTP.

use crate::{EngineError, Services};
use berth_core::SessionId;
use berth_core::session::EndReason;
use berth_store::{Change, ChangeFeed, ReplicaInfo};
use chrono::Utc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The header a replica's request to another carries: the shared replica secret.
pub const REPLICA_SECRET_HEADER: &str = "x-berth-replica";
/// How often a replica looks for replicas whose lease expired (at most).
const TAKE_OVER_SCAN: Duration = Duration::from_secs(1);

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

crate::service!(Replicas);

/// Another live replica, the owner of some session, as this one reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    /// Where it serves (`replica.url`).
    pub url: String,
}

/// A byte stream to a port in a sandbox another replica runs.
pub trait PeerIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> PeerIo for T {}
pub type PeerStream = Box<dyn PeerIo>;

/// What this replica asks of a session's owner. The server implements it (over HTTP);
/// forwarding a person's request or upgrade is the server's own business, on the same
/// connection to the same peer.
#[async_trait::async_trait]
pub trait Peers: Send + Sync {
    /// Asks `peer` to close its session `id`.
    async fn close(&self, peer: &Peer, id: &SessionId, reason: EndReason) -> Result<(), EngineError>;

    /// A connection to `port` in the sandbox of `peer`'s session `id`.
    async fn tunnel(&self, peer: &Peer, id: &SessionId, port: u16) -> Result<PeerStream, EngineError>;
}

/// The peers of an engine that no server runs (offline commands): nobody to reach.
struct Unreachable;

#[async_trait::async_trait]
impl Peers for Unreachable {
    async fn close(&self, peer: &Peer, id: &SessionId, _reason: EndReason) -> Result<(), EngineError> {
        Err(EngineError::CloseFailed {
            session_id: id.clone(),
            message: format!("replica '{}' owns it, and this process does not reach other replicas", peer.id),
        })
    }

    async fn tunnel(&self, peer: &Peer, _id: &SessionId, port: u16) -> Result<PeerStream, EngineError> {
        Err(EngineError::PreviewUnreachable {
            port,
            message: format!(
                "replica '{}' owns the session, and this process does not reach other replicas",
                peer.id
            ),
        })
    }
}

/// What links this replica to the others.
pub(crate) struct ReplicaLink {
    /// What one replica shows another to be believed (derived from `secrets.key`).
    secret: String,
    feed: Arc<dyn ChangeFeed>,
    peers: OnceLock<Arc<dyn Peers>>,
}

impl ReplicaLink {
    pub(crate) fn new(secret: String, feed: Arc<dyn ChangeFeed>) -> ReplicaLink {
        ReplicaLink { secret, feed, peers: OnceLock::new() }
    }
}

impl Replicas {
    /// Joins the installation's replicas: refuses a database only one replica may use
    /// when another replica's lease holds on it, then registers this one with a new epoch.
    pub(crate) async fn join(&self) -> Result<(), EngineError> {
        let replica = &self.config.replica;
        let now = now_ms();
        if !self.replica.feed.spans_replicas()
            && let Some(other) = self
                .store
                .replicas()
                .await?
                .into_iter()
                .find(|other| other.id != replica.id && other.is_alive(now))
        {
            return Err(EngineError::OneReplicaOnly { other: other.id });
        }
        let epoch =
            self.store.register_replica(&replica.id, &replica.url, now + millis(replica.lease)).await?;
        tracing::info!(replica = %replica.id, epoch, url = %replica.url, "replica registered");
        Ok(())
    }

    /// Gives this replica's lease back (at shutdown).
    pub(crate) async fn leave(&self) {
        if let Err(error) = self.store.release_lease().await {
            tracing::warn!(error = %error, "cannot give this replica's lease back");
        }
    }

    /// Hands the engine the way to reach other replicas (the server does, as it starts).
    /// The first call counts.
    pub fn reach_peers_with(&self, peers: Arc<dyn Peers>) {
        let _ = self.replica.peers.set(peers);
    }

    pub(crate) fn peers(&self) -> Arc<dyn Peers> {
        match self.replica.peers.get() {
            Some(peers) => Arc::clone(peers),
            None => Arc::new(Unreachable),
        }
    }

    /// Whether other replicas can own sessions of this installation.
    pub(crate) fn has_peers(&self) -> bool {
        self.replica.feed.spans_replicas()
    }

    /// The live replica other than this one that owns session `id`, if one does.
    pub(crate) async fn peer_owning(&self, id: &SessionId) -> Result<Option<Peer>, EngineError> {
        if !self.has_peers() {
            return Ok(None);
        }
        Ok(match self.store.session_owner(id).await? {
            Some(owner) if owner.id != self.config.replica.id && owner.is_alive(now_ms()) => {
                Some(Peer { id: owner.id, url: owner.url })
            }
            _ => None,
        })
    }

    /// Tells the other replicas of `change`, without waiting.
    pub(crate) fn tell(&self, change: Change) {
        if !self.has_peers() {
            return;
        }
        let feed = Arc::clone(&self.replica.feed);
        self.tasks.spawn(async move {
            if let Err(error) = feed.tell(&change).await {
                tracing::warn!(error = %error, "cannot tell the other replicas of a change");
            }
        });
    }

    /// Hears what the other replicas change, until shutdown: their session changes reach
    /// this replica's dashboards, and its caches forget what changed.
    pub(crate) async fn spawn_listener(&self) -> Result<(), EngineError> {
        let mut changes = self.replica.feed.listen().await?;
        let replicas = self.clone();
        self.tasks.spawn(async move {
            loop {
                let change = tokio::select! {
                    () = replicas.shutdown.cancelled() => return,
                    change = changes.recv() => match change {
                        Some(change) => change,
                        None => return,
                    },
                };
                match change {
                    Change::Session(id) => replicas.sessions().heard_of(&id).await,
                    Change::Workspace(id) => replicas.workspaces().heard_of(id),
                    Change::Access => replicas.accounts().forget_cached_access(),
                }
            }
        });
        Ok(())
    }

    /// Whether `presented` is the replicas' shared secret.
    pub fn is_replica_secret(&self, presented: &[u8]) -> bool {
        let expected = self.replica.secret.as_bytes();
        // Compared without a timing difference.
        presented.len() == expected.len()
            && presented.iter().zip(expected).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0
    }

    /// The shared secret, for calls to other replicas.
    pub fn secret(&self) -> &str {
        &self.replica.secret
    }

    /// Keeps this replica's lease and takes over lost replicas, until shutdown.
    pub(crate) fn spawn_lease_keeper(&self) {
        let replicas = self.clone();
        self.tasks.spawn(async move { replicas.keep_lease().await });
    }

    async fn keep_lease(self) {
        let lease = self.config.replica.lease;
        let renew_every = lease / 3;
        let scan_every = renew_every.min(TAKE_OVER_SCAN);
        let mut renewed_at = tokio::time::Instant::now();
        let mut next_renewal = renewed_at + renew_every;
        // Sessions abandoned while the database did not answer: once it does, they are
        // still this replica's in the database, with no task here to end them.
        let mut abandoned = false;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(scan_every) => {}
            }
            let now = tokio::time::Instant::now();
            if now >= next_renewal {
                next_renewal = now + renew_every;
                match self.store.renew_lease(now_ms() + millis(lease)).await {
                    Ok(true) if abandoned => {
                        abandoned = false;
                        renewed_at = now;
                        if let Err(error) = self.join_again().await {
                            tracing::error!(error = %error, "cannot end the sessions this replica abandoned");
                        }
                    }
                    Ok(true) => renewed_at = now,
                    Ok(false) => {
                        self.lease_lost().await;
                        renewed_at = tokio::time::Instant::now();
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "cannot renew this replica's lease");
                        // Unrenewed for a whole lease: another replica may end our sessions
                        // at any moment; they are not ours to go on with.
                        if now.duration_since(renewed_at) >= lease && self.has_peers() {
                            self.abandon_local_sessions().await;
                            abandoned = true;
                        }
                        continue;
                    }
                }
            }
            if let Err(error) = self.take_over_lost_replicas().await {
                tracing::warn!(error = %error, "cannot look for lost replicas");
            }
        }
    }

    /// Ends the sessions of every replica whose lease expired (one at a time across
    /// replicas: the first to fence a lost replica ends its sessions).
    async fn take_over_lost_replicas(&self) -> Result<(), EngineError> {
        let now = now_ms();
        let me = &self.config.replica.id;
        for lost in self.store.replicas().await? {
            if &lost.id == me || lost.lease_expires_ms == 0 || lost.is_alive(now) {
                continue;
            }
            self.take_over(&lost, now).await?;
        }
        Ok(())
    }

    pub(crate) async fn take_over(&self, lost: &ReplicaInfo, now: i64) -> Result<(), EngineError> {
        let taken = self.store.take_over(lost, now).await?;
        tracing::warn!(
            replica = %lost.id,
            sessions = taken.sessions.len(),
            clones = taken.clones.len(),
            "replica lost: ending its sessions, cloning again what it cloned"
        );
        let sessions = self.sessions();
        for session in taken.sessions {
            sessions.end_unowned(&session, EndReason::ReplicaLost).await;
        }
        self.workspaces().clone_again(taken.clones).await
    }

    /// This replica's lease was taken: its sessions are another's now. Each is
    /// abandoned, then the replica registers again and ends what is still its own.
    async fn lease_lost(&self) {
        tracing::error!(replica = %self.config.replica.id, "this replica lost its lease; abandoning its sessions");
        self.abandon_local_sessions().await;
        if let Err(error) = self.join_again().await {
            tracing::error!(error = %error, "cannot register this replica again");
        }
    }

    async fn join_again(&self) -> Result<(), EngineError> {
        let replica = &self.config.replica;
        self.store.register_replica(&replica.id, &replica.url, now_ms() + millis(replica.lease)).await?;
        let sessions = self.sessions();
        for session in self.store.claim_own_sessions().await? {
            sessions.end_unowned(&session, EndReason::ReplicaLost).await;
        }
        // Its clones were stopped: whatever no one took over is cloned again here.
        let interrupted = self.store.interrupted_clones().await?;
        self.workspaces().clone_again(interrupted).await
    }

    async fn abandon_local_sessions(&self) {
        self.workspaces().stop_every_clone();
        self.sessions().abandon_every_session().await;
    }
}
