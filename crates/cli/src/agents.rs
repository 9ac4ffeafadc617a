//! `berth agents`: the agents this installation offers (berth's own, Claude Code, Codex,
//! Gemini CLI and `[agents.NAME]`), whether each can start here, what it needs; and
//! `berth agents install NAME`: its npm package installed into the data directory's
//! `agents/NAME`, which sandboxes see read-only. Works on the configuration and the data
//! directory: no server needed (a running one sees the install at the next open).

use crate::serve::load_config;
use anyhow::Context;
use berth_engine::{AgentEntry, Config};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// Lists the agents offered, whether each is installed, and the secrets it needs.
    List {
        /// A TOML configuration file (for data_dir and `[agents.NAME]`).
        #[arg(long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Installs an agent's npm package (needs `npm`; the package is fetched once, now).
    Install {
        /// `claude`, `codex`, `gemini`, or an `[agents.NAME]` with a `package`.
        name: String,
        #[arg(long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
    },
}

pub async fn run(command: Option<AgentsCommand>) -> anyhow::Result<ExitCode> {
    match command.unwrap_or(AgentsCommand::List { config: None }) {
        AgentsCommand::List { config } => list(&load_config(config.as_deref())?),
        AgentsCommand::Install { name, config } => install(&load_config(config.as_deref())?, &name).await,
    }
}

fn list(config: &Config) -> anyhow::Result<ExitCode> {
    let agents_dir = config.agents_dir();
    println!("{:<10} {:<10} {:<22} DESCRIPTION", "NAME", "INSTALLED", "NEEDS");
    println!("{:<10} {:<10} {:<22} berth's own agent: runs the commands you approve", "builtin", "yes", "-");
    for agent in &config.agents {
        let installed = if agent.command_line(&agents_dir).is_some() { "yes" } else { "no" };
        let needs = if agent.needs.is_empty() { "-".to_owned() } else { agent.needs.join(",") };
        println!("{:<10} {:<10} {:<22} {}", agent.name, installed, needs, agent.description);
    }
    println!();
    println!("Install one with `berth agents install NAME`; each person adds the key it needs");
    println!("(`berth secret set NAME` or Account → Secrets) and picks it for a workspace.");
    Ok(ExitCode::SUCCESS)
}

async fn install(config: &Config, name: &str) -> anyhow::Result<ExitCode> {
    let Some(agent) = config.agent(name) else {
        let known: Vec<&str> = config.agents.iter().map(|agent| agent.name.as_str()).collect();
        anyhow::bail!("no agent '{name}' in this installation's catalogue ({})", known.join(", "));
    };
    let Some(package) = &agent.package else {
        anyhow::bail!(
            "'{name}' has no npm package to install: it runs `{}`",
            agent.command.clone().unwrap_or_default()
        );
    };
    anyhow::ensure!(
        berth_sandbox::installed("npm"),
        "npm is not installed: install Node.js and npm (Debian: apt-get install nodejs npm), then run this again"
    );
    let dir = agent.install_dir(&config.agents_dir());
    if installed_version(&dir, &package.spec)
        .is_some_and(|version| package.spec.ends_with(&format!("@{version}")))
    {
        println!("{} is installed already in {}.", package.spec, dir.display());
        return report_installed(agent, config);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
    println!("Installing {} into {} …", package.spec, dir.display());
    // The spec was checked when the configuration was read: a package name, never an
    // option or a path.
    let status = tokio::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--omit=dev", "--prefix"])
        .arg(&dir)
        .arg(&package.spec)
        .status()
        .await
        .context("cannot run npm")?;
    anyhow::ensure!(status.success(), "npm install {} failed ({status})", package.spec);
    report_installed(agent, config)
}

/// The version of the package of `spec` (`name@version`) installed in `dir`, if any.
fn installed_version(dir: &std::path::Path, spec: &str) -> Option<String> {
    // A scoped name starts with '@': the version's '@' is the last one after it.
    let name = match spec[1..].rfind('@') {
        Some(at) => &spec[..at + 1],
        None => spec,
    };
    let manifest = std::fs::read_to_string(dir.join("node_modules").join(name).join("package.json")).ok()?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest).ok()?;
    manifest["version"].as_str().map(str::to_owned)
}

fn report_installed(agent: &AgentEntry, config: &Config) -> anyhow::Result<ExitCode> {
    match agent.command_line(&config.agents_dir()) {
        Some(command) => {
            println!("Installed. Workspaces with agent '{}' start it as: {command}", agent.name);
            if !agent.needs.is_empty() {
                println!(
                    "Each person adds {} (Account → Secrets, or `berth secret set`).",
                    agent.needs.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!("npm finished, but the program '{}' is not there", agent.name),
    }
}
