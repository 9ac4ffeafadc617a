//! berth's HTTP server: the JSON API of API.md, operations endpoints and the login page.
//! Only this crate knows HTTP and the JSON wire types; it calls the engine for everything
//! else. `run` takes a bound listener and a shutdown signal so tests bind `127.0.0.1:0`.

mod error;
mod extract;
mod live;
mod metrics;
mod openapi;
mod ops;
mod preview;
mod sessions;
mod users;
pub mod wire;
mod workspaces;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use berth_engine::Engine;
use std::future::Future;
use std::sync::Arc;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

/// Request bodies larger than this are refused with `413 payload_too_large`; no API
/// request comes near it.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
}

/// The whole HTTP surface of berth.
pub fn router(engine: Arc<Engine>) -> Router {
    metrics::install();
    let state = AppState { engine };
    Router::new()
        .merge(ops::router())
        .merge(users::router())
        .merge(workspaces::router())
        .merge(sessions::router())
        .merge(live::router())
        .merge(preview::router())
        .merge(metrics::router())
        .fallback(error::not_found_fallback)
        .method_not_allowed_fallback(error::method_not_allowed_fallback)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `engine` on `listener` until `shutdown` completes, then drains requests and
/// stops the engine's background work.
pub async fn run(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = router(Arc::clone(&engine));
    // Live-channel frames are small and latency-bound: no Nagle delay on them.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(error = %error, "cannot set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    engine.shutdown().await;
    served
}
