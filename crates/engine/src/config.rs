//! berth's configuration: one struct, loaded once from a TOML file and `BERTH_*`
//! variables (a variable wins over the file), then passed explicitly. The keys and
//! variable names are the contract of API.md "Configuration".

use berth_core::preview::{PortAllowList, PreviewHosts};
use berth_core::{Limits, OnUserLimit};
pub use berth_sandbox::{Isolation, Network, Resources};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_RECONNECT_GRACE: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_CLONE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_TURN_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_PROMPTS_PER_SECOND: u32 = 5;
pub const DEFAULT_COOKIE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a replica's lease lasts unless renewed (`replica.lease`).
pub const DEFAULT_REPLICA_LEASE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxDriverKind {
    Local,
    Docker,
}

/// The default share of the machine of one sandbox.
pub const DEFAULT_RESOURCES: Resources =
    Resources { memory_bytes: Some(4 << 30), pids: Some(1024), cpus: None };
/// Debian with git, ssh and curl: berth runs git in the sandbox's image.
pub const DEFAULT_IMAGE: &str = "buildpack-deps:bookworm-scm";

/// Which sandboxing programs this host has; they decide the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTools {
    pub bwrap: bool,
    pub slirp4netns: bool,
}

impl HostTools {
    pub const NONE: HostTools = HostTools { bwrap: false, slirp4netns: false };
    pub const ALL: HostTools = HostTools { bwrap: true, slirp4netns: true };

    /// Looks for the programs on the `PATH`.
    pub fn detect() -> HostTools {
        HostTools {
            bwrap: berth_sandbox::installed("bwrap"),
            slirp4netns: berth_sandbox::installed("slirp4netns"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeContext {
    /// Resume the agent's own context with `session/load` when it supports it.
    Auto,
    /// Always start a fresh agent session.
    Never,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub admin_token: Option<String>,
    pub limits: Limits,
    /// Prompts one session takes per second at most (`limits.prompts_per_second`).
    pub prompts_per_second: u32,
    pub reconnect_grace: Duration,
    pub sandbox_driver: SandboxDriverKind,
    pub isolation: Isolation,
    pub network: Network,
    pub resources: Resources,
    /// The container image of the `docker` driver.
    pub image: String,
    /// Private, link-local or host ranges outbound sandboxes may reach all the same.
    pub egress_allow: Vec<berth_sandbox::egress::IpNet>,
    pub preview_ports: PortAllowList,
    /// Where previews are served: an origin of their own, so a previewed page's scripts
    /// never run with berth's origin. `None` (`preview.listen = "off"`): no previews.
    pub preview_listen: Option<SocketAddr>,
    /// The previews' addresses as browsers reach them, a wildcard with one host per
    /// workspace (`https://*.preview.example.com`), when a proxy stands in front; by
    /// default `http://<workspace id>.preview.localhost:<preview_listen's port>`.
    pub preview_url: Option<PreviewHosts>,
    /// The configuration file read, hidden from sandboxes with the data directory.
    pub config_file: Option<PathBuf>,
    /// `None` runs the built-in agent (`berth agent`).
    pub agent_command: Option<String>,
    pub resume_context: ResumeContext,
    /// A turn during which the agent sends nothing for this long is cancelled.
    pub turn_timeout: Duration,
    pub clone_timeout: Duration,
    /// How long the login cookie lives.
    pub cookie_ttl: Duration,
    /// Where browsers reach berth (`public_url`): OpenID Connect's redirect URI is
    /// `<public_url>/auth/oidc/callback`.
    pub public_url: String,
    /// Sign-in through an OpenID Connect provider, when configured.
    pub oidc: Option<OidcSettings>,
    /// Directories under which members may clone local repositories (admins may clone
    /// any path outside the data directory). Empty: members clone no local path.
    pub git_local_roots: Vec<PathBuf>,
    /// The key that seals users' secrets and credentials at rest (`secrets.key`); `None`:
    /// the key file in the data directory, made on first start.
    pub secret_key: Option<crate::sealing::SecretKey>,
    /// The agents offered besides the built-in one, by name (`[agents.NAME]`).
    pub agents: Vec<AgentEntry>,
    /// Names of the server's environment passed to agents besides `PATH`, `LANG`, `LC_*`
    /// and `TZ` (`agent.pass_env`).
    pub agent_pass_env: Vec<String>,
    /// This replica among those sharing the database (`[replica]`).
    pub replica: ReplicaConfig,
}

/// Who this replica is to the others sharing its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// `replica.id`: by default the host's name and the listen port.
    pub id: String,
    /// `replica.url`: where other replicas reach this one's API, `http://<listen>` by default.
    pub url: String,
    /// `replica.lease`: renewed every third of it; another replica ends this one's
    /// sessions once it has expired.
    pub lease: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file '{path}'")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the configuration file '{path}' is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key} = '{value}' is not valid: {reason}")]
    Invalid { key: &'static str, value: String, reason: String },
    #[error("no data directory: set data_dir or BERTH_DATA")]
    NoDataDir,
}

/// The file's shape: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<String>,
    public_url: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    admin_token: Option<String>,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    session: SessionFile,
    #[serde(default)]
    sandbox: SandboxFile,
    #[serde(default)]
    agent: AgentFile,
    #[serde(default)]
    git: GitFile,
    #[serde(default)]
    preview: PreviewFile,
    #[serde(default)]
    auth: AuthFile,
    #[serde(default)]
    secrets: SecretsFile,
    #[serde(default)]
    replica: ReplicaFile,
    /// `[agents.NAME]`: the agents this installation offers besides the built-in one.
    #[serde(default)]
    agents: std::collections::BTreeMap<String, AgentEntryFile>,
}

/// `[agents.NAME]`: a new agent (`command` given), or changes to one berth knows
/// (`claude`, `codex`, `gemini`: any field).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentEntryFile {
    command: Option<String>,
    needs: Option<Vec<String>>,
    description: Option<String>,
    /// Fixed settings of this agent's environment (a company's model gateway).
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    settings: Option<Vec<String>>,
    /// The npm package (`name@version`) `berth agents install` installs.
    package: Option<String>,
    /// The program the package installs, and its arguments.
    bin: Option<String>,
    args: Option<Vec<String>>,
}

