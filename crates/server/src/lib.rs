//! berth's HTTP server: the JSON API of API.md, operations endpoints, the web UI and, on
//! an origin of their own, the live previews. Only this crate knows HTTP and the JSON wire
//! types; it calls the engine for everything else. `run` takes a bound listener and a
//! shutdown signal so tests bind `127.0.0.1:0`.

mod account;
mod changes;
pub mod client;
mod enveloped;
mod error;
mod extract;
mod live;
mod metrics;
mod oidc;
mod openapi;
mod ops;
mod page;
mod preview;
mod replicas;
mod sessions;
mod terminals;
#[cfg(feature = "test-util")]
pub mod testing;
mod ui;
mod users;
pub mod wire;
mod workspaces;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use berth_core::preview::PreviewHosts;
use berth_engine::Engine;
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

/// Request bodies larger than this are refused with `413 payload_too_large`; no API
/// request comes near it.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Where browsers find each workspace's previews; `None` when previews are off.
    pub preview: Option<PreviewHosts>,
    /// Turns true when the server stops: long-lived answers (the change feed) end then.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// The OpenID Connect provider people sign in with, when one is configured.
    pub oidc: Option<Arc<oidc::Oidc>>,
    /// How this replica reaches the others.
    pub peers: Arc<replicas::HttpPeers>,
}

/// After the shutdown signal, open connections get this long to finish before the
/// engine stops anyway (a streaming preview answer would otherwise hold it forever).
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// berth's API, operations endpoints and web UI.
pub fn router(state: AppState) -> Router {
    metrics::install();
    Router::new()
        .merge(ops::router())
        .merge(oidc::router())
        .route("/api/sign-in-options", axum::routing::get(oidc::sign_in_options))
        .merge(ui::router())
        .merge(users::router())
        .merge(account::router())
        .merge(workspaces::router())
        .merge(preview::open_router())
        .merge(changes::router())
        .merge(sessions::router())
        .merge(live::router())
        .merge(metrics::router())
        .merge(replicas::router())
        .merge(replicas::owner_routes(
            &state,
            sessions::owner_router().merge(live::owner_router()).merge(terminals::owner_router()),
        ))
        .fallback(error::not_found_fallback)
        .method_not_allowed_fallback(error::method_not_allowed_fallback)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// A request's span names its method and path, never its query: `/login?token=` carries
/// a secret that no log line, at any level, may hold.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
}

/// The previews, served on their own listener (their own origin).
pub fn preview_router(state: AppState) -> Router {
    Router::new()
        .merge(preview::router())
        .fallback(error::not_found_fallback)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// Serves `engine` on `listener`, and its previews on `preview.listen`, until `shutdown`
/// completes, then drains requests and stops the engine's background work.
pub async fn run(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    use futures::FutureExt;
    let preview_listener = match engine.config().preview_listen {
        Some(address) => Some(tokio::net::TcpListener::bind(address).await.map_err(|error| {
            std::io::Error::new(error.kind(), format!("cannot listen for previews on {address}: {error}"))
        })?),
        None => None,
    };
    let preview = match (&engine.config().preview_url, &preview_listener) {
        (_, None) => None,
        (Some(hosts), Some(_)) => Some(hosts.clone()),
        (None, Some(listener)) => Some(PreviewHosts::localhost(listener.local_addr()?.port())),
    };
    if let Some(listener) = &preview_listener {
        tracing::info!(address = %listener.local_addr()?, "previews listening");
    }
    let (stop_feeds, stopping) = tokio::sync::watch::channel(false);
    let oidc = match &engine.config().oidc {
        Some(settings) => Some(Arc::new(
            oidc::Oidc::new(settings, &engine.config().public_url).map_err(std::io::Error::other)?,
        )),
        None => None,
    };
    if let Some(oidc) = &oidc {
        // A provider that does not answer yet stops nothing: discovery is tried again.
        tokio::spawn(Arc::clone(oidc).discover_until_found(stopping.clone()));
    }
    let peers = Arc::new(replicas::HttpPeers::new(engine.replicas.secret()));
    engine.replicas.reach_peers_with(Arc::clone(&peers) as Arc<dyn berth_engine::Peers>);
    let state = AppState { engine: Arc::clone(&engine), preview, stopping, oidc, peers };
    let shutdown = async move {
        shutdown.await;
        let _ = stop_feeds.send(true);
    }
    .boxed()
    .shared();
    // Live-channel frames are small and latency-bound: no Nagle delay on them.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(error = %error, "cannot set TCP_NODELAY");
        }
    });
    let listener = enveloped::EnvelopedListener(listener);
    // The peer's address is kept with a browser sign-in ("from where").
    let api = axum::serve(
        listener,
        router(state.clone()).into_make_service_with_connect_info::<enveloped::PeerAddress>(),
    )
    .with_graceful_shutdown(shutdown.clone());
    let previews = async {
        match preview_listener {
            Some(listener) => {
                axum::serve(enveloped::EnvelopedListener(listener), preview_router(state))
                    .with_graceful_shutdown(shutdown.clone())
                    .await
            }
            None => Ok(()),
        }
    };
    let serving = async { tokio::join!(api.into_future(), previews) };
    let drain_limit = async {
        shutdown.clone().await;
        tokio::time::sleep(DRAIN_LIMIT).await;
    };
    let (served, previewed) = tokio::select! {
        results = serving => results,
        () = drain_limit => {
            tracing::warn!("connections still open {} s after shutdown; stopping anyway", DRAIN_LIMIT.as_secs());
            (Ok(()), Ok(()))
        }
    };
    engine.shutdown().await;
    served.and(previewed)
}
