//! Several replicas on one database. Each registers at start (a new epoch), renews its
//! lease every third of `replica.lease`, and looks every second for replicas whose lease
//! expired: the first to see one takes its live sessions over in one transaction and
//! ends them (`replica_lost`: sandbox off, tool calls closed, questions cancelled,
//! workspace `idle`, slot free). A replica that finds its own lease lost abandons its
//! sessions (sandboxes off, nothing written: they are no longer its to change), then
//! registers again. A session owned by another live replica is closed by asking that
//! replica, authenticated by a secret derived from the shared `secrets.key`.

use crate::session::runtime::Command;
use crate::{Engine, EngineError};
use berth_core::session::EndReason;
use berth_core::{Session, SessionId, WorkspaceId};
use berth_store::{Change, ReplicaInfo};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header a replica's request to another carries: the shared replica secret.
pub const REPLICA_SECRET_HEADER: &str = "x-berth-replica";
/// How often a replica looks for replicas whose lease expired (at most).
const TAKE_OVER_SCAN: Duration = Duration::from_secs(1);
/// How long a call to another replica may take.
const REPLICA_CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Where a live session is owned, seen from this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionHome {
    /// Here, or nowhere (not live): handle it here.
    Here,
    /// Another live replica, reached at this URL.
    Elsewhere { url: String },
}

