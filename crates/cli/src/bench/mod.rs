//! `berth bench`: starts its own server on a temporary data directory and measures the
//! figures of DESIGN.md §3 that exist so far, over real HTTP with the built-in agent,
//! printing each against its target (and `--json` for scripts).

mod capacity;
mod databases;
mod phases;

use crate::harness::{Api, make_repository, tempfile_dir};
use anyhow::bail;
use berth_engine::Config;
use berth_engine::config::{Isolation, Network, SandboxDriverKind};
use serde::Serialize;
use serde_json::{Value, json};

use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Open/close rounds for the latency figures.
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    /// Prints the results as JSON.
    #[arg(long)]
    json: bool,
    /// Sandboxes to compare open and close on, side by side: none, bwrap (own network
    /// namespace, no network), bwrap-outbound (slirp4netns), docker (DOCKER_HOST).
    #[arg(long, value_delimiter = ',', default_value = "none,bwrap,bwrap-outbound,docker")]
    sandboxes: Vec<String>,
    /// Open/close rounds on the docker driver (each one starts a container).
    #[arg(long, default_value_t = 40)]
    docker_rounds: usize,
    /// Live sessions to open for the memory and capacity figures (a separate `berth
    /// serve` process; 0 skips them).
    #[arg(long, default_value_t = 1000)]
    hold: usize,
    /// A PostgreSQL server (`postgres://user@host/db`) to measure the database figures on
    /// beside SQLite's, in the same run; each server gets a fresh database made there.
    #[arg(long)]
    database: Option<String>,
}

/// One way of running sandboxes, compared in the open/close figures.
struct SandboxKind {
    label: &'static str,
    driver: SandboxDriverKind,
    isolation: Isolation,
    network: Network,
    open_target: &'static str,
    open_limit_ms: f64,
}

impl SandboxKind {
    /// Targets for git status in a bubblewrap sandbox (DESIGN §3) and on docker (its
    /// jobs without network in bubblewrap).
    fn git_status_target(&self) -> (&'static str, f64) {
        match (self.driver, self.isolation) {
            (SandboxDriverKind::Local, Isolation::Bwrap) => ("p50 ≤ 15 ms", 15.0),
            (SandboxDriverKind::Docker, Isolation::Bwrap) => ("p50 ≤ 40 ms", 40.0),
            _ => ("—", f64::INFINITY),
        }
    }

    fn adjust(&self, config: &mut Config) {
        config.sandbox_driver = self.driver;
        config.isolation = self.isolation;
        config.network = self.network;
        if self.driver == SandboxDriverKind::Docker {
            config.image = docker_image();
        }
    }

    /// DESIGN §3 sets a close target for the local driver only.
    fn close_target(&self) -> (&'static str, f64) {
        match self.driver {
            SandboxDriverKind::Local => ("p50 ≤ 6 ms", 6.0),
            SandboxDriverKind::Docker => ("—", f64::INFINITY),
        }
    }
}

/// bubblewrap where this machine has it, as `berth serve` decides by default.
fn host_isolation() -> Isolation {
    if berth_engine::config::HostTools::detect().bwrap { Isolation::Bwrap } else { Isolation::None }
}

/// The image the docker figures use: `BERTH_SANDBOX_IMAGE`, else berth's default.
fn docker_image() -> String {
    std::env::var("BERTH_SANDBOX_IMAGE").unwrap_or_else(|_| berth_engine::config::DEFAULT_IMAGE.to_owned())
}

fn sandbox_kind(name: &str) -> anyhow::Result<SandboxKind> {
    use SandboxDriverKind::{Docker, Local};
    let (label, driver, isolation, network, open_target, open_limit_ms) = match name {
        "none" => ("isolation none", Local, Isolation::None, Network::Host, "p50 ≤ 8 ms", 8.0),
        "bwrap" => {
            ("bwrap, network isolated", Local, Isolation::Bwrap, Network::Isolated, "p50 ≤ 13 ms", 13.0)
        }
        "bwrap-outbound" => {
            ("bwrap, network outbound", Local, Isolation::Bwrap, Network::Outbound, "p50 ≤ 13 ms", 13.0)
        }
        // As an installation here has it: git jobs without network in bubblewrap where
        // this machine has it.
        "docker" => ("docker", Docker, host_isolation(), Network::Outbound, "p50 ≤ 400 ms", 400.0),
        other => bail!("unknown sandbox '{other}': expected none, bwrap, bwrap-outbound or docker"),
    };
    Ok(SandboxKind { label, driver, isolation, network, open_target, open_limit_ms })
}

