//! `berth user add`: creates a user straight in the data directory, for a first login or
//! when no administrator can be reached.

use crate::serve::load_config;
use anyhow::Context;
use berth_core::Role;
use berth_engine::Engine;
use clap::Subcommand;
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
}

pub async fn run(command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add { name, admin, config } => {
            let config = load_config(config.as_deref())?;
            let listen = config.listen;
            let engine = Engine::open_offline(config).await.context("cannot open berth's data directory")?;
            let first = engine.store().count_users().await? == 0;
            let role = if admin || first { Role::Admin } else { Role::Member };
            let created = engine.create_user(&name, role).await;
            engine.shutdown().await;
            let (user, token) = created?;
            println!("Created {} '{}' ({}).", role.as_str(), user.name, user.id);
            println!("Token: {}", token.0);
            println!("Log in at: http://{listen}/login?token={}", token.0);
            Ok(ExitCode::SUCCESS)
        }
    }
}
