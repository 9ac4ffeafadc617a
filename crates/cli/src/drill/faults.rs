//! The fault drill: a driver wrapper fails a chosen fraction of power ons and power
//! offs while several users open, close, close all and leave at random, for a bounded
//! time. After every step the invariants are checked: never more live sessions than
//! the limits allow, no live session without a running sandbox and no running sandbox
//! without a live session, and close-all reports exactly the failures injected.

use super::TOKEN;
use crate::harness::{Api, WAITING_AGENT, make_repository};
use anyhow::{Context, bail};
use berth_engine::Config;
use berth_sandbox::{FaultyDriver, LocalDriver, SandboxDriver};
use rand::Rng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct FaultsArgs {
    /// How long the random traffic runs.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Users sending traffic.
    #[arg(long, default_value_t = 4)]
    users: usize,
    /// Workspaces per user.
    #[arg(long, default_value_t = 3)]
    workspaces: usize,
    /// Fraction of power ons and of power offs that fail.
    #[arg(long, default_value_t = 0.2)]
    fail_rate: f64,
}

const SESSIONS_PER_USER: usize = 2;

pub async fn run(dir: &Path, args: &FaultsArgs) -> anyhow::Result<()> {
    let repo = make_repository(&dir.join("source"))?;
    let data = dir.join("berth");
    let mut config = Config::for_data_dir(&data);
    config.admin_token = Some(TOKEN.into());
    config.agent_command = Some(WAITING_AGENT.into());
    config.limits.sessions_per_user = SESSIONS_PER_USER as u32;
    // Fewer slots than users could fill, so the global limit is reached too.
    let slots = (args.users * SESSIONS_PER_USER).saturating_sub(2).max(1);
    config.limits.running_sandboxes = slots as u32;
    config.resources = berth_sandbox::Resources::default();
    let real = Arc::new(LocalDriver::new(&data.join("sandboxes"), Duration::from_secs(3))?);
    let faulty = Arc::new(FaultyDriver::new(real.clone()));
    let server = berth_server::testing::TestServer::start(config, Some(faulty.clone())).await?;
    let base = server.url.clone();

    let admin = Api::new(base.clone(), TOKEN);
    let mut users = Vec::new();
    for n in 0..args.users {
        let created = admin.post("/api/users", json!({ "name": format!("user-{n}") })).await?;
        let user = Api::new(base.clone(), created["token"].as_str().context("no token")?);
        let mut workspaces = Vec::new();
        for w in 0..args.workspaces {
            workspaces.push(user.ready_workspace(&repo, &format!("w{w}")).await?);
        }
        users.push((user, workspaces));
    }
    faulty.fail_at_random(args.fail_rate, args.fail_rate);

    let mut tally: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut problems = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut rng = rand::rng();
    while Instant::now() < deadline && problems.is_empty() {
        let (user, workspaces) = &users[rng.random_range(0..users.len())];
        let live = live_sessions(user).await?;
        let roll = rng.random_range(0..100);
        let outcome = if roll < 45 {
            let workspace = &workspaces[rng.random_range(0..workspaces.len())];
            let (status, body) =
                user.send(user.http.post(format!("{base}/api/workspaces/{workspace}/open"))).await?;
            outcome_of("open", status, &body)
        } else if roll < 70 && !live.is_empty() {
            let session = &live[rng.random_range(0..live.len())];
            let (status, body) =
                user.send(user.http.post(format!("{base}/api/sessions/{session}/close"))).await?;
            outcome_of("close", status, &body)
        } else if roll < 85 && !live.is_empty() {
            let session = &live[rng.random_range(0..live.len())];
            let (status, body) =
                user.send(user.http.post(format!("{base}/api/sessions/{session}/leave"))).await?;
            outcome_of("leave", status, &body)
        } else {
            let injected_before = faulty.injected_failures().0;
            let (status, body) =
                user.send(user.http.post(format!("{base}/api/sessions/close-all")).json(&json!({}))).await?;
            let injected = faulty.injected_failures().0 - injected_before;
            let failed = body["failed"].as_array().map_or(0, Vec::len) as u64;
            if failed != injected {
                problems
                    .push(format!("close-all reported {failed} failure(s) for {injected} injected: {body}"));
            }
            outcome_of("close-all", status, &body)
        };
        *tally.entry(outcome).or_default() += 1;
        problems.extend(invariants(&admin, &users, real.as_ref(), slots).await?);
    }
    faulty.fail_at_random(0.0, 0.0);
    // Whatever failed to close closes now: the retry finishes the job.
    let finished = admin.post("/api/admin/sessions/close-all", json!({})).await?;
    if !finished["failed"].as_array().is_some_and(Vec::is_empty) {
        problems.push(format!("the final close-all did not finish: {finished}"));
    }
    if !real.running().await?.is_empty() {
        problems.push("sandboxes still run after the final close-all".into());
    }
    server.stop().await?;

    let (power_offs, power_ons) = faulty.injected_failures();
    let steps: u64 = tally.values().sum();
    println!(
        "fault drill: {steps} steps in {:.0} s from {} users; injected {power_ons} power-on and {power_offs} power-off failures",
        args.seconds, args.users
    );
    for (outcome, count) in &tally {
        println!("  {outcome:<28} {count}");
    }
    if problems.is_empty() {
        println!("invariants held after every step");
        Ok(())
    } else {
        for problem in &problems {
            println!("FAILED: {problem}");
        }
        bail!("{} invariant(s) broken", problems.len())
    }
}