#[derive(Serialize)]
struct Figure {
    name: String,
    unit: &'static str,
    p50: f64,
    p95: f64,
    p99: f64,
    target: &'static str,
    /// Whether p50 meets the target (for a total, the single value).
    meets_target: bool,
}

impl Figure {
    /// A figure that is one value (a rate, a size, a count), not a distribution.
    fn single(
        name: String,
        unit: &'static str,
        value: f64,
        target: &'static str,
        meets_target: bool,
    ) -> Figure {
        Figure { name, unit, p50: value, p95: value, p99: value, target, meets_target }
    }
}

/// Where one sandbox kind's open → agent ready went, beside the floor's.
#[derive(Serialize)]
struct PhaseTable {
    sandbox: String,
    /// berth's phases (means, ms), in the order an open goes through them.
    berth: Vec<(String, f64)>,
    /// The floor's (means, ms): the same agent in the same sandbox, no control plane.
    floor: Vec<(String, f64)>,
}

const BENCH_TOKEN: &str = "berth_bench_admin_token_0000000000";

/// A server of the bench's own, on a temporary data directory.
struct BenchServer {
    api: Api,
    repo: String,
    data: std::path::PathBuf,
    server: berth_server::testing::TestServer,
}

impl BenchServer {
    async fn start(name: &str, adjust: impl FnOnce(&mut Config)) -> anyhow::Result<BenchServer> {
        let data = tempfile_dir(&format!("bench-{name}"))?;
        let repo = make_repository(&data.join("source"))?;
        let mut config = Config::for_data_dir(&data.join("berth"));
        config.admin_token = Some(BENCH_TOKEN.into());
        config.limits.sessions_per_user = 1000;
        config.limits.running_sandboxes = 1000;
        // The prompt round trip is measured turn after turn, faster than people type.
        config.prompts_per_second = 1_000_000;
        adjust(&mut config);
        let server = berth_server::testing::TestServer::start(config, None).await?;
        Ok(BenchServer { api: Api::new(server.url.clone(), BENCH_TOKEN), repo, data, server })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.server.stop().await?;
        let _ = std::fs::remove_dir_all(&self.data);
        Ok(())
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let kinds = args.sandboxes.iter().map(|name| sandbox_kind(name)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut figures = Vec::new();
    let mut skipped = Vec::new();
    let mut tables = Vec::new();
    // Open and close on each sandbox kind, one after the other in this one run.
    for (name, kind) in args.sandboxes.iter().zip(&kinds) {
        let rounds = if kind.driver == SandboxDriverKind::Docker { args.docker_rounds } else { args.rounds };
        let server = match BenchServer::start(name, |config| kind.adjust(config)).await {
            Ok(server) => server,
            Err(error) => {
                skipped.push(format!("{}: {error:#}", kind.label));
                continue;
            }
        };
        let measured = measure_open_close(&server, kind, rounds).await;
        server.stop().await?;
        match measured {
            Ok((measured, table)) => {
                figures.extend(measured);
                tables.push(table);
            }
            Err(error) => skipped.push(format!("{}: {error:#}", kind.label)),
        }
    }
    let server = BenchServer::start("main", |_| {}).await?;
    let measured = measure(&server.api, &server.repo).await;
    let measured_agent = match &measured {
        Ok(_) => Some(measure_agent(&server.api, &server.repo, args.rounds).await),
        Err(_) => None,
    };
    server.stop().await?;
    figures.extend(measured?);
    if let Some(agent) = measured_agent {
        figures.extend(agent?);
    }
    if let Some(database) = &args.database {
        match databases::compare(database, args.rounds).await {
            Ok((measured, database_tables)) => {
                figures.extend(measured);
                tables.extend(database_tables);
            }
            Err(error) => skipped.push(format!("databases: {error:#}")),
        }
    }
    if args.hold > 0 {
        let data = tempfile_dir("bench-capacity")?;
        let repo = make_repository(&data.join("source"))?;
        let measured = capacity::measure(&data.join("berth"), &repo, args.hold).await;
        let _ = std::fs::remove_dir_all(&data);
        match measured {
            Ok(measured) => figures.extend(measured),
            Err(error) => skipped.push(format!("capacity: {error:#}")),
        }
    }
    if args.json {
        let document = json!({ "figures": figures, "phases": tables, "skipped": skipped });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print_table(&figures);
        print_phases(&tables);
        for reason in &skipped {
            println!("skipped {reason}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Open an idle workspace (the answer comes once the agent's process runs in its
/// sandbox) and close it, `rounds` times, on one sandbox kind.
async fn measure_open_close(
    server: &BenchServer,
    kind: &SandboxKind,
    rounds: usize,
) -> anyhow::Result<(Vec<Figure>, PhaseTable)> {
    let api = &server.api;
    let workspace = api.ready_workspace(&server.repo, "bench-open").await?;
    // The floor: `berth agent` in the same sandbox without berth, where there is one to
    // compare with (the local driver's).
    let floor_of = match (kind.driver, kind.isolation, kind.network) {
        (SandboxDriverKind::Local, _, Network::Outbound) => None,
        (SandboxDriverKind::Local, Isolation::None, _) => Some(phases::Floor::Bare),
        (SandboxDriverKind::Local, Isolation::Bwrap, _) => Some(phases::Floor::Bwrap),
        (SandboxDriverKind::Docker, ..) => Some(phases::Floor::Docker { image: docker_image() }),
    };
    let berth = std::env::current_exe()?;
    let checkout = server.data.join("berth/workspaces").join(&workspace);
    // Warm up: the first spawn of a binary pays for page-cache misses.
    for _ in 0..3 {
        let session = api.open(&workspace).await?;
        api.close(&session).await?;
        if let Some(floor) = &floor_of {
            phases::floor_round(&berth, &checkout, floor).await?;
        }
    }
    let (mut opens, mut readies, mut closes) =
        (Vec::with_capacity(rounds), Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    let (mut floor_rounds, mut floor_totals) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    let mut last_seq = 0;
    let before = phases::scrape(&api.http, &api.base).await?;
    for _ in 0..rounds {
        let started = Instant::now();
        let session = api.open(&workspace).await?;
        opens.push(started.elapsed());
        // Agent ready: its ACP `initialize` answered (the `system agent_ready` event).
        let mut live = api.attach(&session, last_seq).await?;
        live.until(|frame| {
            let event = &frame["event"];
            last_seq = last_seq.max(event["seq"].as_i64().unwrap_or(0));
            event["data"]["code"] == "agent_ready" && event["session_id"] == session.as_str()
        })
        .await?;
        readies.push(started.elapsed());
        let started = Instant::now();
        api.close(&session).await?;
        closes.push(started.elapsed());
    }
    let after = phases::scrape(&api.http, &api.base).await?;
    // The floor's rounds after berth's, in the same run: a sandbox torn down (its
    // namespaces go in a kernel worker) would weigh on the open after it.
    if let Some(floor) = &floor_of {
        for _ in 0..rounds {
            let round = phases::floor_round(&berth, &checkout, floor).await?;
            floor_totals.push(round.total());
            floor_rounds.push(round);
        }
    }
    let table = PhaseTable {
        sandbox: kind.label.to_owned(),
        berth: phases::means(&before, &after),
        floor: phases::floor_means(&floor_rounds),
    };
    // git status runs in a sandbox of its own, with a session live (the agent works in
    // the checkout meanwhile) and without.
    let mut statuses = Vec::with_capacity(rounds);
    let session = api.open(&workspace).await?;
    for round in 0..rounds * 2 {
        if round == rounds {
            api.close(&session).await?;
        }
        let started = Instant::now();
        let status = api.get(&format!("/api/workspaces/{workspace}/git")).await?;
        statuses.push(started.elapsed());
        if status["branch"].is_null() {
            bail!("git status answered {status}");
        }
    }
    let open_name = format!("open idle workspace → agent process running ({})", kind.label);
    let ready_name = format!("open idle workspace → agent ready, ACP initialised ({})", kind.label);
    let close_name = format!("close one session ({})", kind.label);
    let mut figures = Vec::new();
    if !floor_totals.is_empty() {
        let floor_p50 = latency(String::new(), &mut floor_totals, "—", f64::INFINITY).p50;
        let mut sorted = readies.clone();
        let berth_p50 = latency(String::new(), &mut sorted, "—", f64::INFINITY).p50;
        figures.push(latency(
            format!("floor: berth agent alone, spawn → session/new answered ({})", kind.label),
            &mut floor_totals,
            "—",
            f64::INFINITY,
        ));
        let ratio = berth_p50 / floor_p50;
        figures.push(Figure::single(
            format!("open → agent ready p50 ÷ the floor's ({})", kind.label),
            "ratio",
            ratio,
            "≤ 1.5",
            ratio <= 1.5,
        ));
    }
    figures.extend([
        latency(open_name, &mut opens, "—", f64::INFINITY),
        latency(ready_name, &mut readies, kind.open_target, kind.open_limit_ms),
        latency(close_name, &mut closes, kind.close_target().0, kind.close_target().1),
        latency(
            format!("GET /api/workspaces/{{id}}/git: git status in a sandbox ({})", kind.label),
            &mut statuses,
            kind.git_status_target().0,
            kind.git_status_target().1,
        ),
    ]);
    Ok((figures, table))
}

async fn measure(api: &Api, repo: &str) -> anyhow::Result<Vec<Figure>> {
    let first = api.ready_workspace(repo, "bench-0").await?;
    let mut figures = Vec::new();
    let mut workspaces = vec![first];
    for n in 1..100 {
        workspaces.push(api.ready_workspace(repo, &format!("bench-{n}")).await?);
    }
    for (count, target, limit_ms) in
        [(10, "—", f64::INFINITY), (50, "—", f64::INFINITY), (100, "≤ 150 ms total", 150.0)]
    {
        let mut totals = Vec::new();
        for _ in 0..5 {
            for workspace in &workspaces[..count] {
                api.open(workspace).await?;
            }
            let started = Instant::now();
            let report = api.post("/api/sessions/close-all", Value::Null).await?;
            totals.push(started.elapsed());
            if report["closed"].as_array().map(Vec::len) != Some(count) {
                bail!("close-all closed {} of {count}", report["closed"]);
            }
        }
        let name = format!("close-all of {count} sessions (isolation none)");
        figures.push(latency(name, &mut totals, target, limit_ms));
    }
    Ok(figures)
}

/// Prompt → first agent event through the built-in agent, and reconnect + replay of
/// 1,000 history events, over the live channel.
async fn measure_agent(api: &Api, repo: &str, rounds: usize) -> anyhow::Result<Vec<Figure>> {
    let workspace = &api.ready_workspace(repo, "bench-agent").await?;
    let session = api.open(workspace).await?;
    let mut live = api.attach(&session, 0).await?;
    live.until(|frame| frame["event"]["data"]["code"] == "agent_ready").await?;
    let mut first_events = Vec::new();
    let mut round_trips = Vec::new();
    let mut events = 0usize;
    let prompts = rounds.max(340);
    for round in 0..prompts {
        live.send(json!({ "type": "prompt", "text": "hello" })).await?;
        let started = Instant::now();
        live.until(|frame| frame["event"]["kind"] == "agent_message").await?;
        if round < rounds {
            first_events.push(started.elapsed());
        }
        live.until(|frame| frame["event"]["kind"] == "turn_end").await?;
        if round < rounds {
            round_trips.push(started.elapsed());
        }
        events += 3;
    }
    let mut replays = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let mut replay = api.attach(&session, 0).await?;
        let mut seen = 0usize;
        replay
            .until(|frame| {
                seen += usize::from(frame["type"] == "event");
                frame["type"] == "session"
            })
            .await?;
        replays.push(started.elapsed());
        if seen < 1000 {
            bail!("replayed only {seen} events of {events}");
        }
    }
    api.close(&session).await?;
    Ok(vec![
        latency("prompt → first agent event (built-in agent)".into(), &mut first_events, "—", f64::INFINITY),
        latency(
            "prompt round trip: prompt → turn end (built-in agent)".into(),
            &mut round_trips,
            "—",
            f64::INFINITY,
        ),
        latency("reconnect + replay of ≥ 1,000 history events".into(), &mut replays, "≤ 20 ms", 20.0),
    ])
}

fn latency(name: String, samples: &mut [Duration], target: &'static str, p50_limit_ms: f64) -> Figure {
    samples.sort();
    let at = |quantile: f64| {
        let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
        samples.get(index).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    let p50 = at(0.50);
    Figure { name, unit: "ms", p50, p95: at(0.95), p99: at(0.99), target, meets_target: p50 <= p50_limit_ms }
}

fn print_phases(tables: &[PhaseTable]) {
    for table in tables {
        println!();
        println!("where open → agent ready goes ({}), means in ms:", table.sandbox);
        for (name, mean) in table.floor.iter().chain(&table.berth) {
            println!("  {name:<44} {mean:>8.3}");
        }
    }
}

fn print_table(figures: &[Figure]) {
    println!("{:<76} {:>10} {:>9} {:>9}  {:<18} MET", "FIGURE", "P50 ms", "P95 ms", "P99 ms", "TARGET");
    for figure in figures {
        let met = if figure.meets_target { "yes" } else { "no" };
        if figure.unit == "ms" {
            println!(
                "{:<76} {:>10.2} {:>9.2} {:>9.2}  {:<18} {met}",
                figure.name, figure.p50, figure.p95, figure.p99, figure.target
            );
        } else {
            let decimals = if figure.unit == "ratio" { 2 } else { 0 };
            println!(
                "{:<76} {:>10.decimals$} {:>9} {:>9}  {:<18} {met}",
                figure.name, figure.p50, "", "", figure.target
            );
        }
    }
}
