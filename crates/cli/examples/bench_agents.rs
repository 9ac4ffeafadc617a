//! Open → agent ready for each real agent installed (`berth agents install`), beside the
//! same agent started bare: its own floor — the process, ACP `initialize` and
//! `session/new`, with the same client berth uses — in one run, alternating, against a
//! loopback stand-in of its provider. Run with `scripts/bench-agents.sh` (a release build).
//!
//! `BERTH_BENCH_AGENTS`: the `agents` directory of a data directory where they are
//! installed (`scripts/bench-agents.sh` installs the three there); an agent not
//! installed is left out.
#![allow(clippy::unwrap_used)] // a benchmark that cannot unwrap has failed

use berth_agent::client::{AgentEvent, WorkspaceRoots};
use berth_engine::Config;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const TOKEN: &str = "berth_bench_agents_admin_token_000000";

/// A real agent to measure: its catalogue name, program, the key it needs, and the
/// settings that point it at its provider's stand-in.
struct Measured {
    name: &'static str,
    program: PathBuf,
    key: (&'static str, &'static str),
    env: Vec<(String, String)>,
    _provider: berth_testkit::ModelStandIn,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).and_then(|text| text.parse().ok()).unwrap_or(5);
    let agents = PathBuf::from(std::env::var("BERTH_BENCH_AGENTS").unwrap_or_default());
    let mut measured = Vec::new();
    for known in berth_core::agents::KNOWN_AGENTS {
        let program = agents.join(known.name).join("node_modules/.bin").join(known.bin);
        if !program.exists() {
            eprintln!("{}: not installed ({} is missing), not measured", known.name, program.display());
            continue;
        }
        let (provider, key, env) = match known.name {
            "claude" => {
                let provider = berth_testkit::ModelStandIn::anthropic().await;
                let env = vec![("ANTHROPIC_BASE_URL".to_owned(), provider.url.clone())];
                (provider, ("ANTHROPIC_API_KEY", "sk-ant-bench"), env)
            }
            "codex" => {
                let provider = berth_testkit::ModelStandIn::openai().await;
                let codex_config = json!({ "model": "stand-in", "model_provider": "stand-in",
                    "model_providers": { "stand-in": { "name": "stand-in",
                        "base_url": format!("{}/v1", provider.url), "env_key": "OPENAI_API_KEY",
                        "wire_api": "responses", "supports_websockets": false } } });
                let env = vec![("CODEX_CONFIG".to_owned(), codex_config.to_string())];
                (provider, ("OPENAI_API_KEY", "sk-bench"), env)
            }
            _ => {
                let provider = berth_testkit::ModelStandIn::gemini().await;
                let env = vec![("GOOGLE_GEMINI_BASE_URL".to_owned(), provider.url.clone())];
                (provider, ("GEMINI_API_KEY", "gm-bench"), env)
            }
        };
        measured.push(Measured { name: known.name, program, key, env, _provider: provider });
    }
    anyhow::ensure!(!measured.is_empty(), "install an agent first (scripts/bench-agents.sh does)");
    let data = tempfile::tempdir()?;
    let source = berth_testkit::SourceRepo::new();

    let mut config = Config::for_data_dir(&data.path().join("berth"));
    config.admin_token = Some(TOKEN.into());
    config.isolation = berth_sandbox::Isolation::None;
    config.network = berth_sandbox::Network::Host;
    for agent in &measured {
        let entry = config.agents.iter_mut().find(|entry| entry.name == agent.name).unwrap();
        let args = berth_core::agents::known(agent.name).map(|known| known.args).unwrap_or_default();
        entry.command = Some(berth_core::agents::command_line(&agent.program.to_string_lossy(), args));
        entry.env.clone_from(&agent.env);
    }
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
    println!(
        "open → agent ready, {rounds} rounds alternating, isolation none, provider stand-ins on loopback:"
    );
    for agent in &measured {
        let (key_name, key) = agent.key;
        call(reqwest::Method::PUT, format!("/api/secrets/{key_name}"), Some(json!({ "value": key }))).await;
        let created = call(
            reqwest::Method::POST,
            "/api/workspaces".into(),
            Some(
                json!({ "repo": source.url(), "name": format!("bench-{}", agent.name), "agent": agent.name }),
            ),
        )
        .await;
        let id = created["id"].as_str().unwrap().to_owned();
        while call(reqwest::Method::GET, format!("/api/workspaces/{id}"), None).await["state"] != "ready" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let checkout = data.path().join("berth/workspaces").join(&id);

        let (mut floor, mut through_berth) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            floor.push(bare(agent, &checkout).await?);
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
                anyhow::ensure!(Instant::now() < deadline, "{} never became ready: {page}", agent.name);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            through_berth.push(started.elapsed());
            call(reqwest::Method::POST, format!("/api/sessions/{session}/close"), None).await;
        }
        let p50 = |samples: &mut Vec<Duration>| {
            samples.sort();
            samples[samples.len() / 2].as_secs_f64() * 1000.0
        };
        let (floor_p50, berth_p50) = (p50(&mut floor), p50(&mut through_berth));
        let name = agent.name;
        println!("  {name:<6} bare (process + initialize + session/new)  p50 {floor_p50:>8.1} ms");
        println!("  {name:<6} through berth (POST …/open → agent_ready)   p50 {berth_p50:>8.1} ms");
        println!("  {name:<6} ratio                                        {:>8.2}×", berth_p50 / floor_p50);
    }
    server.stop().await?;
    Ok(())
}

/// The agent started bare in `checkout` with the same environment berth gives it, until
/// ACP `session/new` answered.
async fn bare(agent: &Measured, checkout: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let args = berth_core::agents::known(agent.name).map(|known| known.args).unwrap_or_default();
    let mut child = tokio::process::Command::new(&agent.program)
        .args(args)
        .current_dir(checkout)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", checkout.join(".berth/home"))
        .envs(agent.env.iter().cloned())
        .env(agent.key.0, agent.key.1)
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
            Some(AgentEvent::Closed { error }) => anyhow::bail!("{} bare closed: {error:?}", agent.name),
            Some(_) => {}
            None => anyhow::bail!("{} bare went away", agent.name),
        }
    }
    let elapsed = started.elapsed();
    let _ = child.kill().await;
    Ok(elapsed)
}
