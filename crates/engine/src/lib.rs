//! berth's engine: the one place that applies the domain's decisions to the world. It
//! owns the store and the background work (clones today; sessions, sandboxes and agents
//! as they arrive), and is what the HTTP server and the offline CLI commands call.

mod accounts;
pub mod config;
mod error;
mod paths;
mod preview;
mod preview_pass;
pub mod replicas;
pub mod sealing;
mod session;
mod terminals;
mod workspaces;

use berth_core::WorkspaceId;
use berth_sandbox::{Isolation, Network, SandboxDriver};
use berth_store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use accounts::{
    Accounts, Browser, NewSignIn, NewToken, OIDC_LOGIN_SECS, OfferedAgent, OidcIdentity, OidcSignIn,
    SshPublicKey, hash_token, is_sign_in_secret,
};
pub use berth_sandbox::TerminalSize;
pub use berth_store::PendingOidcLogin;
pub use config::{AgentEntry, AgentPackage, Config};
pub use error::EngineError;
pub use paths::DataPaths;
pub use preview::Previews;
pub use replicas::{Peer, PeerStream, Peers, Replicas};
pub use session::phases;
pub use session::{
    CONTROLLERS_BUSY_RETRY_AFTER, CloseAllReport, CloseAllScope, CloseFailure, LiveAttachment, LiveMessage,
    LiveSubscription, OpenOutcome, Owner, Sessions,
};
pub use terminals::{
    MAX_INPUT_BYTES, MAX_TERMINALS_PER_SESSION, TerminalAttachment, TerminalInfo, Terminals,
};
pub use workspaces::{
    NewWorkspace, PushedBranch, WorkspaceFile, WorkspaceGitStatus, WorkspaceSettings, Workspaces,
};

/// The name of the agent every installation offers: berth's own (`berth agent`).
pub const BUILTIN_AGENT: &str = "builtin";

/// The running core of a berth server, shared as `Arc<Engine>`: a plain struct of
/// services. Each HTTP module and CLI command uses the services it needs; the services
/// reach one another through their public methods only.
pub struct Engine {
    /// Live sessions: opening, the owner task of each, the conversation, the endings.
    pub sessions: Sessions,
    /// Workspaces: clones, git jobs, files, deletion.
    pub workspaces: Workspaces,
    /// Users, tokens, sign-ins, profiles, credentials and secrets.
    pub accounts: Accounts,
    /// Passes to preview hosts and connections into sandboxes' ports.
    pub previews: Previews,
    /// This replica among the others: registration, lease, take-over, peers, changes.
    pub replicas: Replicas,
    /// Shells on pseudo-terminals in live sessions' sandboxes.
    pub terminals: Terminals,
    shared: Arc<Shared>,
}

/// What every service works with: the configuration, the store, the data directory, the
/// sandbox driver and the background tasks, and each service's own state (kept here so a
/// service is a cheap handle, and read only by that service's module). Opaque outside the
/// engine.
pub struct Shared {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) paths: DataPaths,
    pub(crate) driver: Arc<dyn SandboxDriver>,
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    /// Tells whoever listens (tests, live dashboards) that a workspace changed.
    pub(crate) workspace_changes: tokio::sync::broadcast::Sender<WorkspaceId>,
    /// The sessions' in-memory side: slots, owner tasks, users' open locks.
    pub(crate) live: session::LiveRegistry,
    /// Clones under way.
    pub(crate) clones: workspaces::Clones,
    /// What authentication keeps: recently seen tokens, the sealer of secrets.
    pub(crate) access: accounts::Access,
    /// Signs and checks the passes to preview hosts.
    pub(crate) passes: preview::PreviewPasses,
    /// The replicas' shared secret, the peers, the change feed.
    pub(crate) replica: replicas::ReplicaLink,
    /// The terminals running here.
    pub(crate) terminals: terminals::TerminalRegistry,
}

/// Declares a service: a handle on the engine's [`Shared`] parts, cheap to clone (into a
/// task), which reaches its sibling services through [`Services`].
macro_rules! service {
    ($service:ident) => {
        #[derive(Clone)]
        pub struct $service(pub(crate) std::sync::Arc<crate::Shared>);

        impl std::ops::Deref for $service {
            type Target = crate::Shared;
            fn deref(&self) -> &crate::Shared {
                &self.0
            }
        }

        impl crate::Services for $service {
            fn shared(&self) -> &std::sync::Arc<crate::Shared> {
                &self.0
            }
        }
    };
}
pub(crate) use service;

