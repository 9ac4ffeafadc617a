//! `berth bench --database postgres://…`: the figures that touch the database most —
//! open → agent ready, close, close-all of 100, API reads — on SQLite and on PostgreSQL,
//! side by side in one run (each server on a fresh database of its own), and the ratio
//! of the open figures (DESIGN: PostgreSQL's p50 at most 1.3× SQLite's, with durable commits).

use super::capacity::read_throughput;
use super::{
    BENCH_TOKEN, BenchServer, Figure, PhaseTable, SandboxKind, measure, measure_open_close, sandbox_kind,
};
use crate::harness::{Api, ServeProcess, WAITING_AGENT, make_repository, make_workspaces, tempfile_dir};
use serde_json::json;

/// One database to measure on: its name in the figures and a fresh URL for each server.
struct Backend {
    label: &'static str,
    server: Option<String>,
}

impl Backend {
    /// A fresh database of this kind, for one server: `None` is the data directory's
    /// own SQLite file.
    async fn fresh(&self, n: usize) -> anyhow::Result<Option<String>> {
        let Some(server) = &self.server else { return Ok(None) };
        let name = format!("berth_bench_{}_{n}_{}", std::process::id(), rand::random::<u32>());
        Ok(Some(berth_store::create_database(server, &name).await?))
    }

    /// A bench server on sandboxes of `kind` and a fresh database of this kind.
    async fn server(&self, name: &str, kind: &SandboxKind, n: usize) -> anyhow::Result<BenchServer> {
        let url = self.fresh(n).await?;
        BenchServer::start(name, |config| {
            kind.adjust(config);
            if let Some(url) = url {
                config.database_url = url;
            }
        })
        .await
    }
}

pub async fn compare(database: &str, rounds: usize) -> anyhow::Result<(Vec<Figure>, Vec<PhaseTable>)> {
    let backends = [
        Backend { label: "SQLite", server: None },
        Backend { label: "PostgreSQL", server: Some(database.to_owned()) },
    ];
    let kind = sandbox_kind("none")?;
    let mut figures = Vec::new();
    let mut tables = Vec::new();
    let mut ready_p50 = Vec::new();
    for backend in &backends {
        let renamed = |figure: Figure| Figure {
            name: figure.name.replace("(isolation none)", &format!("(isolation none, {})", backend.label)),
            ..figure
        };
        let server = backend.server("database-open", &kind, 0).await?;
        let measured = measure_open_close(&server, &kind, rounds).await;
        server.stop().await?;
        let (measured, mut table) = measured?;
        table.sandbox = format!("{}, {}", table.sandbox, backend.label);
        tables.push(table);
        for figure in measured {
            if figure.name.starts_with("open idle workspace → agent ready") {
                ready_p50.push(figure.p50);
            }
            figures.push(renamed(figure));
        }

        let server = backend.server("database-close-all", &kind, 1).await?;
        let measured = measure(&server.api, &server.repo).await;
        server.stop().await?;
        figures.extend(measured?.into_iter().map(renamed));

        let data = tempfile_dir("bench-database-reads")?;
        let repo = make_repository(&data.join("source"))?;
        let mut settings =
            vec![("BERTH_ISOLATION", "none".to_owned()), ("BERTH_AGENT", WAITING_AGENT.to_owned())];
        if let Some(url) = backend.fresh(2).await? {
            settings.push(("BERTH_DATABASE_URL", url));
        }
        let settings: Vec<(&str, &str)> =
            settings.iter().map(|(key, value)| (*key, value.as_str())).collect();
        let served = ServeProcess::start(&data.join("berth"), BENCH_TOKEN, &settings).await?;
        let api = Api::new(served.base.clone(), BENCH_TOKEN);
        let reader = api.post("/api/users", json!({ "name": "reader" })).await?;
        let reader = Api::new(served.base.clone(), reader["token"].as_str().unwrap_or_default());
        make_workspaces(&reader, &repo, "mine", 10).await?;
        let rate = read_throughput(&reader, 32, 3.0).await?;
        served.stop()?;
        let _ = std::fs::remove_dir_all(&data);
        figures.push(Figure::single(
            format!("API read throughput, GET /api/workspaces, 32 clients, {} (req/s)", backend.label),
            "req/s",
            rate,
            "≥ 23,000 req/s",
            rate >= 23_000.0,
        ));
    }
    if let [sqlite, postgres] = ready_p50[..] {
        let ratio = postgres / sqlite;
        figures.push(Figure::single(
            "open → agent ready p50, PostgreSQL ÷ SQLite (ratio)".into(),
            "ratio",
            ratio,
            "≤ 1.3",
            ratio <= 1.3,
        ));
    }
    Ok((figures, tables))
}
