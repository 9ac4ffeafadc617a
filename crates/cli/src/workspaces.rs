//! `berth workspace create|list|show|delete`.

use crate::ServerArgs;
use crate::client::{Client, client, refused};
use anyhow::{Context, anyhow};
use berth_server::wire::{DeletedBody, GitStatusBody, WorkspaceBody, WorkspaceList};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum WorkspaceCommand {
    /// Creates a workspace from a git URL or a local repository path and shows the clone.
    Create {
        /// https://, ssh://, git:// URL, user@host:path, or an absolute path.
        repo: String,
        #[arg(long)]
        branch: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// An agent command for this workspace instead of the installation's.
        #[arg(long)]
        agent: Option<String>,
        /// Returns at once instead of following the clone.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Lists your workspaces.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Shows a workspace (by id or name) with its git status.
    Show {
        workspace: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Deletes a workspace and its files. The remote repository is never touched.
    Delete {
        workspace: String,
        /// Deletes even with uncommitted changes or unpushed commits.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn run(command: WorkspaceCommand) -> anyhow::Result<ExitCode> {
    match command {
        WorkspaceCommand::Create { repo, branch, name, agent, no_wait, server } => {
            let client = client(&server)?;
            let body = json!({ "repo": repo, "branch": branch, "name": name, "agent": agent });
            let created: WorkspaceBody = client.json(Method::POST, "/api/workspaces", Some(&body)).await?;
            println!("Creating workspace {} ({}) from {}", created.name, created.id, created.repo);
            if no_wait {
                return Ok(ExitCode::SUCCESS);
            }
            follow_initialisation(&client, &created).await
        }
        WorkspaceCommand::List { json, server } => {
            let client = client(&server)?;
            let list: WorkspaceList = client.json(Method::GET, "/api/workspaces", None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_table(&list.workspaces);
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::Show { workspace, json, server } => {
            let client = client(&server)?;
            let workspace = resolve(&client, &workspace).await?;
            let git = match client
                .json::<GitStatusBody>(Method::GET, &format!("/api/workspaces/{}/git", workspace.id), None)
                .await
            {
                Ok(git) => Some(git),
                Err(error)
                    if refused(&error).is_some_and(|refused| refused.error.code == "workspace_not_ready") =>
                {
                    None
                }
                Err(error) => return Err(error.into()),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&json!({ "workspace": workspace, "git": git }))?);
            } else {
                print_workspace(&workspace, git.as_ref());
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::Delete { workspace, force, server } => {
            let client = client(&server)?;
            let workspace = resolve(&client, &workspace).await?;
            let path = format!("/api/workspaces/{}?force={force}", workspace.id);
            match client.json::<DeletedBody>(Method::DELETE, &path, None).await {
                Ok(deleted) => {
                    println!("Deleted workspace {} ({})", workspace.name, deleted.deleted);
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => match refused(&error) {
                    Some(refused) if refused.error.code == "unsaved_work" => {
                        eprintln!("Not deleted: {}", refused.error.message);
                        if let Some(git) = refused
                            .error
                            .extra
                            .get("git")
                            .and_then(|g| serde_json::from_value::<GitStatusBody>(g.clone()).ok())
                        {
                            print_git(&git);
                        }
                        eprintln!("The remote repository is never touched. Use --force to delete anyway.");
                        Ok(ExitCode::FAILURE)
                    }
                    _ => Err(error.into()),
                },
            }
        }
    }
}

/// Finds a workspace by id or by name among the caller's.
pub async fn resolve(client: &Client, id_or_name: &str) -> anyhow::Result<WorkspaceBody> {
    let list: WorkspaceList = client.json(Method::GET, "/api/workspaces", None).await?;
    list.workspaces
        .into_iter()
        .find(|w| w.id == id_or_name || w.name == id_or_name)
        .ok_or_else(|| anyhow!("no workspace '{id_or_name}' among yours (see `berth workspace list`)"))
}

/// Shows the clone's progress (git's own progress lines) until the workspace is ready or
/// failed.
async fn follow_initialisation(client: &Client, created: &WorkspaceBody) -> anyhow::Result<ExitCode> {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(ProgressStyle::with_template("{spinner} {msg}").context("progress template")?);
    spinner.enable_steady_tick(Duration::from_millis(120));
    let workspace_path = format!("/api/workspaces/{}", created.id);
    let log_path = format!("{workspace_path}/init-log");
    let workspace = loop {
        let workspace: WorkspaceBody = client.json(Method::GET, &workspace_path, None).await?;
        let log = client.text(&log_path).await?;
        if let Some(line) = log.split(['\n', '\r']).map(str::trim).rfind(|l| !l.is_empty()) {
            spinner.set_message(line.to_owned());
        }
        if workspace.state != "initialising" {
            spinner.finish_and_clear();
            if workspace.state == "error" {
                eprintln!("{}", log.trim_end());
            }
            break workspace;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    match workspace.state.as_str() {
        "error" => {
            eprintln!(
                "Workspace {} failed to initialise: {}",
                workspace.name,
                workspace.error.unwrap_or_default()
            );
            Ok(ExitCode::FAILURE)
        }
        state => {
            println!(
                "Workspace {} is {state} on branch {}",
                workspace.name,
                workspace.branch.as_deref().unwrap_or("(detached)")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_table(workspaces: &[WorkspaceBody]) {
    if workspaces.is_empty() {
        println!("No workspaces yet. Create one with `berth workspace create <repo>`.");
        return;
    }
    let name_width = workspaces.iter().map(|w| w.name.len()).max().unwrap_or(4).max(4);
    println!("{:<24}  {:<name_width$}  {:<12}  {:<16}  REPO", "ID", "NAME", "STATE", "BRANCH");
    for w in workspaces {
        println!(
            "{:<24}  {:<name_width$}  {:<12}  {:<16}  {}",
            w.id,
            w.name,
            w.state,
            w.branch.as_deref().unwrap_or("-"),
            w.repo
        );
    }
}

fn print_workspace(workspace: &WorkspaceBody, git: Option<&GitStatusBody>) {
    println!("{} ({})", workspace.name, workspace.id);
    println!("  state:   {}", workspace.state);
    println!("  repo:    {}", workspace.repo);
    println!("  branch:  {}", workspace.branch.as_deref().unwrap_or("-"));
    println!("  created: {}", workspace.created_at.to_rfc3339());
    if let Some(error) = &workspace.error {
        println!("  error:   {error}");
    }
    if let Some(git) = git {
        print_git(git);
    }
}

fn print_git(git: &GitStatusBody) {
    println!("  head:    {}", git.head.as_deref().unwrap_or("(no commits)"));
    println!("  clean:   {}", if git.clean { "yes" } else { "no" });
    for path in &git.uncommitted {
        println!("    uncommitted: {path}");
    }
    println!("  unpushed commits: {}", git.unpushed_commits);
}