/// A short name for what a request ended in, to tally.
fn outcome_of(action: &'static str, status: reqwest::StatusCode, body: &Value) -> &'static str {
    let code = body["error"]["code"].as_str().or_else(|| body["outcome"].as_str()).unwrap_or("ok");
    let known = [
        "session_limit",
        "controllers_busy",
        "sandbox_failed",
        "replace_failed",
        "close_failed",
        "workspace_closed",
        "active_workspaces_closed",
        "cleanup_partially_complete",
        "nothing_to_close",
    ];
    let code = known.iter().find(|known| **known == code).copied().unwrap_or(if status.is_success() {
        "ok"
    } else {
        "other"
    });
    match (action, code) {
        ("open", "ok") => "open: opened",
        ("open", "session_limit") => "open: session_limit",
        ("open", "controllers_busy") => "open: controllers_busy",
        ("open", "sandbox_failed") => "open: sandbox_failed",
        ("open", "replace_failed") => "open: replace_failed",
        ("close", "close_failed") => "close: close_failed",
        ("close", _) => "close: closed",
        ("leave", _) => "leave",
        ("close-all", "cleanup_partially_complete") => "close-all: partial",
        ("close-all", _) => "close-all: done",
        _ => "other",
    }
}

async fn live_sessions(api: &Api) -> anyhow::Result<Vec<String>> {
    let listed = api.get("/api/sessions?state=live").await?;
    Ok(listed["sessions"]
        .as_array()
        .context("no sessions")?
        .iter()
        .filter_map(|session| session["id"].as_str().map(str::to_owned))
        .collect())
}

/// The invariants of the design that must hold between any two steps.
async fn invariants(
    admin: &Api,
    users: &[(Api, Vec<String>)],
    real: &dyn SandboxDriver,
    slots: usize,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let all = admin.get("/api/admin/sessions").await?;
    let live: BTreeSet<String> = all["sessions"]
        .as_array()
        .context("no sessions")?
        .iter()
        .filter_map(|session| session["id"].as_str().map(str::to_owned))
        .collect();
    if live.len() > slots {
        problems.push(format!("{} live sessions for {slots} sandbox slots", live.len()));
    }
    for (user, _) in users {
        let mine = live_sessions(user).await?.len();
        if mine > SESSIONS_PER_USER {
            problems.push(format!("a user has {mine} live sessions, the limit is {SESSIONS_PER_USER}"));
        }
    }
    let running: BTreeSet<String> =
        real.running().await?.into_iter().map(|sandbox| sandbox.session_id.to_string()).collect();
    for session in live.difference(&running) {
        problems.push(format!("session {session} is live without a running sandbox"));
    }
    for session in running.difference(&live) {
        problems.push(format!("a sandbox runs for session {session}, which is not live"));
    }
    Ok(problems)
}
