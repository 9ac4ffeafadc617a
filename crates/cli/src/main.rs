//! The `berth` binary: `berth serve`, offline administration, and client commands that
//! talk to a running server through its HTTP API.

mod account;
mod agent;
mod agents;
mod attach;
mod bench;
mod client;
mod drill;
mod harness;
mod serve;
mod sessions;
mod tokens;
mod users;
mod workspaces;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "berth", version, about = "A self-hosted control plane for agent workspaces")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a client command finds the server.
#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// The server's address.
    #[arg(long, env = "BERTH_URL", default_value = "http://127.0.0.1:7070", global = true)]
    url: String,
    /// Your API token (see the login URL `berth serve` printed, or `berth user add`).
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server (SQLite, local sandboxes and the built-in agent unless configured).
    Serve {
        /// A TOML configuration file; BERTH_* variables win over it.
        #[arg(long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Users: `add` works on the data directory (no server needed); `list`, `disable` and
    /// `enable` ask a running server (administrators).
    #[command(subcommand)]
    User(users::UserCommand),
    /// Your API tokens on a running server: list, create, revoke.
    #[command(subcommand)]
    Token(tokens::TokenCommand),
    /// The agents offered (Claude Code, Codex, Gemini CLI, yours): `berth agents` lists
    /// them, `berth agents install NAME` installs one (no server needed).
    Agents {
        #[command(subcommand)]
        command: Option<agents::AgentsCommand>,
    },
    /// Your git credentials (one per host): add (secret from stdin), list, remove.
    #[command(subcommand)]
    Credential(account::CredentialCommand),
    /// Your secrets, in your agents' environment: set (value from stdin), list, remove.
    #[command(subcommand)]
    Secret(account::SecretCommand),
    /// Prints your SSH public key (made on first use) for `ssh://` repositories.
    SshKey {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Pushes a workspace's (id or name) checked-out branch to its repository.
    Push {
        workspace: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Creates, lists, shows and deletes workspaces on a running server.
    #[command(subcommand, visible_alias = "ws")]
    Workspace(workspaces::WorkspaceCommand),
    /// Opens a workspace (by id or name): powers its sandbox on and starts the agent, or
    /// resumes its live session.
    Open {
        workspace: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Lists your live sessions (`--all`: every session, for administrators).
    Sessions {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Closes one session: powers its sandbox off (files stay).
    Close {
        session: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Closes all your active workspaces in parallel, reporting each.
    CloseAll {
        /// Opens this workspace (id or name) after the cleanup: the launch that was blocked.
        #[arg(long)]
        retry_open: Option<String>,
        /// Every session of the installation (administrators).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Attaches this terminal to a live session: its history, then prompts and answers.
    Attach {
        session: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The built-in agent, run inside a sandbox (speaks to berth over stdin/stdout).
    Agent,
    /// Measures berth's figures on this machine against the targets of the design.
    Bench(bench::BenchArgs),
    /// Reliability drills: crash, faults, load.
    #[command(subcommand)]
    Drill(drill::Drill),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve { config } => serve::run(config.as_deref()).await,
            Command::User(command) => users::run(command).await,
            Command::Token(command) => tokens::run(command).await,
            Command::Agents { command } => agents::run(command).await,
            Command::Credential(command) => account::credential(command).await,
            Command::Secret(command) => account::secret(command).await,
            Command::Push { workspace, server } => account::push(&server, &workspace).await,
            Command::SshKey { server } => account::ssh_key(&server).await,
            Command::Workspace(command) => workspaces::run(command).await,
            Command::Open { workspace, server } => sessions::open(&server, &workspace).await,
            Command::Sessions { all, json, server } => sessions::list(&server, all, json).await,
            Command::Close { session, server } => sessions::close(&server, &session).await,
            Command::CloseAll { retry_open, all, server } => {
                sessions::close_all(&server, retry_open.as_deref(), all).await
            }
            Command::Attach { session, server } => attach::run(&server, &session).await,
            Command::Agent => agent::run().await,
            Command::Bench(args) => bench::run(args).await,
            Command::Drill(drill) => drill::run(drill).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
