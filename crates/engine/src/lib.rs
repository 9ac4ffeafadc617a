//! berth's engine: the one place that applies the domain's decisions to the world. It
//! owns the store and the background work (clones today; sessions, sandboxes and agents
//! as they arrive), and is what the HTTP server and the offline CLI commands call.

pub mod config;
mod conversation;
mod credentials;
mod error;
mod paths;
mod preview;
mod preview_pass;
pub mod replicas;
pub mod sealing;
mod session;
mod sign_ins;
mod sources;
mod ssh;
mod users;
mod workspaces;

use berth_core::WorkspaceId;
use berth_sandbox::SandboxDriver;
use berth_store::Store;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{AgentEntry, Config};

/// The name of the agent every installation offers: berth's own (`berth agent`).
pub const BUILTIN_AGENT: &str = "builtin";
pub use berth_store::PendingOidcLogin;
pub use conversation::{LiveAttachment, LiveMessage, LiveSubscription};
pub use credentials::OfferedAgent;
pub use error::EngineError;
pub use paths::DataPaths;
pub use session::{CONTROLLERS_BUSY_RETRY_AFTER, CloseAllReport, CloseAllScope, CloseFailure, OpenOutcome};
pub use sign_ins::{Browser, NewSignIn, OIDC_LOGIN_SECS, OidcIdentity, OidcSignIn, is_sign_in_secret};
pub use ssh::SshPublicKey;
pub use users::{NewToken, hash_token};
pub use workspaces::{NewWorkspace, PushedBranch, WorkspaceFile, WorkspaceGitStatus, WorkspaceSettings};

/// The running core of a berth server. Shared as `Arc<Engine>`.
pub struct Engine {
    pub(crate) config: Config,
    store: Store,
    paths: DataPaths,
    driver: Arc<dyn SandboxDriver>,
    /// Live sessions' in-memory side: slots and the way to each session's owner task.
    sessions: Mutex<session::SessionRegistry>,
    session_changes: tokio::sync::broadcast::Sender<berth_core::Session>,
    /// Clones under way, so a delete can stop one and wait for it.
    clones: Mutex<HashMap<WorkspaceId, workspaces::CloneHandle>>,
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    /// Tells whoever listens (tests, live dashboards) that a workspace changed.
    workspace_changes: tokio::sync::broadcast::Sender<WorkspaceId>,
    /// Tokens recently seen to be valid (by hash), so that reads do not each cost a
    /// database query for authentication.
    tokens: users::TokenCache,
    /// Signs and checks the passes to preview hosts.
    previews: preview::PreviewPasses,
    /// Seals users' secrets and credentials at rest.
    sealer: sealing::Sealer,
    /// What one replica shows another to be believed (derived from `secrets.key`).
    replica_secret: String,
    /// Calls to other replicas (closing a session one of them owns).
    replica_client: reqwest::Client,
}

impl Engine {
    /// [`Engine::open_offline`], then resumes the work a previous run left unfinished: what
    /// `berth serve` does at start.
    pub async fn start(config: Config) -> Result<Arc<Engine>, EngineError> {
        let driver = default_driver(&config).await?;
        Engine::start_with_driver(config, driver).await
    }

    /// [`Engine::start`] with a given sandbox driver (a fault injector in tests).
    pub async fn start_with_driver(
        config: Config,
        driver: Arc<dyn SandboxDriver>,
    ) -> Result<Arc<Engine>, EngineError> {
        let engine = Engine::open_with_driver(config, driver).await?;
        engine.join_replicas().await?;
        engine.spawn_replica_listener().await?;
        engine.reconcile_sessions().await?;
        engine.spawn_lease_keeper();
        engine.resume_interrupted_initialisations().await?;
        Ok(engine)
    }

    /// Opens the store (applying migrations) and makes the data directory, starting no
    /// background work: for offline commands that may run beside a server.
    pub async fn open_offline(config: Config) -> Result<Arc<Engine>, EngineError> {
        let driver = default_driver(&config).await?;
        Engine::open_with_driver(config, driver).await
    }