impl Engine {
    /// Joins the installation's replicas: refuses SQLite when another replica's lease
    /// holds on it, then registers this one with a new epoch.
    pub(crate) async fn join_replicas(&self) -> Result<(), EngineError> {
        let replica = &self.config.replica;
        let now = now_ms();
        if !self.store.is_postgres()
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

    /// Tells the other replicas of `change`, without waiting (nothing on SQLite).
    pub(crate) fn tell_replicas(&self, change: Change) {
        if !self.store.is_postgres() {
            return;
        }
        let store = self.store.clone();
        self.tasks.spawn(async move {
            if let Err(error) = store.tell_replicas(&change).await {
                tracing::warn!(error = %error, "cannot tell the other replicas of a change");
            }
        });
    }

    /// Hears what the other replicas change, until shutdown: their session changes reach
    /// this replica's dashboards, and its caches forget what changed.
    pub(crate) async fn spawn_replica_listener(self: &Arc<Self>) -> Result<(), EngineError> {
        let Some(mut changes) = self.store.listen_to_replicas().await? else { return Ok(()) };
        let engine = Arc::clone(self);
        self.tasks.spawn(async move {
            loop {
                let change = tokio::select! {
                    () = engine.shutdown.cancelled() => return,
                    change = changes.recv() => match change {
                        Some(change) => change,
                        None => return,
                    },
                };
                match change {
                    Change::Session(id) => {
                        if let Ok(session) = engine.load_session(&id).await {
                            let _ = engine.session_changes.send(session.clone());
                            let _ = engine.workspace_changes.send(session.workspace_id);
                        }
                    }
                    Change::Workspace(id) => {
                        let _ = engine.workspace_changes.send(id);
                    }
                    Change::Access => engine.tokens.forget_all(),
                }
            }
        });
        Ok(())
    }

    /// Whether `presented` is the replicas' shared secret.
    pub fn is_replica_secret(&self, presented: &[u8]) -> bool {
        let expected = self.replica_secret.as_bytes();
        // Compared without a timing difference.
        presented.len() == expected.len()
            && presented.iter().zip(expected).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0
    }

    /// The shared secret, for calls to other replicas.
    pub fn replica_secret(&self) -> &str {
        &self.replica_secret
    }

    /// Keeps this replica's lease and takes over lost replicas, until shutdown.
    pub(crate) fn spawn_lease_keeper(self: &Arc<Self>) {
        let engine = Arc::clone(self);
        self.tasks.spawn(async move { engine.keep_lease().await });
    }

    async fn keep_lease(self: Arc<Self>) {
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
                        if now.duration_since(renewed_at) >= lease && self.store.is_postgres() {
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
    async fn take_over_lost_replicas(self: &Arc<Self>) -> Result<(), EngineError> {
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

    pub(crate) async fn take_over(self: &Arc<Self>, lost: &ReplicaInfo, now: i64) -> Result<(), EngineError> {
        let taken = self.store.take_over(lost, now).await?;
        tracing::warn!(
            replica = %lost.id,
            sessions = taken.sessions.len(),
            clones = taken.clones.len(),
            "replica lost: ending its sessions, cloning again what it cloned"
        );
        for session in taken.sessions {
            self.end_unowned(&session, EndReason::ReplicaLost).await;
        }
        self.clone_again(taken.clones).await
    }

    /// Ends a live session this replica holds no task for (taken over, or left by an
    /// earlier run): its sandbox off (a Docker container of a shared engine, by its
    /// name), what was open closed, the end stored and told.
    pub(crate) async fn end_unowned(&self, session: &Session, reason: EndReason) {
        match self.finish(session, reason, |_| {}).await {
            Ok(ended) => self.publish_session(&ended),
            Err(error) => {
                tracing::error!(session_id = %session.id, error = %error, "cannot end a session without its owner");
            }
        }
    }

    /// This replica's lease was taken: its sessions are another's now. Each is
    /// abandoned, then the replica registers again and ends what is still its own.
    async fn lease_lost(self: &Arc<Self>) {
        tracing::error!(replica = %self.config.replica.id, "this replica lost its lease; abandoning its sessions");
        self.abandon_local_sessions().await;
        if let Err(error) = self.join_again().await {
            tracing::error!(error = %error, "cannot register this replica again");
        }
    }

    async fn join_again(self: &Arc<Self>) -> Result<(), EngineError> {
        let replica = &self.config.replica;
        self.store.register_replica(&replica.id, &replica.url, now_ms() + millis(replica.lease)).await?;
        for session in self.store.claim_own_sessions().await? {
            self.end_unowned(&session, EndReason::ReplicaLost).await;
        }
        // Its clones were stopped: whatever no one took over is cloned again here.
        let interrupted = self.store.interrupted_clones().await?;
        self.clone_again(interrupted).await
    }

    async fn abandon_local_sessions(&self) {
        self.stop_every_clone();
        let ids: Vec<SessionId> = self.registry().live.keys().cloned().collect();
        for id in ids {
            let _ = self.ask(&id, |reply| Command::Abandon { reply }).await;
            self.release_slot(&id);
        }
    }

    /// Where live session `id` is owned.
    pub async fn session_home(&self, id: &SessionId) -> Result<SessionHome, EngineError> {
        if self.handle(id).is_some() {
            return Ok(SessionHome::Here);
        }
        Ok(match self.store.session_owner(id).await? {
            Some(owner) if owner.id != self.config.replica.id && owner.is_alive(now_ms()) => {
                SessionHome::Elsewhere { url: owner.url }
            }
            _ => SessionHome::Here,
        })
    }

    /// Where the live session of workspace `id` is owned (here when it has none).
    pub async fn workspace_home(&self, id: &WorkspaceId) -> Result<SessionHome, EngineError> {
        match self.store.live_session_of_workspace(id).await? {
            Some(session) => self.session_home(&session.id).await,
            None => Ok(SessionHome::Here),
        }
    }

    /// A connection to `port` in the sandbox of session `id`, which the replica at `url`
    /// owns: that replica's tunnel (an HTTP upgrade), after which the stream carries the
    /// sandbox's bytes as they are.
    pub(crate) async fn tunnel_on(
        &self,
        url: &str,
        id: &SessionId,
        port: u16,
    ) -> Result<TcpStream, EngineError> {
        let unreachable = |message: String| EngineError::PreviewUnreachable { port, message };
        let authority = url.strip_prefix("http://").ok_or_else(|| {
            unreachable("the replica that owns the session is not reachable over http://".into())
        })?;
        let mut stream = TcpStream::connect(authority).await.map_err(|error| {
            unreachable(format!("the replica that owns the session does not answer: {error}"))
        })?;
        let request = format!(
            "GET /internal/sessions/{id}/tunnel/{port} HTTP/1.1\r\nHost: {authority}\r\n\
             Connection: upgrade\r\nUpgrade: berth-tunnel\r\n{REPLICA_SECRET_HEADER}: {}\r\n\r\n",
            self.replica_secret
        );
        stream.write_all(request.as_bytes()).await.map_err(|error| unreachable(error.to_string()))?;
        // The answer's head, byte by byte so nothing after it is read.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 8192 {
                return Err(unreachable("the replica's answer is too long".into()));
            }
            let byte = stream.read_u8().await.map_err(|error| unreachable(error.to_string()))?;
            head.push(byte);
        }
        let status_line = String::from_utf8_lossy(&head);
        match status_line.split(' ').nth(1) {
            Some("101") => Ok(stream),
            Some("404") => Err(EngineError::NoLiveSession),
            _ => Err(unreachable(format!(
                "the replica that owns the session answered {}",
                status_line.lines().next().unwrap_or_default()
            ))),
        }
    }

    /// Asks the replica that owns `id` to close it.
    pub(crate) async fn close_on(
        &self,
        url: &str,
        id: &SessionId,
        reason: EndReason,
    ) -> Result<(), EngineError> {
        let failed = |message: String| EngineError::CloseFailed { session_id: id.clone(), message };
        let response = self
            .replica_client
            .post(format!("{url}/internal/sessions/{id}/close"))
            .header(REPLICA_SECRET_HEADER, &self.replica_secret)
            .json(&serde_json::json!({ "reason": reason.as_str() }))
            .timeout(REPLICA_CALL_TIMEOUT)
            .send()
            .await
            .map_err(|error| failed(format!("the replica that owns it did not answer: {error}")))?;
        if response.status().is_success() {
            return Ok(());
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        Err(failed(
            body["error"]["message"].as_str().unwrap_or("the replica that owns it refused").to_owned(),
        ))
    }
}
