//! `berth credential add | list | remove`, `berth secret set | list | remove` and
//! `berth push`: what a user keeps for their git and their agents, on a running server.
//! Secret values are read from standard input, so no shell history or process list
//! holds them.

use crate::ServerArgs;
use crate::client::client;
use anyhow::Context;
use berth_server::wire::{CredentialBody, CredentialList, PushBody, SecretList, SshKeyBody};
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use std::io::Read;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum CredentialCommand {
    /// Stores your git credential for a host (`github.com`, `127.0.0.1:8080`), replacing
    /// the one you had for it; the secret (a token or password) is read from stdin.
    Add {
        host: String,
        #[arg(long)]
        username: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Lists your git credentials (never their secrets).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Removes one of your credentials by id.
    Remove {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Sets a secret (an environment variable of your agents from their next start);
    /// the value is read from stdin.
    Set {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Lists your secrets' names (values never come back).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    Remove {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Standard input without its final line break (what `echo` or a terminal adds).
fn value_from_stdin(what: &str) -> anyhow::Result<String> {
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .with_context(|| format!("cannot read the {what} from stdin"))?;
    let value =
        value.strip_suffix('\n').map(|rest| rest.strip_suffix('\r').unwrap_or(rest)).unwrap_or(&value);
    anyhow::ensure!(!value.is_empty(), "no {what} on stdin");
    Ok(value.to_owned())
}

pub async fn credential(command: CredentialCommand) -> anyhow::Result<ExitCode> {
    match command {
        CredentialCommand::Add { host, username, server } => {
            let secret = value_from_stdin("secret")?;
            let body = json!({ "host": host, "username": username, "secret": secret });
            let stored: CredentialBody =
                client(&server)?.json(Method::POST, "/api/credentials", Some(&body)).await?;
            println!("Credential {} for {} ({}) stored.", stored.id, stored.host, stored.username);
        }
        CredentialCommand::List { server } => {
            let list: CredentialList = client(&server)?.json(Method::GET, "/api/credentials", None).await?;
            println!("{:<24} {:<32} {:<24} ADDED", "ID", "HOST", "USERNAME");
            for credential in list.credentials {
                let added = credential.created_at.format("%Y-%m-%d %H:%M");
                println!("{:<24} {:<32} {:<24} {added}", credential.id, credential.host, credential.username);
            }
        }
        CredentialCommand::Remove { id, server } => {
            client(&server)?.send(Method::DELETE, &format!("/api/credentials/{id}"), None).await?;
            println!("Credential {id} removed.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn secret(command: SecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretCommand::Set { name, server } => {
            let value = value_from_stdin("value")?;
            let body = json!({ "value": value });
            client(&server)?.send(Method::PUT, &format!("/api/secrets/{name}"), Some(&body)).await?;
            println!("Secret {name} set; your agents have it from their next start.");
        }
        SecretCommand::List { server } => {
            let list: SecretList = client(&server)?.json(Method::GET, "/api/secrets", None).await?;
            println!("{:<40} UPDATED", "NAME");
            for secret in list.secrets {
                println!("{:<40} {}", secret.name, secret.updated_at.format("%Y-%m-%d %H:%M"));
            }
        }
        SecretCommand::Remove { name, server } => {
            client(&server)?.send(Method::DELETE, &format!("/api/secrets/{name}"), None).await?;
            println!("Secret {name} removed.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Pushes a workspace's checked-out branch to its repository.
pub async fn push(server: &ServerArgs, workspace: &str) -> anyhow::Result<ExitCode> {
    let client = client(server)?;
    let workspace = crate::workspaces::resolve(&client, workspace).await?;
    let pushed: PushBody =
        client.json(Method::POST, &format!("/api/workspaces/{}/push", workspace.id), None).await?;
    println!(
        "Pushed {} ({}) to {}.",
        pushed.branch,
        &pushed.head[..pushed.head.len().min(12)],
        pushed.remote
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints your SSH public key (made on first use), to add to a git host.
pub async fn ssh_key(server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let key: SshKeyBody = client(server)?.json(Method::GET, "/api/me/ssh-key", None).await?;
    println!("{}", key.public_key);
    eprintln!("Fingerprint {}. Add the key to your git host (GitHub: Settings → SSH keys).", key.fingerprint);
    Ok(ExitCode::SUCCESS)
}
