//! `berth token list | create | revoke`: the caller's API tokens on a running server.

use crate::ServerArgs;
use crate::client::client;
use berth_server::wire::{TokenBody, TokenList};
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Lists your tokens: id, name, first characters, when made, last used and expiring.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Makes a token and prints it (shown this once).
    Create {
        /// What the token is for.
        #[arg(long)]
        name: Option<String>,
        /// How long it lives (`90d`, `12h`); by default until revoked.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revokes one of your tokens by id; it stops working at once.
    Revoke {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::List { server } => {
            let list: TokenList = client(&server)?.json(Method::GET, "/api/tokens", None).await?;
            println!(
                "{:<24} {:<20} {:<14} {:<20} {:<20} EXPIRES",
                "ID", "NAME", "PREFIX", "CREATED", "LAST USED"
            );
            let time = |at: Option<chrono::DateTime<chrono::Utc>>| {
                at.map_or("-".to_owned(), |at| at.format("%Y-%m-%d %H:%M").to_string())
            };
            for token in list.tokens {
                println!(
                    "{:<24} {:<20} {:<14} {:<20} {:<20} {}",
                    token.id,
                    token.name,
                    format!("{}…", token.prefix),
                    time(Some(token.created_at)),
                    time(token.last_used_at),
                    time(token.expires_at)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Create { name, expires_in, server } => {
            let body = json!({ "name": name, "expires_in_s": expires_in.map(|lifetime| lifetime.as_secs()) });
            let made: TokenBody = client(&server)?.json(Method::POST, "/api/tokens", Some(&body)).await?;
            println!("Token {} ({}):", made.id, made.name);
            println!("{}", made.token);
            if let Some(expires_at) = made.expires_at {
                println!("It expires at {expires_at}.");
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { id, server } => {
            client(&server)?.send(Method::DELETE, &format!("/api/tokens/{id}"), None).await?;
            println!("Token {id} revoked.");
            Ok(ExitCode::SUCCESS)
        }
    }
}