/// An agent of the installation's catalogue: one berth knows, or `[agents.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEntry {
    pub name: String,
    /// A shell command line that starts it, as `agent.command`; `None`: the program of
    /// its package, installed by `berth agents install` or on the `PATH`.
    pub command: Option<String>,
    /// The secrets it needs (a model provider key), by name.
    pub needs: Vec<String>,
    pub description: String,
    /// Fixed settings of its environment (`env = { … }`), over the server's variables
    /// that pass and under the person's secrets.
    pub env: Vec<(String, String)>,
    /// The settings it reads (its provider's address, its model), for people to know.
    pub settings: Vec<String>,
    pub package: Option<AgentPackage>,
}

/// An agent's npm package: what `berth agents install` installs, and the program it
/// starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPackage {
    /// `name@version`.
    pub spec: String,
    pub bin: String,
    pub args: Vec<String>,
}

impl AgentEntry {
    /// One berth knows, as it comes.
    fn known(agent: &berth_core::agents::KnownAgent) -> AgentEntry {
        AgentEntry {
            name: agent.name.to_owned(),
            command: None,
            needs: agent.needs.iter().map(|name| (*name).to_owned()).collect(),
            description: agent.description.to_owned(),
            env: Vec::new(),
            settings: agent.settings.iter().map(|name| (*name).to_owned()).collect(),
            package: Some(AgentPackage {
                spec: agent.spec(),
                bin: agent.bin.to_owned(),
                args: agent.args.iter().map(|arg| (*arg).to_owned()).collect(),
            }),
        }
    }

    /// Where `berth agents install` puts its package, under the installation's `agents`
    /// directory.
    pub fn install_dir(&self, agents_dir: &std::path::Path) -> std::path::PathBuf {
        agents_dir.join(&self.name)
    }

