//! `berth drill replicas`: two replicas on one PostgreSQL database and one data
//! directory, every session busy with prompts (half owned by each replica, all watched
//! through the second); `kill -9` of the first under that load. Checked: every session
//! the dead replica owned ends `replica_lost` within the lease and 5 s, the survivor's
//! sessions go on answering, every event a client saw is in the history, and once the
//! survivor closes everything no session is left live.

use super::TOKEN;
use crate::harness::{Api, Live, ServeProcess, make_repository, make_workspaces};
use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct ReplicasArgs {
    /// The PostgreSQL server to make the drill's database on (`postgres://user@host/db`).
    #[arg(long, env = "BERTH_TEST_POSTGRES_URL")]
    database: String,
    /// Live sessions, half opened on each replica.
    #[arg(long, default_value_t = 20)]
    sessions: usize,
    /// The replicas' lease.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    lease: Duration,
}

/// A session prompted through the survivor, with every sequence number its client saw.
struct Busy {
    session: String,
    on_first: bool,
    live: Live,
    seen: BTreeSet<i64>,
}

impl Busy {
    async fn until(&mut self, mut done: impl FnMut(&Value) -> bool) -> anyhow::Result<()> {
        let seen = &mut self.seen;
        self.live
            .until(|frame| {
                if let Some(seq) = frame["event"]["seq"].as_i64() {
                    seen.insert(seq);
                }
                done(frame)
            })
            .await
    }

    /// One prompt and its answer.
    async fn turn(&mut self) -> anyhow::Result<()> {
        self.live.send(json!({ "type": "prompt", "text": "hello" })).await?;
        self.until(|frame| frame["event"]["kind"] == "turn_end").await
    }
}

pub async fn run(dir: &Path, args: &ReplicasArgs) -> anyhow::Result<()> {
    let name = format!("berth_drill_{}_{}", std::process::id(), rand::random::<u32>());
    let database = berth_store::create_database(&args.database, &name).await?;
    let data = dir.join("berth");
    let repo = make_repository(&dir.join("source"))?;
    let lease = format!("{}ms", args.lease.as_millis());
    let settings = |id: &'static str| {
        vec![
            ("BERTH_DATABASE_URL", database.clone()),
            ("BERTH_REPLICA_ID", id.to_owned()),
            ("BERTH_REPLICA_LEASE", lease.clone()),
            ("BERTH_ISOLATION", "none".to_owned()),
        ]
    };
    let start = |id: &'static str| {
        let settings = settings(id);
        let data = data.clone();
        async move {
            let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ServeProcess::start(&data, TOKEN, &settings).await
        }
    };
    let first = start("first").await?;
    let second = start("second").await?;
    let (on_first, on_second) = (Api::new(first.base.clone(), TOKEN), Api::new(second.base.clone(), TOKEN));
    let workspaces = make_workspaces(&on_second, &repo, "replicas", args.sessions).await?;
    let mut busy = Vec::new();
    for (n, workspace) in workspaces.iter().enumerate() {
        let on_first_replica = n % 2 == 0;
        let opener = if on_first_replica { &on_first } else { &on_second };
        let session = opener.open(workspace).await?;
        let live = on_second.attach(&session, 0).await?;
        let mut one = Busy { session, on_first: on_first_replica, live, seen: BTreeSet::new() };
        one.until(|frame| frame["event"]["data"]["code"] == "agent_ready").await?;
        busy.push(one);
    }
    // Load: every session takes turns; the first replica dies in the middle of a round.
    for one in &mut busy {
        one.turn().await?;
    }
    for one in &mut busy {
        one.live.send(json!({ "type": "prompt", "text": "hello" })).await?;
    }
    first.crash()?;
    let killed = Instant::now();
    for one in busy.iter_mut().filter(|one| !one.on_first) {
        one.until(|frame| frame["event"]["kind"] == "turn_end").await?;
        one.turn().await.context("a session of the survivor stopped answering")?;
    }
    let deadline = args.lease + Duration::from_secs(5);
    for one in busy.iter().filter(|one| one.on_first) {
        loop {
            let session = on_second.get(&format!("/api/sessions/{}", one.session)).await?;
            if session["state"] == "ended" {
                ensure!(
                    session["end_reason"] == "replica_lost",
                    "{} ended {}",
                    one.session,
                    session["end_reason"]
                );
                break;
            }
            if killed.elapsed() > deadline {
                bail!(
                    "session {} still live {:?} after kill -9 of its replica",
                    one.session,
                    killed.elapsed()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let ended_within = killed.elapsed();
    // Nothing lost: every event a client saw is in the session's history.
    for one in &busy {
        let history = on_second.get(&format!("/api/sessions/{}/events?limit=1000", one.session)).await?;
        let stored: BTreeSet<i64> =
            history["events"].as_array().into_iter().flatten().filter_map(|e| e["seq"].as_i64()).collect();
        let lost: Vec<_> = one.seen.difference(&stored).collect();
        ensure!(lost.is_empty(), "session {}: events seen but not stored: {lost:?}", one.session);
    }
    let report = on_second.post("/api/sessions/close-all", Value::Null).await?;
    ensure!(report["failed"].as_array().is_some_and(Vec::is_empty), "close-all failed: {report}");
    let live = on_second.get("/api/admin/sessions").await?;
    ensure!(live["sessions"].as_array().is_some_and(Vec::is_empty), "sessions left live: {live}");
    second.stop()?;
    println!(
        "replicas drill: {} sessions, kill -9 of one replica under load: its {} sessions ended replica_lost within {:.1} s \
         (lease {:?}), the survivor's kept answering, no event lost, none left live",
        args.sessions,
        busy.iter().filter(|one| one.on_first).count(),
        ended_within.as_secs_f64(),
        args.lease
    );
    Ok(())
}
