//! `/metrics`: Prometheus text. Counters and the open latency histogram are recorded
//! where things happen (the engine, through the `metrics` facade); gauges of sessions by
//! state are read from the store at scrape time, so they are right after a restart too.

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use berth_core::SessionState;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

/// The process-wide recorder, installed on first use (several servers in one test
/// process share it).
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".into()),
                &[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only what it records");
        }
        handle
    })
}

/// Installs the recorder before the first request, so counters from the start count.
pub fn install() {
    let _ = handle();
}

/// Prometheus text: sessions by state, opens, closes, the open latency histogram,
/// sandbox failures. No token needed (scrapers), no secret in it.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn render(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let counts =
        state.engine.store().count_sessions_by_state().await.map_err(berth_engine::EngineError::from)?;
    for session_state in SessionState::ALL {
        let count = counts.iter().find(|(s, _)| *s == session_state).map_or(0, |(_, n)| *n);
        metrics::gauge!("berth_sessions", "state" => session_state.as_str()).set(count as f64);
    }
    metrics::gauge!("berth_running_sandboxes").set(f64::from(state.engine.sessions.running_sandbox_count()));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle().render()))
}