    /// The command line that starts it, when it can start: its own command, or its
    /// package's program — installed by berth (preferred) or on the `PATH`.
    pub fn command_line(&self, agents_dir: &std::path::Path) -> Option<String> {
        if let Some(command) = &self.command {
            return Some(command.clone());
        }
        let package = self.package.as_ref()?;
        let args: Vec<&str> = package.args.iter().map(String::as_str).collect();
        let installed = self.install_dir(agents_dir).join("node_modules/.bin").join(&package.bin);
        if installed.is_file() {
            return Some(berth_core::agents::command_line(&installed.to_string_lossy(), &args));
        }
        berth_sandbox::installed(&package.bin).then(|| berth_core::agents::command_line(&package.bin, &args))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicaFile {
    id: Option<String>,
    url: Option<String>,
    lease: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    cookie_ttl: Option<String>,
    #[serde(default)]
    oidc: OidcFile,
}

/// `[auth.oidc]`: lists are comma- or space-separated strings, as their variables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OidcFile {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    display_name: Option<String>,
    scopes: Option<String>,
    username_claim: Option<String>,
    groups_claim: Option<String>,
    allowed_groups: Option<String>,
    allowed_email_domains: Option<String>,
    admin_groups: Option<String>,
}

/// Sign-in through an OpenID Connect provider (`[auth.oidc]`).
#[derive(Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The provider's issuer URL; its discovery document is at
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// What the sign-in button says: "Sign in with <display_name>".
    pub display_name: String,
    pub scopes: Vec<String>,
    /// The claim a new user's name is made from (`preferred_username`).
    pub username_claim: String,
    /// The claim listing a person's groups (`groups`).
    pub groups_claim: String,
    /// Empty: anyone the provider signs in; else only members of one of them.
    pub allowed_groups: Vec<String>,
    /// Empty: any email; else only these domains.
    pub allowed_email_domains: Vec<String>,
    /// Members of these are administrators (at every sign-in).
    pub admin_groups: Vec<String>,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<hidden>"))
            .field("display_name", &self.display_name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// A list setting: comma- or space-separated, empty parts dropped.
fn list(text: Option<String>) -> Vec<String> {
    text.unwrap_or_default()
        .split([',', ' '])
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewFile {
    ports: Option<String>,
    listen: Option<String>,
    url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    sessions_per_user: Option<u32>,
    on_user_limit: Option<String>,
    running_sandboxes: Option<u32>,
    prompts_per_second: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionFile {
    reconnect_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxFile {
    driver: Option<String>,
    isolation: Option<String>,
    network: Option<String>,
    memory: Option<String>,
    pids: Option<String>,
    cpus: Option<String>,
    image: Option<String>,
    /// Comma-separated, as the environment variable.
    egress_allow: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    command: Option<String>,
    /// Comma-separated, as the environment variable.
    pass_env: Option<String>,
    resume_context: Option<String>,
    turn_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GitFile {
    clone_timeout: Option<String>,
    /// `:`-separated, as the environment variable.
    local_roots: Option<String>,
}

fn invalid(key: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, value: value.to_owned(), reason: reason.into() }
}

fn duration(key: &'static str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value)
        .map_err(|error| invalid(key, value, format!("{error} (write it as 90s or 5m)")))
}

fn count(key: &'static str, value: &str, minimum: u32) -> Result<u32, ConfigError> {
    match value.parse::<u32>() {
        Ok(parsed) if parsed >= minimum => Ok(parsed),
        _ => Err(invalid(key, value, format!("expected a whole number of at least {minimum}"))),
    }
}

impl Config {
    /// Reads `file` (if any) and the environment through `env`, applies the defaults and
    /// checks every value. `tools` decide the default isolation and network.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        tools: HostTools,
    ) -> Result<Config, ConfigError> {
        let parsed = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                toml::from_str::<ConfigFile>(&text).map_err(|error| ConfigError::Parse {
                    path: path.to_owned(),
                    message: error.message().to_owned(),
                })?
            }
            None => ConfigFile::default(),
        };
        // Each setting: the variable if set, else the file's key.
        let pick =
            |variable: &str, from_file: Option<String>| env(variable).filter(|v| !v.is_empty()).or(from_file);
        let pick: Pick<'_> = &pick;
        let listen_text = pick("BERTH_LISTEN", parsed.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().map_err(|_| {
            invalid("listen", &listen_text, "expected an address and port such as 127.0.0.1:7070")
        })?;
        let data_dir = match pick("BERTH_DATA", parsed.data_dir.map(|p| p.to_string_lossy().into_owned())) {
            Some(dir) => PathBuf::from(dir),
            None => dirs::data_dir().ok_or(ConfigError::NoDataDir)?.join("berth"),
        };
        let database_url = pick("BERTH_DATABASE_URL", parsed.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("berth.db").display()));
        let admin_token = admin_token(pick("BERTH_ADMIN_TOKEN", parsed.admin_token))?;
        let (limits, prompts_per_second) = limits(pick, parsed.limits)?;
        let grace = pick("BERTH_RECONNECT_GRACE", parsed.session.reconnect_grace);
        let reconnect_grace = duration_or(grace, "session.reconnect_grace", DEFAULT_RECONNECT_GRACE)?;
        let sandbox = sandbox(pick, parsed.sandbox, tools)?;
        let (preview_ports, preview_listen, preview_url) = preview(pick, parsed.preview, listen)?;
        let agent = agent(pick, parsed.agent)?;
        let public_url = public_url(pick("BERTH_PUBLIC_URL", parsed.public_url), &listen_text)?;
        let oidc = oidc(pick, parsed.auth.oidc)?;
        let cookie_ttl = pick("BERTH_COOKIE_TTL", parsed.auth.cookie_ttl);
        let cookie_ttl = duration_or(cookie_ttl, "auth.cookie_ttl", DEFAULT_COOKIE_TTL)?;
        let agents = catalogue(parsed.agents)?;
        let secret_key = secret_key(pick("BERTH_SECRET_KEY", parsed.secrets.key))?;
        let replica = replica(
            pick("BERTH_REPLICA_ID", parsed.replica.id),
            pick("BERTH_REPLICA_URL", parsed.replica.url),
            pick("BERTH_REPLICA_LEASE", parsed.replica.lease),
            listen,
        )?;
        let (git_local_roots, clone_timeout) = git(pick, parsed.git)?;

        Ok(Config {
            listen,
            data_dir,
            database_url,
            admin_token,
            limits,
            prompts_per_second,
            reconnect_grace,
            sandbox_driver: sandbox.driver,
            isolation: sandbox.isolation,
            network: sandbox.network,
            resources: sandbox.resources,
            image: sandbox.image,
            egress_allow: sandbox.egress_allow,
            preview_ports,
            preview_listen,
            preview_url,
            config_file: file.map(Path::to_owned),
            agent_command: agent.command,
            resume_context: agent.resume_context,
            turn_timeout: agent.turn_timeout,
            clone_timeout,
            cookie_ttl,
            public_url,
            oidc,
            git_local_roots,
            secret_key,
            agents,
            agent_pass_env: agent.pass_env,
            replica,
        })
    }

    /// Where `berth agents install` puts agents' packages; sandboxes see it read-only.
    pub fn agents_dir(&self) -> PathBuf {
        self.data_dir.join("agents")
    }

    /// The catalogue's agent called `name`.
    pub fn agent(&self, name: &str) -> Option<&AgentEntry> {
        self.agents.iter().find(|entry| entry.name == name)
    }

    /// A configuration for tests and tools: defaults, everything under `data_dir`, and
    /// members may clone local repositories under the temporary directory.
    pub fn for_data_dir(data_dir: &Path) -> Config {
        let data_dir_text = data_dir.to_string_lossy().into_owned();
        let mut config =
            Config::load(None, |name| (name == "BERTH_DATA").then(|| data_dir_text.clone()), HostTools::NONE)
                .expect("the defaults are valid"); // the defaults are constants checked by the tests below
        config.listen.set_port(0);
        config.preview_listen = Some(default_preview_listen(config.listen));
        // Tests and tools clone repositories they make in the temporary directory; the
        // data directory there is refused all the same.
        config.git_local_roots = vec![std::env::temp_dir()];
        config
    }
}

/// The longest `replica.id`.
const MAX_REPLICA_ID: usize = 63;
/// The shortest `replica.lease` (renewed every third of it).
const MIN_REPLICA_LEASE: Duration = Duration::from_secs(1);

/// How `Config::load` reads one setting: the environment variable if set, else the
/// file's key.
type Pick<'a> = &'a dyn Fn(&str, Option<String>) -> Option<String>;

fn admin_token(token: Option<String>) -> Result<Option<String>, ConfigError> {
    if let Some(token) = &token
        && (token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(invalid("admin_token", "(hidden)", "expected at least 16 characters, no white space"));
    }
    Ok(token)
}

/// A duration setting `key` as given (`text`), else `default`.
fn duration_or(text: Option<String>, key: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    text.map_or(Ok(default), |text| duration(key, &text))
}

fn secret_key(text: Option<String>) -> Result<Option<crate::sealing::SecretKey>, ConfigError> {
    text.map(|text| {
        crate::sealing::SecretKey::parse(&text)
            .ok_or_else(|| invalid("secrets.key", "(hidden)", "expected 64 hexadecimal digits (32 bytes)"))
    })
    .transpose()
}

/// `[git]`: where members may clone local paths from, and how long a clone may take.
fn git(pick: Pick<'_>, file: GitFile) -> Result<(Vec<PathBuf>, Duration), ConfigError> {
    let local_roots = match pick("BERTH_GIT_LOCAL_ROOTS", file.local_roots) {
        Some(text) => local_roots(&text)?,
        None => Vec::new(),
    };
    let clone_timeout = match pick("BERTH_CLONE_TIMEOUT", file.clone_timeout) {
        Some(text) => duration("git.clone_timeout", &text)?,
        None => DEFAULT_CLONE_TIMEOUT,
    };
    Ok((local_roots, clone_timeout))
}

/// `[limits]`: the limits, and the prompts a session takes per second.
fn limits(pick: Pick<'_>, file: LimitsFile) -> Result<(Limits, u32), ConfigError> {
    let defaults = Limits::default();
    let sessions_per_user =
        match pick("BERTH_SESSIONS_PER_USER", file.sessions_per_user.map(|n| n.to_string())) {
            Some(text) => count("limits.sessions_per_user", &text, 1)?,
            None => defaults.sessions_per_user,
        };
    let on_user_limit = match pick("BERTH_ON_USER_LIMIT", file.on_user_limit) {
        Some(text) => OnUserLimit::parse(&text)
            .ok_or_else(|| invalid("limits.on_user_limit", &text, "expected replace or reject"))?,
        None => defaults.on_user_limit,
    };
    let running_sandboxes =
        match pick("BERTH_RUNNING_SANDBOXES", file.running_sandboxes.map(|n| n.to_string())) {
            Some(text) => count("limits.running_sandboxes", &text, 1)?,
            None => defaults.running_sandboxes,
        };
    let prompts_per_second =
        match pick("BERTH_PROMPTS_PER_SECOND", file.prompts_per_second.map(|n| n.to_string())) {
            Some(text) => count("limits.prompts_per_second", &text, 1)?,
            None => DEFAULT_PROMPTS_PER_SECOND,
        };
    Ok((Limits { sessions_per_user, on_user_limit, running_sandboxes }, prompts_per_second))
}

/// What `[sandbox]` decides.
struct SandboxSettings {
    driver: SandboxDriverKind,
    isolation: Isolation,
    network: Network,
    resources: Resources,
    image: String,
    egress_allow: Vec<berth_sandbox::egress::IpNet>,
}

fn sandbox(pick: Pick<'_>, file: SandboxFile, tools: HostTools) -> Result<SandboxSettings, ConfigError> {
    let sandbox_driver = match pick("BERTH_SANDBOX", file.driver).as_deref() {
        None | Some("local") => SandboxDriverKind::Local,
        Some("docker") => SandboxDriverKind::Docker,
        Some(other) => {
            return Err(invalid("sandbox.driver", other, "expected local or docker"));
        }
    };
    let isolation = match pick("BERTH_ISOLATION", file.isolation).as_deref() {
        None if tools.bwrap => Isolation::Bwrap,
        None | Some("none") => Isolation::None,
        Some("bwrap") => Isolation::Bwrap,
        Some(other) => {
            return Err(invalid("sandbox.isolation", other, "expected bwrap or none"));
        }
    };
    let network = match pick("BERTH_SANDBOX_NETWORK", file.network) {
        Some(text) => Network::parse(&text)
            .ok_or_else(|| invalid("sandbox.network", &text, "expected host, isolated or outbound"))?,
        None if tools.slirp4netns || sandbox_driver == SandboxDriverKind::Docker => Network::Outbound,
        None => Network::Host,
    };
    let unlimited = |text: &str| matches!(text, "none" | "unlimited");
    let memory_bytes = match pick("BERTH_SANDBOX_MEMORY", file.memory) {
        Some(text) if unlimited(&text) => None,
        Some(text) => {
            Some(berth_sandbox::settings::parse_size(&text).filter(|&bytes| bytes >= 16 << 20).ok_or_else(
                || {
                    invalid(
                        "sandbox.memory",
                        &text,
                        "expected a size of at least 16m such as 512m or 4g, or none",
                    )
                },
            )?)
        }
        None => DEFAULT_RESOURCES.memory_bytes,
    };
    let pids = match pick("BERTH_SANDBOX_PIDS", file.pids) {
        Some(text) if unlimited(&text) => None,
        Some(text) => Some(count("sandbox.pids", &text, 8)?),
        None => DEFAULT_RESOURCES.pids,
    };
    let cpus = match pick("BERTH_SANDBOX_CPUS", file.cpus) {
        Some(text) if unlimited(&text) => None,
        Some(text) => Some(
            text.parse::<f64>()
                .ok()
                .filter(|cpus| cpus.is_finite() && (0.01..=1024.0).contains(cpus))
                .ok_or_else(|| {
                    invalid("sandbox.cpus", &text, "expected a number of cores such as 1 or 0.5, or none")
                })?,
        ),
        None => DEFAULT_RESOURCES.cpus,
    };
    let image = pick("BERTH_SANDBOX_IMAGE", file.image).unwrap_or_else(|| DEFAULT_IMAGE.to_owned());
    if image.len() > 255
        || image.starts_with('-')
        || image.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            "sandbox.image",
            &image,
            "expected an image reference such as debian:bookworm-slim",
        ));
    }
    let egress_allow = match pick("BERTH_EGRESS_ALLOW", file.egress_allow) {
        Some(text) => berth_sandbox::egress::parse_allow_list(&text)
            .map_err(|reason| invalid("sandbox.egress_allow", &text, reason))?,
        None => Vec::new(),
    };
    Ok(SandboxSettings {
        driver: sandbox_driver,
        isolation,
        network,
        resources: Resources { memory_bytes, pids, cpus },
        image,
        egress_allow,
    })
}