/// How one service reaches another (through its public methods).
pub(crate) trait Services {
    fn shared(&self) -> &Arc<Shared>;

    fn sessions(&self) -> Sessions {
        Sessions(Arc::clone(self.shared()))
    }

    fn workspaces(&self) -> Workspaces {
        Workspaces(Arc::clone(self.shared()))
    }

    fn accounts(&self) -> Accounts {
        Accounts(Arc::clone(self.shared()))
    }

    fn replicas(&self) -> Replicas {
        Replicas(Arc::clone(self.shared()))
    }

    fn terminals(&self) -> Terminals {
        Terminals(Arc::clone(self.shared()))
    }
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
        engine.replicas.join().await?;
        engine.replicas.spawn_listener().await?;
        engine.sessions.reconcile().await?;
        engine.replicas.spawn_lease_keeper();
        engine.workspaces.resume_interrupted_initialisations().await?;
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
        let feed = store.change_feed();
        let shared = Arc::new(Shared {
            config,
            store,
            paths,
            driver,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            workspace_changes: tokio::sync::broadcast::channel(1024).0,
            live: session::LiveRegistry::default(),
            clones: workspaces::Clones::default(),
            access: accounts::Access::new(&key),
            passes: preview::PreviewPasses::new(preview_pass::PassKey::from_bytes(
                key.derive("berth preview passes"),
            )),
            replica: replicas::ReplicaLink::new(hex::encode(key.derive("berth replica link")), feed),
            terminals: terminals::TerminalRegistry::default(),
        });
        Ok(Arc::new(Engine {
            sessions: Sessions(Arc::clone(&shared)),
            workspaces: Workspaces(Arc::clone(&shared)),
            accounts: Accounts(Arc::clone(&shared)),
            previews: Previews(Arc::clone(&shared)),
            replicas: Replicas(Arc::clone(&shared)),
            terminals: Terminals(Arc::clone(&shared)),
            shared,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn paths(&self) -> &DataPaths {
        &self.shared.paths
    }

    /// Ends every live session (powering its sandbox off), stops background work and
    /// waits for it, then closes the store. Clones stopped here are resumed by the next
    /// [`Engine::start`].
    pub async fn shutdown(&self) {
        self.sessions.close_every_session().await;
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        self.replicas.leave().await;
        self.shared.store.close().await;
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
                hidden: hidden_from_sandboxes(config),
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
            let mut driver = berth_sandbox::DockerDriver::connect(options)
                .await
                .map_err(|source| EngineError::Sandbox { source })?;
            // Where this machine has bubblewrap, git jobs without network run in it
            // (never unsandboxed): a container each is ≈ 200 ms, a page reads git status
            // after every turn.
            if config.isolation == Isolation::Bwrap {
                let options = berth_sandbox::LocalOptions {
                    isolation: Isolation::Bwrap,
                    network: Network::Isolated,
                    resources: config.resources,
                    stop_timeout: berth_sandbox::DEFAULT_STOP_TIMEOUT,
                    hidden: hidden_from_sandboxes(config),
                    read_only: Vec::new(),
                    egress_allow: Vec::new(),
                };
                let local = berth_sandbox::LocalDriver::with_options(
                    &replica_state_dir(config).join("jobs"),
                    options,
                )
                .map_err(|source| EngineError::Sandbox { source })?;
                driver = driver.with_local_jobs(local).map_err(|source| EngineError::Sandbox { source })?;
            }
            tracing::info!(image = %config.image, network = %config.network, jobs_in_bubblewrap = config.isolation == Isolation::Bwrap, "docker sandboxes");
            Ok(Arc::new(driver))
        }
    }
}

/// What this replica keeps of its own sandboxes (records, the cgroup and container
/// names derived from it), apart from other replicas sharing the data directory.
fn replica_state_dir(config: &Config) -> PathBuf {
    config.data_dir.join("sandboxes").join(&config.replica.id)
}

/// What no sandbox may see: the data directory and the configuration file.
fn hidden_from_sandboxes(config: &Config) -> Vec<PathBuf> {
    std::iter::once(config.data_dir.clone()).chain(config.config_file.clone()).collect()
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
    // The agents `berth agents install` installed (the directory, made so it can be bound).
    let agents_dir = config.agents_dir();
    let _ = std::fs::create_dir_all(&agents_dir);
    std::env::current_exe().ok().into_iter().chain(configured).chain(Some(agents_dir)).collect()
}
