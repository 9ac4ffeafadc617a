//! The load drill: many concurrent live-channel connections (browsers) on a few
//! sessions of the built-in agent. It measures the server's memory before and after the
//! connections, and how long an agent's message takes to reach every connection of its
//! session (fan-out), round after round.

use super::TOKEN;
use crate::harness::{Api, ServeProcess, make_repository, make_workspaces};
use anyhow::{Context, bail, ensure};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(clap::Args)]
pub struct LoadArgs {
    /// Live-channel connections in all.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Sessions they are spread over.
    #[arg(long, default_value_t = 10)]
    sessions: usize,
    /// Prompt rounds (one prompt per session per round).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

/// What a connection's reader reports: (session index, what arrived, when).
type Arrival = (usize, &'static str, Instant);

pub async fn run(dir: &Path, args: &LoadArgs) -> anyhow::Result<()> {
    ensure!(
        args.sessions > 0 && args.connections >= args.sessions,
        "need at least one connection per session"
    );
    let repo = make_repository(&dir.join("source"))?;
    let settings = [("BERTH_ISOLATION", "none")];
    let server = ServeProcess::start(&dir.join("berth"), TOKEN, &settings).await?;
    let api = Api::new(server.base.clone(), TOKEN);
    let workspaces = make_workspaces(&api, &repo, "load", args.sessions).await?;
    // The first connection of each session stays for the whole drill (closing the last
    // one would be a leave) and sends the prompts.
    let mut sessions = Vec::new();
    let mut firsts = Vec::new();
    for workspace in &workspaces {
        let session = api.open(workspace).await?;
        let mut live = api.attach(&session, 0).await?;
        live.until(|frame| frame["event"]["data"]["code"] == "agent_ready").await?;
        sessions.push(session);
        firsts.push(live);
    }
    let rss_before = server.rss_kib()?;

    // Every connection reads in a task of its own and reports what arrives.
    let (arrivals, mut arrived) = mpsc::unbounded_channel::<Arrival>();
    let mut senders = Vec::new();
    let connected_at = Instant::now();
    let mut firsts = firsts.into_iter();
    for n in 0..args.connections {
        let index = n % args.sessions;
        let live = match firsts.next() {
            Some(first) => first,
            None => {
                // Only what happens from now on: no history replay.
                let last =
                    api.get(&format!("/api/sessions/{}/events?after=0&limit=1000", sessions[index])).await?;
                let after = last["next_after"].as_i64().unwrap_or(0);
                api.attach(&sessions[index], after).await?
            }
        };
        let (sink, mut stream) = live.socket.split();
        if n < args.sessions {
            senders.push(sink);
        }
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let tokio_tungstenite::tungstenite::Message::Text(text) = message else { continue };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                let what = match frame["event"]["kind"].as_str() {
                    Some("agent_message") => "message",
                    Some("turn_end") => "turn_end",
                    _ => continue,
                };
                if arrivals.send((index, what, Instant::now())).is_err() {
                    return;
                }
            }
        });
    }
    let connect_all = connected_at.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = server.rss_kib()?;

    let per_session = |index: usize| (0..args.connections).filter(|n| n % args.sessions == index).count();
    let mut latencies = Vec::new();
    for _ in 0..args.rounds {
        let mut sent_at = Vec::new();
        // One prompt per session (a session takes one turn at a time), from its first
        // connection; every connection of the session hears the reply.
        for sink in senders.iter_mut().take(args.sessions) {
            sent_at.push(Instant::now());
            let prompt = json!({ "type": "prompt", "text": "hello" }).to_string();
            sink.send(tokio_tungstenite::tungstenite::Message::Text(prompt.into())).await?;
        }
        let (mut messages, mut turn_ends) = (vec![0usize; args.sessions], vec![0usize; args.sessions]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while (0..args.sessions).any(|index| turn_ends[index] < per_session(index)) {
            let (index, what, at) = tokio::time::timeout_at(deadline, arrived.recv())
                .await
                .context("a round did not reach every connection within 60 s")?
                .context("every reader ended")?;
            if what == "message" && messages[index] < per_session(index) {
                messages[index] += 1;
                latencies.push(at - sent_at[index]);
            } else if what == "turn_end" {
                turn_ends[index] += 1;
            }
        }
    }
    if latencies.len() != args.rounds * args.connections {
        bail!("{} deliveries of {}", latencies.len(), args.rounds * args.connections);
    }
    latencies.sort();
    let at = |quantile: f64| {
        let index = ((latencies.len() as f64 - 1.0) * quantile).round() as usize;
        latencies[index].as_secs_f64() * 1000.0
    };
    let per_connection = (rss_after as f64 - rss_before as f64) / args.connections as f64;
    server.stop()?;
    println!(
        "load drill: {} live-channel connections on {} sessions, {} rounds",
        args.connections, args.sessions, args.rounds
    );
    println!("  connecting them all (one after the other): {:.0} ms", connect_all.as_secs_f64() * 1000.0);
    println!(
        "  server RSS {rss_before} KiB before, {rss_after} KiB after: {per_connection:.1} KiB per connection"
    );
    println!(
        "  prompt → agent message at every connection of its session: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5),
        at(0.95),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