/// `[preview]`: the ports allowed, where previews listen, and their hosts.
fn preview(
    pick: Pick<'_>,
    file: PreviewFile,
    listen: SocketAddr,
) -> Result<(PortAllowList, Option<SocketAddr>, Option<PreviewHosts>), ConfigError> {
    let preview_ports = match pick("BERTH_PREVIEW_PORTS", file.ports) {
        Some(text) => {
            PortAllowList::parse(&text).map_err(|reason| invalid("preview.ports", &text, reason))?
        }
        None => PortAllowList::default(),
    };
    let preview_listen = match pick("BERTH_PREVIEW_LISTEN", file.listen) {
        Some(text) if text == "off" => None,
        Some(text) => Some(text.parse().map_err(|_| {
            invalid("preview.listen", &text, "expected an address and port such as 127.0.0.1:7071, or off")
        })?),
        None => Some(default_preview_listen(listen)),
    };
    let preview_url = pick("BERTH_PREVIEW_URL", file.url)
        .map(|url| PreviewHosts::wildcard(&url).map_err(|reason| invalid("preview.url", &url, reason)))
        .transpose()?;
    Ok((preview_ports, preview_listen, preview_url))
}

/// What `[agent]` decides.
struct AgentSettings {
    command: Option<String>,
    resume_context: ResumeContext,
    turn_timeout: Duration,
    pass_env: Vec<String>,
}

