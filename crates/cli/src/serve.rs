//! `berth serve`: load the configuration, start the engine, make sure there is an
//! administrator, print how to log in, and serve until interrupted.

use anyhow::Context;
use berth_engine::config::{HostTools, Isolation, Network};
use berth_engine::{Config, Engine};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

/// Loads the configuration from `file` and the process environment.
pub fn load_config(file: Option<&Path>) -> anyhow::Result<Config> {
    Ok(Config::load(file, |name| std::env::var(name).ok(), HostTools::detect())?)
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
    if config.isolation == Isolation::Bwrap && config.network == Network::Host {
        tracing::warn!(
            "sandbox.network = host: sandboxes share this machine's network (install slirp4netns for \
             a network namespace of their own with outbound access)"
        );
    }
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
    // Port 0 (any free port) is only known once the server binds it; it logs it then.
    let previews_url = match (&config.preview_url, config.preview_listen) {
        (Some(hosts), Some(_)) => Some(hosts.frame_source()),
        (None, Some(address)) if address.port() != 0 => {
            Some(berth_core::preview::PreviewHosts::localhost(address.port()).frame_source())
        }
        _ => None,
    };
    let engine = Engine::start(config).await.context("cannot start berth")?;
    let shutdown = shutdown_signal()?;
    let base_url = base_url(address);
    match engine.accounts.ensure_admin().await? {
        Some((admin, token)) => {
            println!("Created the administrator '{}'. Log in at:", admin.name);
            println!("    {base_url}/login?token={}", token.0);
        }
        None => println!("Log in with your token, or make one with `berth user add NAME`."),
    }
    println!("berth listening on {base_url}");
    if let Some(previews_url) = previews_url {
        println!("live previews on {previews_url} (one host per workspace)");
    }
    berth_server::run(listener, engine, shutdown).await.context("the server failed")?;
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

/// Installs the handlers for Ctrl-C and SIGTERM now (so a signal that arrives as soon as
/// the server says it listens is handled) and returns a future that completes on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    })
}
