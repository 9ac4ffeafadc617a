//! The crash drill: live sessions, some with a command still running, each with a client
//! on its live channel; `kill -9` of the server; a new server on the same data. Then:
//! no process of any sandbox is left, every event a client received is in the history,
//! every session ended `server_restart`, and every file the agents wrote is on disk.

use super::TOKEN;
use crate::harness::{Api, Live, REPLICA, ServeProcess, make_repository, make_workspaces};
use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct CrashArgs {
    /// Live sessions when the server is killed.
    #[arg(long, default_value_t = 50)]
    sessions: usize,
    /// Of those, how many have a command still running (mid-run).
    #[arg(long, default_value_t = 10)]
    running: usize,
}

/// One session of the drill and what its client saw.
struct Watched {
    workspace: String,
    session: String,
    live: Live,
    received: BTreeSet<i64>,
    file: String,
}

impl Watched {
    /// Reads frames until `done`, keeping the sequence number of every event.
    async fn until(&mut self, mut done: impl FnMut(&Value) -> bool) -> anyhow::Result<Value> {
        let received = &mut self.received;
        let mut matched = Value::Null;
        self.live
            .until(|frame| {
                if let Some(seq) = frame["event"]["seq"].as_i64() {
                    received.insert(seq);
                }
                let found = done(frame);
                if found {
                    matched = frame.clone();
                }
                found
            })
            .await?;
        Ok(matched)
    }
}

pub async fn run(dir: &Path, args: &CrashArgs) -> anyhow::Result<()> {
    ensure!(args.running <= args.sessions, "--running cannot exceed --sessions");
    let repo = make_repository(&dir.join("source"))?;
    let data = dir.join("berth");
    // The host's defaults: bubblewrap where installed, the built-in agent.
    let server = ServeProcess::start(&data, TOKEN, &[]).await?;
    let api = Api::new(server.base.clone(), TOKEN);
    let workspaces = make_workspaces(&api, &repo, "crash", args.sessions).await?;
    let mut watched = Vec::new();
    for (n, workspace) in workspaces.into_iter().enumerate() {
        let session = api.open(&workspace).await?;
        let live = api.attach(&session, 0).await?;
        let mut one =
            Watched { workspace, session, live, received: BTreeSet::new(), file: format!("file-{n}.txt") };
        one.until(|frame| frame["event"]["data"]["code"] == "agent_ready").await?;
        watched.push(one);
    }
    // Each agent writes a file; some then keep a command running, one marked with a
    // number no other process carries, to find it in the process table afterwards.
    let marker = format!("9{:09}", std::process::id());
    for (n, one) in watched.iter_mut().enumerate() {
        let tail = if n < args.running { format!("; sleep {marker}") } else { String::new() };
        let command = format!("$ echo written-{n} > {}{tail}", one.file);
        one.live.send(json!({ "type": "prompt", "text": command })).await?;
        let question = one.until(|frame| frame["type"] == "question").await?;
        let answer =
            json!({ "type": "answer", "question_id": question["question"]["id"], "option_id": "allow_once" });
        one.live.send(answer).await?;
        if n >= args.running {
            one.until(|frame| frame["event"]["kind"] == "turn_end").await?;
        }
    }
    let checkout = |one: &Watched| data.join("workspaces").join(&one.workspace);
    for one in &watched {
        let path = checkout(one).join(&one.file);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !path.exists() {
            ensure!(Instant::now() < deadline, "{} was never written", path.display());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let groups = sandbox_groups(&data.join("sandboxes").join(REPLICA))?;
    ensure!(
        groups.len() == args.sessions,
        "{} sandboxes recorded for {} sessions",
        groups.len(),
        args.sessions
    );

    let server = server.crash_and_restart().await?;
    let api = Api::new(server.base.clone(), TOKEN);
    let mut problems = Vec::new();
    for pgid in &groups {
        if group_exists(*pgid) {
            problems.push(format!("process group {pgid} of a sandbox survived the restart"));
        }
    }
    let commands = processes_with(&format!("sleep {marker}"));
    if !commands.is_empty() {
        problems
            .push(format!("{} command(s) the agents ran survived the restart: {commands:?}", commands.len()));
    }
    for (n, one) in watched.iter().enumerate() {
        let session = api.get(&format!("/api/sessions/{}", one.session)).await?;
        if (session["state"].as_str(), session["end_reason"].as_str())
            != (Some("ended"), Some("server_restart"))
        {
            problems
                .push(format!("session {} is {} / {}", one.session, session["state"], session["end_reason"]));
        }
        let stored = history(&api, &one.workspace).await?;
        let lost: Vec<&i64> = one.received.difference(&stored).collect();
        if !lost.is_empty() {
            problems.push(format!(
                "workspace {}: events {lost:?} were received but are not stored",
                one.workspace
            ));
        }
        let text = std::fs::read_to_string(checkout(one).join(&one.file)).unwrap_or_default();
        if text != format!("written-{n}\n") {
            problems.push(format!("{} holds {text:?}", one.file));
        }
    }
    server.stop()?;
    let received: usize = watched.iter().map(|one| one.received.len()).sum();
    println!(
        "crash drill: {} sessions ({} mid-run), {received} events received, {} sandbox process groups",
        args.sessions,
        args.running,
        groups.len()
    );
    if problems.is_empty() {
        println!(
            "after kill -9 and restart: no orphan, no lost event, every session server_restart, every file on disk"
        );
        Ok(())
    } else {
        for problem in &problems {
            println!("FAILED: {problem}");
        }
        bail!("{} problem(s) after the crash", problems.len())
    }
}

/// The process groups of the sandboxes the local driver recorded.
fn sandbox_groups(dir: &Path) -> anyhow::Result<Vec<i32>> {
    let mut groups = Vec::new();
    for entry in std::fs::read_dir(dir).context("no sandbox records")? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "json") {
            let record: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
            groups.push(i32::try_from(record["pid"].as_i64().context("a record without a pid")?)?);
        }
    }
    Ok(groups)
}

/// Processes whose command line (arguments joined by spaces) contains `text`.
fn processes_with(text: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(text))
        })
        .collect()
}

fn group_exists(pgid: i32) -> bool {
    !matches!(nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None), Err(nix::Error::ESRCH))
}

/// Every stored event's sequence number of a workspace.
async fn history(api: &Api, workspace: &str) -> anyhow::Result<BTreeSet<i64>> {
    let mut seqs = BTreeSet::new();
    let mut after = 0;
    loop {
        let page = api.get(&format!("/api/workspaces/{workspace}/events?after={after}&limit=500")).await?;
        let events = page["events"].as_array().context("no events")?;
        if events.is_empty() {
            return Ok(seqs);
        }
        for event in events {
            let seq = event["seq"].as_i64().context("an event without seq")?;
            seqs.insert(seq);
            after = after.max(seq);
        }
    }
}