    async fn open_with_driver(
        config: Config,
        driver: Arc<dyn SandboxDriver>,
    ) -> Result<Arc<Engine>, EngineError> {
        let paths = DataPaths::create(&config.data_dir).await?;
        let store = Store::open(&config.database_url).await?;
        let key = match &config.secret_key {
            Some(key) => key.clone(),
            None => {
                let path = paths.root().join("secret.key");
                sealing::SecretKey::load_or_make(&path).map_err(|source| EngineError::Io { path, source })?
            }
        };
        let engine = Arc::new(Engine {
            config,
            store,
            paths,
            driver,
            sessions: Mutex::new(session::SessionRegistry::default()),
            session_changes: tokio::sync::broadcast::channel(4096).0,
            clones: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            workspace_changes: tokio::sync::broadcast::channel(1024).0,
            tokens: users::TokenCache::default(),
            previews: preview::PreviewPasses::new(preview_pass::PassKey::from_bytes(
                key.derive("berth preview passes"),
            )),
            sealer: sealing::Sealer::new(&key),
            replica_secret: hex::encode(key.derive("berth replica link")),
            replica_client: reqwest::Client::new(),
        });
        Ok(engine)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn paths(&self) -> &DataPaths {
        &self.paths
    }

    /// The ids of workspaces as they change (state, log). A slow listener misses
    /// notices (`Lagged`) and should re-read what it shows.
    pub fn subscribe_workspace_changes(&self) -> tokio::sync::broadcast::Receiver<WorkspaceId> {
        self.workspace_changes.subscribe()
    }

    fn notify_workspace_changed(&self, id: &WorkspaceId) {
        // No listener is not an error.
        let _ = self.workspace_changes.send(id.clone());
        self.tell_replicas(berth_store::Change::Workspace(id.clone()));
    }

    /// Ends every live session (powering its sandbox off), stops background work and
    /// waits for it, then closes the store. Clones stopped here are resumed by the next
    /// [`Engine::start`].
    pub async fn shutdown(&self) {
        self.close_every_session().await;
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        if let Err(error) = self.store.release_lease().await {
            tracing::warn!(error = %error, "cannot give this replica's lease back");
        }
        self.store.close().await;
    }
}

/// The driver the configuration asks for.
async fn default_driver(config: &Config) -> Result<Arc<dyn SandboxDriver>, EngineError> {
    match config.sandbox_driver {
        config::SandboxDriverKind::Local => {
            let state_dir = replica_state_dir(config);
            let options = berth_sandbox::LocalOptions {
                isolation: config.isolation,
                network: config.network,
                resources: config.resources,
                stop_timeout: berth_sandbox::DEFAULT_STOP_TIMEOUT,
                hidden: std::iter::once(config.data_dir.clone()).chain(config.config_file.clone()).collect(),
                read_only: agent_programs(config),
                egress_allow: config.egress_allow.clone(),
            };
            let driver = berth_sandbox::LocalDriver::with_options(&state_dir, options)
                .map_err(|source| EngineError::Sandbox { source })?;
            tracing::info!("local sandboxes: {}", driver.describe());
            Ok(Arc::new(driver))
        }
        config::SandboxDriverKind::Docker => {
            let options = berth_sandbox::DockerOptions {
                image: config.image.clone(),
                network: config.network,
                resources: config.resources,
                stop_timeout: berth_sandbox::DEFAULT_STOP_TIMEOUT,
                state_dir: replica_state_dir(config),
                read_only: agent_programs(config),
            };
            let driver = berth_sandbox::DockerDriver::connect(options)
                .await
                .map_err(|source| EngineError::Sandbox { source })?;
            tracing::info!(image = %config.image, network = %config.network, "docker sandboxes");
            Ok(Arc::new(driver))
        }
    }
}

/// What this replica keeps of its own sandboxes (records, the cgroup and container
/// names derived from it), apart from other replicas sharing the data directory.
fn replica_state_dir(config: &Config) -> PathBuf {
    config.data_dir.join("sandboxes").join(&config.replica.id)
}

/// The programs agents are started from, shown read-only inside sandboxes: this binary
/// (the built-in agent) and the configured agent command's program when it is given as
/// an absolute path.
fn agent_programs(config: &Config) -> Vec<PathBuf> {
    let configured = config.agent_command.as_deref().and_then(|command| {
        let command = command.trim_start();
        let program = match command.strip_prefix('\'') {
            Some(quoted) => quoted.split('\'').next()?,
            None => command.split_whitespace().next()?,
        };
        let path = PathBuf::from(program);
        (path.is_absolute() && path.is_file()).then_some(path)
    });
    std::env::current_exe().ok().into_iter().chain(configured).collect()
}