fn agent(pick: Pick<'_>, file: AgentFile) -> Result<AgentSettings, ConfigError> {
    let agent_command = pick("BERTH_AGENT", file.command);
    if let Some(command) = &agent_command {
        berth_core::validate::agent_command(command)
            .map_err(|error| invalid("agent.command", command, error.reason))?;
    }
    let resume_context = match pick("BERTH_RESUME_CONTEXT", file.resume_context).as_deref() {
        // The manual's default: a returning user gets a fresh agent.
        None | Some("never") => ResumeContext::Never,
        Some("auto") => ResumeContext::Auto,
        Some(other) => {
            return Err(invalid("agent.resume_context", other, "expected auto or never"));
        }
    };
    let turn_timeout = match pick("BERTH_TURN_TIMEOUT", file.turn_timeout) {
        Some(text) => duration("agent.turn_timeout", &text)?,
        None => DEFAULT_TURN_TIMEOUT,
    };
    let mut pass_env = Vec::new();
    if let Some(text) = pick("BERTH_AGENT_PASS_ENV", file.pass_env) {
        for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            berth_core::validate::secret_name(name)
                .map_err(|error| invalid("agent.pass_env", name, error.reason))?;
            pass_env.push(name.to_owned());
        }
    }
    Ok(AgentSettings { command: agent_command, resume_context, turn_timeout, pass_env })
}

fn public_url(configured: Option<String>, listen_text: &str) -> Result<String, ConfigError> {
    let public_url = configured.unwrap_or_else(|| format!("http://{listen_text}"));
    let public_url = public_url.trim_end_matches('/').to_owned();
    if !(public_url.starts_with("http://") || public_url.starts_with("https://"))
        || public_url.contains(['?', '#'])
    {
        return Err(invalid(
            "public_url",
            &public_url,
            "expected an http:// or https:// address without query",
        ));
    }
    Ok(public_url)
}

/// `[auth.oidc]`: single sign-on, when an issuer is named.
fn oidc(pick: Pick<'_>, oidc_file: OidcFile) -> Result<Option<OidcSettings>, ConfigError> {
    let oidc = match pick("BERTH_OIDC_ISSUER", oidc_file.issuer) {
        Some(issuer) => {
            let client_id = pick("BERTH_OIDC_CLIENT_ID", oidc_file.client_id).ok_or_else(|| {
                invalid("auth.oidc.client_id", "", "an OpenID Connect issuer needs a client id")
            })?;
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                return Err(invalid("auth.oidc.issuer", &issuer, "expected an http:// or https:// URL"));
            }
            let scopes = match pick("BERTH_OIDC_SCOPES", oidc_file.scopes) {
                Some(text) => list(Some(text)),
                None => ["openid", "profile", "email"].map(str::to_owned).to_vec(),
            };
            Some(OidcSettings {
                issuer,
                client_id,
                client_secret: pick("BERTH_OIDC_CLIENT_SECRET", oidc_file.client_secret),
                display_name: pick("BERTH_OIDC_DISPLAY_NAME", oidc_file.display_name)
                    .unwrap_or_else(|| "Single sign-on".to_owned()),
                scopes,
                username_claim: pick("BERTH_OIDC_USERNAME_CLAIM", oidc_file.username_claim)
                    .unwrap_or_else(|| "preferred_username".to_owned()),
                groups_claim: pick("BERTH_OIDC_GROUPS_CLAIM", oidc_file.groups_claim)
                    .unwrap_or_else(|| "groups".to_owned()),
                allowed_groups: list(pick("BERTH_OIDC_ALLOWED_GROUPS", oidc_file.allowed_groups)),
                allowed_email_domains: list(pick(
                    "BERTH_OIDC_ALLOWED_EMAIL_DOMAINS",
                    oidc_file.allowed_email_domains,
                )),
                admin_groups: list(pick("BERTH_OIDC_ADMIN_GROUPS", oidc_file.admin_groups)),
            })
        }
        None => None,
    };
    Ok(oidc)
}

/// The agents this installation offers besides the built-in one: those berth knows
/// (`berth_core::agents`), changed by `[agents.NAME]`, and those `[agents.NAME]` adds.
fn catalogue(
    file: std::collections::BTreeMap<String, AgentEntryFile>,
) -> Result<Vec<AgentEntry>, ConfigError> {
    let mut agents: Vec<AgentEntry> =
        berth_core::agents::KNOWN_AGENTS.iter().map(AgentEntry::known).collect();
    for (name, entry) in file {
        let refuse =
            |value: &str, reason: String| invalid("agents", value, format!("[agents.{name}]: {reason}"));
        berth_core::validate::name(&name).map_err(|error| refuse(&name, error.reason))?;
        if name == crate::BUILTIN_AGENT {
            return Err(refuse(&name, "the built-in agent's name is taken".into()));
        }
        if let Some(command) = &entry.command {
            berth_core::validate::agent_command(command).map_err(|error| refuse(command, error.reason))?;
        }
        let named =
            entry.needs.iter().flatten().chain(entry.settings.iter().flatten()).chain(entry.env.keys());
        for needed in named {
            berth_core::validate::secret_name(needed).map_err(|error| refuse(needed, error.reason))?;
        }
        let at = match agents.iter().position(|agent| agent.name == name) {
            Some(at) => at,
            None if entry.command.is_none() && entry.package.is_none() => {
                return Err(refuse(
                    &name,
                    "a new agent needs a `command` (or a `package` and its `bin`)".into(),
                ));
            }
            None => {
                agents.push(AgentEntry {
                    name: name.clone(),
                    command: None,
                    needs: Vec::new(),
                    description: String::new(),
                    env: Vec::new(),
                    settings: Vec::new(),
                    package: None,
                });
                agents.len() - 1
            }
        };
        let agent = &mut agents[at];
        if entry.command.is_some() {
            agent.command = entry.command;
        }
        if let Some(needs) = entry.needs {
            agent.needs = needs;
        }
        if let Some(description) = entry.description {
            agent.description = description;
        }
        if let Some(settings) = entry.settings {
            agent.settings = settings;
        }
        agent.env.extend(entry.env);
        if entry.package.is_some() || entry.bin.is_some() || entry.args.is_some() {
            let current = agent.package.clone();
            let spec = entry.package.or(current.as_ref().map(|package| package.spec.clone()));
            let bin = entry.bin.or(current.as_ref().map(|package| package.bin.clone()));
            let (Some(spec), Some(bin)) = (spec, bin) else {
                return Err(refuse(&name, "a package needs its `package` (name@version) and `bin`".into()));
            };
            if !is_npm_spec(&spec) {
                return Err(refuse(
                    &spec,
                    "a package is an npm package name with an optional @version".into(),
                ));
            }
            let args = entry.args.or(current.map(|package| package.args)).unwrap_or_default();
            agent.package = Some(AgentPackage { spec, bin, args });
        }
    }
    Ok(agents)
}

