//! `berth serve`: load the configuration, start the engine, make sure there is an
//! administrator, print how to log in, and serve until interrupted.

use anyhow::Context;
use berth_engine::config::Isolation;
use berth_engine::{Config, Engine};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

/// Loads the configuration from `file` and the process environment.
pub fn load_config(file: Option<&Path>) -> anyhow::Result<Config> {
    Ok(Config::load(file, |name| std::env::var(name).ok(), bwrap_installed())?)
}

fn bwrap_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("bwrap").is_file()))
}

pub async fn run(config_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = load_config(config_file)?;
    if config.isolation == Isolation::None {
        tracing::warn!(
            "sandbox.isolation = none: agents run as plain processes with this server's rights; \
             use it only for trusted single-user setups (install bubblewrap for isolation)"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr().context("the listener has no address")?;
    let engine = Engine::start(config).await.context("cannot start berth")?;
    let base_url = base_url(address);
    match engine.ensure_admin().await? {
        Some((admin, token)) => {
            println!("Created the administrator '{}'. Log in at:", admin.name);
            println!("    {base_url}/login?token={}", token.0);
        }
        None => println!("Log in with your token, or make one with `berth user add NAME`."),
    }
    println!("berth listening on {base_url}");
    berth_server::run(listener, engine, shutdown_signal()).await.context("the server failed")?;
    Ok(ExitCode::SUCCESS)
}

/// The address a person on this machine types to reach the server.
fn base_url(address: SocketAddr) -> String {
    let host = match address.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}", address.port())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}
