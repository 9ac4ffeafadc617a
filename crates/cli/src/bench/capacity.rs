//! Figures of a separate `berth serve` process, so its memory is its own and the load
//! comes from another process: API read throughput with concurrent clients, the
//! server's resident memory with 0, 100 and 1,000 live sessions (agent processes are
//! other processes, so excluded), and how many sessions this machine holds open.

use super::{BENCH_TOKEN, Figure};
use crate::harness::{Api, ServeProcess, WAITING_AGENT, make_workspaces};
use anyhow::bail;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Requests per second of `GET /api/workspaces` from `clients` concurrent keep-alive
/// connections, over `seconds`.
pub async fn read_throughput(api: &Api, clients: usize, seconds: f64) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let url = format!("{}/api/workspaces", api.base);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (done, failed, url, token) =
            (Arc::clone(&done), Arc::clone(&failed), url.clone(), api.token.clone());
        // A client of its own per task: its own connection, as separate browsers have.
        let http = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                match http.get(&url).bearer_auth(&token).send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if failed.load(Ordering::Relaxed) > 0 {
        bail!("{} list requests failed", failed.load(Ordering::Relaxed));
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

/// The capacity figures: throughput, memory per live session, sessions held.
pub async fn measure(data: &Path, repo: &str, hold: usize) -> anyhow::Result<Vec<Figure>> {
    let settings = [
        ("BERTH_ISOLATION", "none"),
        ("BERTH_AGENT", WAITING_AGENT),
        ("BERTH_SANDBOX_MEMORY", "none"),
        ("BERTH_SANDBOX_PIDS", "none"),
    ];
    let server = ServeProcess::start(data, BENCH_TOKEN, &settings).await?;
    let api = &Api::new(server.base.clone(), BENCH_TOKEN);
    // Reads as a person makes them: a user with ten workspaces lists them.
    let reader = api.post("/api/users", json!({ "name": "reader" })).await?;
    let reader = Api::new(server.base.clone(), reader["token"].as_str().unwrap_or_default());
    make_workspaces(&reader, repo, "mine", 10).await?;
    let mut figures = Vec::new();
    for clients in [4, 32] {
        let rate = read_throughput(&reader, clients, 3.0).await?;
        let name =
            format!("API read throughput, GET /api/workspaces (10 of them), {clients} clients (req/s)");
        figures.push(Figure::single(name, "req/s", rate, "≥ 23,000 req/s", rate >= 23_000.0));
    }
    let workspaces = make_workspaces(api, repo, "held", hold).await?;

    let rss_zero = server.rss_kib()?;
    let mut opened = 0usize;
    let mut rss_at = Vec::new();
    let targets = if hold > 100 { vec![100, hold] } else { vec![hold] };
    for target in targets {
        while opened < target.min(workspaces.len()) {
            api.open(&workspaces[opened]).await?;
            opened += 1;
        }
        // Let deferred work (agent connections, timers) settle before reading memory.
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_at.push((opened, server.rss_kib()?));
    }
    let live = api.get("/api/sessions?state=live").await?;
    let held = live["sessions"].as_array().map_or(0, Vec::len);
    figures.push(Figure::single(
        "server RSS, 0 live sessions (KiB)".into(),
        "KiB",
        rss_zero as f64,
        "—",
        true,
    ));
    for (count, rss) in &rss_at {
        let per_session = (*rss as f64 - rss_zero as f64) / *count as f64;
        figures.push(Figure::single(
            format!("server RSS, {count} live sessions (KiB)"),
            "KiB",
            *rss as f64,
            "—",
            true,
        ));
        figures.push(Figure::single(
            format!("server memory per live session, {count} sessions (KiB)"),
            "KiB",
            per_session,
            "≤ 64 KiB",
            per_session <= 64.0,
        ));
    }
    figures.push(Figure::single(
        "sessions held open (live, each with its agent process)".into(),
        "sessions",
        held as f64,
        "≥ 1,000",
        held >= 1000,
    ));
    let report = api.post("/api/sessions/close-all", json!(null)).await?;
    if report["closed"].as_array().map(Vec::len) != Some(held) {
        bail!("close-all closed {} of {held}", report["closed"]);
    }
    server.stop()?;
    Ok(figures)
}