/// An npm package spec berth passes to `npm install`: `name` or `@scope/name`, with an
/// optional `@version`, of the characters npm allows — never an option or a path.
fn is_npm_spec(spec: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "@/._-~^<=>*+".contains(c);
    !spec.is_empty() && spec.len() <= 214 && !spec.starts_with(['-', '.', '/']) && spec.chars().all(allowed)
}

/// `[replica]`: the id (by default this host's name and the listen port), the URL other
/// replicas reach it at, the lease.
fn replica(
    id: Option<String>,
    url: Option<String>,
    lease: Option<String>,
    listen: SocketAddr,
) -> Result<ReplicaConfig, ConfigError> {
    let id = match id {
        Some(id) => id,
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let host: String =
                host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')).collect();
            let host = if host.is_empty() { "berth".to_owned() } else { host };
            format!("{}-{}", &host[..host.len().min(48)], listen.port())
        }
    };
    if id.is_empty()
        || id.len() > MAX_REPLICA_ID
        || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(invalid("replica.id", &id, "expected 1-63 letters, digits, '-', '.' or '_'"));
    }
    let url = url.unwrap_or_else(|| format!("http://{listen}"));
    let parsed = url::Url::parse(&url).ok().filter(|parsed| {
        matches!(parsed.scheme(), "http" | "https")
            && parsed.host_str().is_some()
            && parsed.path() == "/"
            && parsed.query().is_none()
            && parsed.username().is_empty()
            && parsed.password().is_none()
    });
    if parsed.is_none() {
        return Err(invalid("replica.url", &url, "expected an origin such as http://10.0.0.2:7070"));
    }
    let lease = match lease {
        Some(text) => duration("replica.lease", &text)?,
        None => DEFAULT_REPLICA_LEASE,
    };
    if lease < MIN_REPLICA_LEASE {
        return Err(invalid("replica.lease", &humantime::format_duration(lease).to_string(), "at least 1s"));
    }
    Ok(ReplicaConfig { id, url: url.trim_end_matches('/').to_owned(), lease })
}

/// `git.local_roots`: absolute directories separated by `:` (empty parts are skipped).
fn local_roots(text: &str) -> Result<Vec<PathBuf>, ConfigError> {
    let key = "git.local_roots";
    text.split(':')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let path = PathBuf::from(part);
            if !path.is_absolute() || path.components().any(|c| c == std::path::Component::ParentDir) {
                return Err(invalid(key, part, "each root must be an absolute path without '..'"));
            }
            Ok(path)
        })
        .collect()
}

