//! Open → agent ready for each real agent installed (`berth agents install`), beside the
//! same agent started bare: its own floor — the process, ACP `initialize` and
//! `session/new`, with the same client berth uses — in one run, alternating, against a
//! loopback stand-in of its provider. Run with `scripts/bench-agents.sh` (a release build).
//!
//! `BERTH_BENCH_AGENTS`: the `agents` directory of a data directory where they are
//! installed (`scripts/bench-agents.sh` installs Claude Code's adapter there).
#![allow(clippy::unwrap_used)] // a benchmark that cannot unwrap has failed

use berth_agent::client::{AgentEvent, WorkspaceRoots};
use berth_engine::Config;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const TOKEN: &str = "berth_bench_agents_admin_token_000000";
const KEY: &str = "sk-ant-bench";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).and_then(|text| text.parse().ok()).unwrap_or(5);
    let agents = PathBuf::from(std::env::var("BERTH_BENCH_AGENTS").unwrap_or_default());
    let claude = agents.join("claude/node_modules/.bin/claude-agent-acp");
    anyhow::ensure!(claude.exists(), "install the agent first: {} is missing", claude.display());
    let provider = berth_testkit::ModelStandIn::anthropic().await;
    let data = tempfile::tempdir()?;
    let source = berth_testkit::SourceRepo::new();

    let mut config = Config::for_data_dir(&data.path().join("berth"));
    config.admin_token = Some(TOKEN.into());
    config.isolation = berth_sandbox::Isolation::None;
    config.network = berth_sandbox::Network::Host;
    let entry = config.agents.iter_mut().find(|agent| agent.name == "claude").unwrap();
    entry.command = Some(berth_core::agents::command_line(&claude.to_string_lossy(), &[]));
    entry.env = vec![("ANTHROPIC_BASE_URL".into(), provider.url.clone())];
    let server = berth_server::testing::TestServer::start(config, None).await?;
    let http = reqwest::Client::new();
    let base = server.url.clone();
    let call = |method: reqwest::Method, path: String, body: Option<serde_json::Value>| {
        let mut request = http.request(method, format!("{base}{path}")).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { request.send().await.unwrap().json::<serde_json::Value>().await.unwrap_or_default() }
    };
    call(reqwest::Method::PUT, "/api/secrets/ANTHROPIC_API_KEY".into(), Some(json!({ "value": KEY }))).await;
    let created = call(
        reqwest::Method::POST,
        "/api/workspaces".into(),
        Some(json!({ "repo": source.url(), "name": "bench", "agent": "claude" })),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    while call(reqwest::Method::GET, format!("/api/workspaces/{id}"), None).await["state"] != "ready" {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let checkout = data.path().join("berth/workspaces").join(&id);

    let (mut floor, mut through_berth) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        floor.push(bare(&claude, &checkout, &provider.url).await?);
        let started = Instant::now();
        let opened = call(reqwest::Method::POST, format!("/api/workspaces/{id}/open"), None).await;
        let session = opened["session"]["id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let page = call(reqwest::Method::GET, format!("/api/sessions/{session}/events"), None).await;
            if page["events"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|event| event["data"]["code"] == "agent_ready")
            {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the agent never became ready: {page}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        through_berth.push(started.elapsed());
        call(reqwest::Method::POST, format!("/api/sessions/{session}/close"), None).await;
    }
    server.stop().await?;

    let p50 = |samples: &mut Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2].as_secs_f64() * 1000.0
    };
    let (floor_p50, berth_p50) = (p50(&mut floor), p50(&mut through_berth));
    println!(
        "open → agent ready, {rounds} rounds alternating, isolation none, provider stand-in on loopback:"
    );
    println!("  claude bare (process + initialize + session/new)  p50 {floor_p50:>8.1} ms");
    println!("  claude through berth (POST …/open → agent_ready)   p50 {berth_p50:>8.1} ms");
    println!("  ratio                                              {:>8.2}×", berth_p50 / floor_p50);
    Ok(())
}

/// The agent started bare in `checkout` with the same environment berth gives it, until
/// ACP `session/new` answered.
async fn bare(program: &Path, checkout: &Path, provider: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .current_dir(checkout)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", checkout.join(".berth/home"))
        .env("ANTHROPIC_BASE_URL", provider)
        .env("ANTHROPIC_API_KEY", KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let (_connection, mut events) =
        berth_agent::client::connect(stdin, stdout, WorkspaceRoots::same(checkout.to_owned()), None);
    loop {
        match tokio::time::timeout(Duration::from_secs(60), events.recv()).await? {
            Some(AgentEvent::Ready { .. }) => break,
            Some(AgentEvent::Closed { error }) => anyhow::bail!("the bare agent closed: {error:?}"),
            Some(_) => {}
            None => anyhow::bail!("the bare agent went away"),
        }
    }
    let elapsed = started.elapsed();
    let _ = child.kill().await;
    Ok(elapsed)
}
