//! `berth open`, `berth sessions`, `berth close`, `berth close-all`: the session commands,
//! printing the outcome words of the design (`Workspace closed`, `Close failed`,
//! `Active workspaces closed`, `Workspace cleanup partially complete`).

use crate::ServerArgs;
use crate::client::{client, refused};
use crate::workspaces::resolve;
use berth_server::wire::{CloseAllBody, CloseBody, OpenBody, SessionBody, SessionList};
use reqwest::Method;
use serde_json::json;
use std::process::ExitCode;

pub async fn open(server: &ServerArgs, workspace: &str) -> anyhow::Result<ExitCode> {
    let client = client(server)?;
    let workspace = resolve(&client, workspace).await?;
    match client.json::<OpenBody>(Method::POST, &format!("/api/workspaces/{}/open", workspace.id), None).await
    {
        Ok(opened) => {
            print_open(&workspace.name, &opened);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => match refused(&error) {
            Some(refused) if refused.error.code == "session_limit" => {
                eprintln!("Concurrent-session limit reached: {}", refused.error.message);
                if let Some(sessions) = refused.error.extra.get("active_sessions").and_then(|v| v.as_array())
                {
                    for session in sessions {
                        eprintln!(
                            "  blocking: {} (workspace {})",
                            session["id"].as_str().unwrap_or("?"),
                            session["workspace_id"].as_str().unwrap_or("?")
                        );
                    }
                }
                eprintln!(
                    "Run `berth close-all --retry-open {}` to close them and open this one.",
                    workspace.name
                );
                Ok(ExitCode::FAILURE)
            }
            Some(refused) if refused.error.code == "controllers_busy" => {
                let seconds = refused.error.extra.get("retry_after_s").and_then(|v| v.as_u64()).unwrap_or(5);
                eprintln!("Controllers are busy: every sandbox slot is taken. Try again in {seconds} s.");
                Ok(ExitCode::FAILURE)
            }
            _ => Err(error.into()),
        },
    }
}

fn print_open(name: &str, opened: &OpenBody) {
    if opened.resumed {
        println!("Session resumed: {} on {name}", opened.session.id);
    } else {
        for replaced in &opened.replaced {
            println!("Powered off session {replaced} to make room (files kept)");
        }
        println!("Opened {name}: session {}", opened.session.id);
    }
    println!("Continue it from a terminal with: {}", opened.session.resume_command);
}

pub async fn list(server: &ServerArgs, all: bool, json_output: bool) -> anyhow::Result<ExitCode> {
    let client = client(server)?;
    let path = if all { "/api/admin/sessions" } else { "/api/sessions?state=live" };
    let list: SessionList = client.json(Method::GET, path, None).await?;
    if json_output {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.sessions.is_empty() {
        println!("No live sessions.");
    } else {
        println!("{:<24}  {:<24}  {:<13}  {:<7}  STARTED", "SESSION", "WORKSPACE", "STATE", "RUNNING");
        for session in &list.sessions {
            print_session_row(session);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_session_row(session: &SessionBody) {
    println!(
        "{:<24}  {:<24}  {:<13}  {:<7}  {}",
        session.id,
        session.workspace_id,
        session.state,
        if session.agent_running { "yes" } else { "no" },
        session.started_at.to_rfc3339()
    );
}

pub async fn close(server: &ServerArgs, session: &str) -> anyhow::Result<ExitCode> {
    let client = client(server)?;
    match client.json::<CloseBody>(Method::POST, &format!("/api/sessions/{session}/close"), None).await {
        Ok(closed) => {
            println!("Workspace closed (session {})", closed.session.id);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => match refused(&error) {
            Some(refused) if refused.error.code == "close_failed" => {
                eprintln!("Close failed: {}", refused.error.message);
                Ok(ExitCode::FAILURE)
            }
            _ => Err(error.into()),
        },
    }
}

pub async fn close_all(server: &ServerArgs, retry_open: Option<&str>, all: bool) -> anyhow::Result<ExitCode> {
    let client = client(server)?;
    let retry_open = match retry_open {
        Some(workspace) => Some(resolve(&client, workspace).await?.id),
        None => None,
    };
    let path = if all { "/api/admin/sessions/close-all" } else { "/api/sessions/close-all" };
    let report: CloseAllBody =
        client.json(Method::POST, path, Some(&json!({ "retry_open": retry_open }))).await?;
    let code = match report.outcome.as_str() {
        "active_workspaces_closed" => {
            println!("Active workspaces closed ({})", report.closed.len());
            ExitCode::SUCCESS
        }
        "nothing_to_close" => {
            println!("No active workspaces to close");
            ExitCode::SUCCESS
        }
        _ => {
            println!(
                "Workspace cleanup partially complete: {} closed, {} failed",
                report.closed.len(),
                report.failed.len()
            );
            for failure in &report.failed {
                println!("  failed: {} ({}): {}", failure.session_id, failure.code, failure.message);
            }
            println!("Run `berth close-all` again to retry the ones that failed.");
            ExitCode::FAILURE
        }
    };
    if let Some(retried) = &report.retried_open {
        match serde_json::from_value::<OpenBody>(retried.clone()) {
            Ok(opened) => print_open("the blocked workspace", &opened),
            Err(_) => {
                eprintln!(
                    "The blocked workspace could not be opened: {}",
                    retried["error"]["message"].as_str().unwrap_or("unknown error")
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(code)
}