/// Previews listen next to the API: the same address, the next port (any free port when
/// the API's is chosen by the system).
fn default_preview_listen(listen: SocketAddr) -> SocketAddr {
    let mut preview = listen;
    preview.set_port(match listen.port() {
        0 | u16::MAX => 0,
        port => port + 1,
    });
    preview
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = Config::load(None, env_of(&[("BERTH_DATA", "/tmp/b")]), HostTools::ALL).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(config.preview_listen.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:7071"));
        assert_eq!(config.preview_url, None);
        assert_eq!(config.database_url, "sqlite:///tmp/b/berth.db");
        assert_eq!(
            config.limits,
            Limits { sessions_per_user: 1, on_user_limit: OnUserLimit::Replace, running_sandboxes: 64 }
        );
        assert_eq!(config.reconnect_grace, Duration::from_secs(300));
        assert_eq!(config.sandbox_driver, SandboxDriverKind::Local);
        assert_eq!(config.isolation, Isolation::Bwrap);
        assert_eq!(config.agent_command, None);
        assert_eq!(config.resume_context, ResumeContext::Never, "a fresh agent by default");
        assert_eq!(config.turn_timeout, Duration::from_secs(30 * 60));
        assert!(config.git_local_roots.is_empty(), "members clone no local path by default");
        assert_eq!(config.cookie_ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(config.prompts_per_second, 5);
        assert!(config.egress_allow.is_empty(), "outbound sandboxes reach no private range by default");
        assert_eq!(config.network, Network::Outbound);
        assert_eq!(config.resources, DEFAULT_RESOURCES);
        assert_eq!(config.image, DEFAULT_IMAGE);
        assert!(config.preview_ports.allows(1) && config.preview_ports.allows(65535));
        let without_bwrap = Config::load(None, env_of(&[("BERTH_DATA", "/tmp/b")]), HostTools::NONE).unwrap();
        assert_eq!(without_bwrap.isolation, Isolation::None);
        assert_eq!(without_bwrap.network, Network::Host, "no slirp4netns: the host's network");
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(
            &file,
            r#"
listen = "127.0.0.1:9000"
data_dir = "/srv/berth"
[limits]
sessions_per_user = 3
on_user_limit = "reject"
running_sandboxes = 10
[session]
reconnect_grace = "90s"
[sandbox]
driver = "docker"
isolation = "none"
[agent]
command = "my-agent --acp"
resume_context = "auto"
"#,
        )
        .unwrap();
        let from_file = Config::load(Some(&file), env_of(&[]), HostTools::ALL).unwrap();
        assert_eq!(from_file.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(from_file.data_dir, PathBuf::from("/srv/berth"));
        assert_eq!(from_file.limits.sessions_per_user, 3);
        assert_eq!(from_file.limits.on_user_limit, OnUserLimit::Reject);
        assert_eq!(from_file.limits.running_sandboxes, 10);
        assert_eq!(from_file.reconnect_grace, Duration::from_secs(90));
        assert_eq!(from_file.sandbox_driver, SandboxDriverKind::Docker);
        assert_eq!(from_file.isolation, Isolation::None);
        assert_eq!(from_file.agent_command.as_deref(), Some("my-agent --acp"));
        assert_eq!(from_file.resume_context, ResumeContext::Auto);

        let overridden = Config::load(
            Some(&file),
            env_of(&[
                ("BERTH_LISTEN", "127.0.0.1:0"),
                ("BERTH_DATA", "/tmp/other"),
                ("BERTH_DATABASE_URL", "sqlite:///tmp/x.db"),
                ("BERTH_ADMIN_TOKEN", "0123456789abcdef0123"),
                ("BERTH_SESSIONS_PER_USER", "2"),
                ("BERTH_ON_USER_LIMIT", "replace"),
                ("BERTH_RUNNING_SANDBOXES", "5"),
                ("BERTH_RECONNECT_GRACE", "5m"),
                ("BERTH_SANDBOX", "local"),
                ("BERTH_ISOLATION", "bwrap"),
                ("BERTH_AGENT", "other"),
                ("BERTH_RESUME_CONTEXT", "auto"),
                ("BERTH_SANDBOX_NETWORK", "isolated"),
                ("BERTH_SANDBOX_MEMORY", "512m"),
                ("BERTH_SANDBOX_PIDS", "64"),
                ("BERTH_SANDBOX_CPUS", "0.5"),
                ("BERTH_SANDBOX_IMAGE", "berth-test:1"),
                ("BERTH_PREVIEW_PORTS", "3000,8000-8100"),
            ]),
            HostTools::NONE,
        )
        .unwrap();
        assert_eq!(overridden.listen.to_string(), "127.0.0.1:0");
        assert_eq!(overridden.data_dir, PathBuf::from("/tmp/other"));
        assert_eq!(overridden.database_url, "sqlite:///tmp/x.db");
        assert_eq!(overridden.admin_token.as_deref(), Some("0123456789abcdef0123"));
        assert_eq!(
            overridden.limits,
            Limits { sessions_per_user: 2, on_user_limit: OnUserLimit::Replace, running_sandboxes: 5 }
        );
        assert_eq!(overridden.reconnect_grace, Duration::from_secs(300));
        assert_eq!(overridden.sandbox_driver, SandboxDriverKind::Local);
        assert_eq!(overridden.isolation, Isolation::Bwrap);
        assert_eq!(overridden.agent_command.as_deref(), Some("other"));
        assert_eq!(overridden.resume_context, ResumeContext::Auto);
        assert_eq!(overridden.network, Network::Isolated);
        assert_eq!(
            overridden.resources,
            Resources { memory_bytes: Some(512 << 20), pids: Some(64), cpus: Some(0.5) }
        );
        assert_eq!(overridden.image, "berth-test:1");
        assert!(overridden.preview_ports.allows(8050) && !overridden.preview_ports.allows(22));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (variable, value, key) in [
            ("BERTH_LISTEN", "nowhere", "listen"),
            ("BERTH_SESSIONS_PER_USER", "0", "limits.sessions_per_user"),
            ("BERTH_ON_USER_LIMIT", "evict", "limits.on_user_limit"),
            ("BERTH_RUNNING_SANDBOXES", "-1", "limits.running_sandboxes"),
            ("BERTH_RECONNECT_GRACE", "soon", "session.reconnect_grace"),
            ("BERTH_SANDBOX", "kubernetes", "sandbox.driver"),
            ("BERTH_ISOLATION", "chroot", "sandbox.isolation"),
            ("BERTH_SANDBOX_NETWORK", "bridge", "sandbox.network"),
            ("BERTH_SANDBOX_MEMORY", "lots", "sandbox.memory"),
            ("BERTH_SANDBOX_MEMORY", "1k", "sandbox.memory"),
            ("BERTH_SANDBOX_PIDS", "3", "sandbox.pids"),
            ("BERTH_SANDBOX_CPUS", "-2", "sandbox.cpus"),
            ("BERTH_SANDBOX_CPUS", "NaN", "sandbox.cpus"),
            ("BERTH_SANDBOX_IMAGE", "--privileged", "sandbox.image"),
            ("BERTH_PREVIEW_PORTS", "0-80", "preview.ports"),
            ("BERTH_PREVIEW_LISTEN", "7071", "preview.listen"),
            ("BERTH_PREVIEW_URL", "javascript:alert(1)", "preview.url"),
            ("BERTH_PREVIEW_URL", "https://preview.example.com", "preview.url"),
            ("BERTH_RESUME_CONTEXT", "maybe", "agent.resume_context"),
            ("BERTH_TURN_TIMEOUT", "forever", "agent.turn_timeout"),
            ("BERTH_ADMIN_TOKEN", "short", "admin_token"),
        ] {
            let error =
                Config::load(None, env_of(&[("BERTH_DATA", "/d"), (variable, value)]), HostTools::ALL)
                    .unwrap_err();
            assert!(
                matches!(&error, ConfigError::Invalid { key: k, .. } if *k == key),
                "{variable}: {error}"
            );
        }
    }

    #[test]
    fn egress_allow_is_a_list_of_cidrs() {
        let env = env_of(&[("BERTH_DATA", "/tmp/b"), ("BERTH_EGRESS_ALLOW", "10.1.0.0/16,fd00::1")]);
        let config = Config::load(None, env, HostTools::NONE).unwrap();
        assert_eq!(config.egress_allow.len(), 2);
        let pairs = [("BERTH_DATA", "/tmp/b"), ("BERTH_EGRESS_ALLOW", "10.1.0.0/99")];
        let error = Config::load(None, env_of(&pairs), HostTools::NONE).unwrap_err().to_string();
        assert!(error.contains("sandbox.egress_allow"), "{error}");
    }

    #[test]
    fn local_roots_are_absolute_directories_separated_by_colons() {
        let env = env_of(&[("BERTH_DATA", "/tmp/b"), ("BERTH_GIT_LOCAL_ROOTS", "/srv/repos::/home/git")]);
        let config = Config::load(None, env, HostTools::NONE).unwrap();
        assert_eq!(config.git_local_roots, [PathBuf::from("/srv/repos"), PathBuf::from("/home/git")]);
        for bad in ["relative", "/srv/../etc"] {
            let pairs = [("BERTH_DATA", "/tmp/b"), ("BERTH_GIT_LOCAL_ROOTS", bad)];
            let error = Config::load(None, env_of(&pairs), HostTools::NONE).unwrap_err().to_string();
            assert!(error.contains("git.local_roots"), "{error}");
        }
    }

    #[test]
    fn single_sign_on_is_set_by_file_or_variables_and_its_secret_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(
            &file,
            "public_url = \"https://berth.example.com/\"\n[auth.oidc]\nissuer = \"https://id.example.com/realms/x\"\n\
             client_id = \"berth\"\nclient_secret = \"s3cret-of-the-client\"\nadmin_groups = \"ops, platform\"\n",
        )
        .unwrap();
        let env = env_of(&[
            ("BERTH_DATA", "/tmp/b"),
            ("BERTH_OIDC_ALLOWED_GROUPS", "dev ops"),
            ("BERTH_OIDC_DISPLAY_NAME", "Keycloak"),
        ]);
        let config = Config::load(Some(&file), env, HostTools::NONE).unwrap();
        assert_eq!(config.public_url, "https://berth.example.com");
        let oidc = config.oidc.clone().unwrap();
        assert_eq!((oidc.client_id.as_str(), oidc.display_name.as_str()), ("berth", "Keycloak"));
        assert_eq!(oidc.scopes, ["openid", "profile", "email"]);
        assert_eq!(
            (oidc.allowed_groups, oidc.admin_groups),
            (vec!["dev".to_owned(), "ops".to_owned()], vec!["ops".to_owned(), "platform".to_owned()])
        );
        assert!(!format!("{config:?}").contains("s3cret"), "the client secret is printed");
        let without_client = [("BERTH_DATA", "/tmp/b"), ("BERTH_OIDC_ISSUER", "https://id.example.com")];
        let error = Config::load(None, env_of(&without_client), HostTools::NONE).unwrap_err().to_string();
        assert!(error.contains("auth.oidc.client_id"), "{error}");
        assert_eq!(
            Config::load(None, env_of(&[("BERTH_DATA", "/tmp/b")]), HostTools::NONE).unwrap().oidc,
            None
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, "[limits]\nsesions_per_user = 2\n").unwrap();
        let error = Config::load(Some(&file), env_of(&[]), HostTools::ALL).unwrap_err();
        assert!(error.to_string().contains("sesions_per_user"), "{error}");
    }

    #[test]
    fn the_known_agents_are_offered_and_a_file_changes_any_field_or_adds_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        let load = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Config::load(Some(&file), env_of(&[]), HostTools::ALL)
        };
        let plain = load("").unwrap();
        let names: Vec<&str> = plain.agents.iter().map(|agent| agent.name.as_str()).collect();
        assert_eq!(names, ["claude", "codex", "gemini"]);
        let claude = plain.agent("claude").unwrap();
        assert_eq!(claude.needs, ["ANTHROPIC_API_KEY"]);
        assert_eq!(claude.package.as_ref().unwrap().spec, "@agentclientprotocol/claude-agent-acp@0.101.0");

        let changed = load(
            "[agents.claude]\nenv = { ANTHROPIC_BASE_URL = \"https://gateway.example\" }\n\
             [agents.gemini]\ncommand = \"exec /opt/gemini --acp\"\n\
             [agents.mine]\ncommand = \"exec my-agent\"\nneeds = [\"MY_KEY\"]\n",
        )
        .unwrap();
        let claude = changed.agent("claude").unwrap();
        assert_eq!(claude.env, [("ANTHROPIC_BASE_URL".to_owned(), "https://gateway.example".to_owned())]);
        assert_eq!(claude.needs, ["ANTHROPIC_API_KEY"], "the rest stays as berth knows it");
        assert_eq!(changed.agent("gemini").unwrap().command.as_deref(), Some("exec /opt/gemini --acp"));
        assert_eq!(
            changed.agent("gemini").unwrap().command_line(dir.path()).as_deref(),
            Some("exec /opt/gemini --acp")
        );
        assert_eq!(changed.agent("mine").unwrap().needs, ["MY_KEY"]);

        for (text, refused) in [
            ("[agents.nameless]\ndescription = \"no command\"\n", "needs a `command`"),
            ("[agents.x]\npackage = \"--registry=http://evil\"\nbin = \"x\"\n", "npm package"),
            ("[agents.builtin]\ncommand = \"x\"\n", "taken"),
            ("[agents.claude]\nneeds = [\"lower case\"]\n", "lower case"),
        ] {
            let error = load(text).unwrap_err().to_string();
            assert!(error.contains(refused), "{text}: {error}");
        }
    }

    #[test]
    fn an_agent_installed_by_berth_starts_from_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::for_data_dir(dir.path());
        let claude = config.agent("claude").unwrap();
        let program = claude.install_dir(&config.agents_dir()).join("node_modules/.bin/claude-agent-acp");
        std::fs::create_dir_all(program.parent().unwrap()).unwrap();
        std::fs::write(&program, "#!/usr/bin/env node\n").unwrap();
        assert_eq!(claude.command_line(&config.agents_dir()), Some(format!("exec '{}'", program.display())));
    }
}
