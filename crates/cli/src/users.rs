//! `berth user add`: creates a user straight in the data directory, for a first login or
//! when no administrator can be reached. `berth user list | disable | enable`: an
//! administrator's view of the users of a running server.

use crate::ServerArgs;
use crate::client::client;
use crate::serve::load_config;
use anyhow::Context;
use berth_core::Role;
use berth_engine::Engine;
use berth_server::wire::{AccountBody, AccountList};
use clap::Subcommand;
use reqwest::Method;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Adds a user and prints their token. The first user of an empty store is an admin.
    Add {
        name: String,
        /// Makes the user an administrator.
        #[arg(long)]
        admin: bool,
        /// A TOML configuration file (for data_dir / database_url).
        #[arg(long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Lists every user (administrators).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Disables a user (by name or id): their tokens stop and their live sessions close.
    Disable {
        user: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Enables a disabled user again.
    Enable {
        user: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Sets whether `user` (a name or an id) is disabled.
async fn set_disabled(server: &ServerArgs, user: &str, disabled: bool) -> anyhow::Result<ExitCode> {
    let client = client(server)?;
    let list: AccountList = client.json(Method::GET, "/api/users", None).await?;
    let Some(account) = list.users.iter().find(|account| account.name == user || account.id == user) else {
        anyhow::bail!("no user '{user}'");
    };
    let body = serde_json::json!({ "disabled": disabled });
    let changed: AccountBody =
        client.json(Method::PATCH, &format!("/api/users/{}", account.id), Some(&body)).await?;
    let state =
        if changed.disabled { "disabled: their tokens stop and their sessions close" } else { "enabled" };
    println!("User {} is {state}.", changed.name);
    Ok(ExitCode::SUCCESS)
}

pub async fn run(command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add { name, admin, config } => {
            let config = load_config(config.as_deref())?;
            let listen = config.listen;
            let engine = Engine::open_offline(config).await.context("cannot open berth's data directory")?;
            let first = engine.store().count_users().await? == 0;
            let role = if admin || first { Role::Admin } else { Role::Member };
            let created = engine.accounts.create_user(&name, role).await;
            engine.shutdown().await;
            let (user, token) = created?;
            println!("Created {} '{}' ({}).", role.as_str(), user.name, user.id);
            println!("Token: {}", token.0);
            println!("Log in at: http://{listen}/login?token={}", token.0);
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::List { server } => {
            let list: AccountList = client(&server)?.json(Method::GET, "/api/users", None).await?;
            println!("{:<24} {:<20} {:<8} {:<9} CREATED", "ID", "NAME", "ROLE", "STATE");
            for account in list.users {
                let state = if account.disabled { "disabled" } else { "active" };
                let created = account.created_at.format("%Y-%m-%d %H:%M");
                println!(
                    "{:<24} {:<20} {:<8} {:<9} {created}",
                    account.id,
                    account.name,
                    account.role.as_str(),
                    state
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Disable { user, server } => set_disabled(&server, &user, true).await,
        UserCommand::Enable { user, server } => set_disabled(&server, &user, false).await,
    }
}
