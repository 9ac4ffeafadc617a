//! berth's HTTP server: the JSON API of API.md, operations endpoints, the web UI and, on
//! an origin of their own, the live previews. Only this crate knows HTTP and the JSON wire
//! types; it calls the engine for everything else. `run` takes a bound listener and a
//! shutdown signal so tests bind `127.0.0.1:0`.

mod changes;
mod error;
mod extract;
mod live;
mod metrics;
mod openapi;
mod ops;
mod preview;
mod sessions;
mod ui;
mod users;
pub mod wire;
mod workspaces;

use axum::Router;
use axum::extract::DefaultBodyLimit;
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
    /// Where browsers find the previews; `None` when previews are switched off.
    pub preview: Option<PreviewOrigin>,
    /// Turns true when the server stops: long-lived answers (the change feed) end then.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// After the shutdown signal, open connections get this long to finish before the
/// engine stops anyway (a streaming preview answer would otherwise hold it forever).
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The origin previews are served from. A previewed page runs whatever the workspace's
/// code serves; on an origin of its own it cannot call berth's API as the user (the
/// browser keeps it apart, and berth refuses requests whose `Origin` is not its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreviewOrigin {
    /// Configured (`preview.url`), for a proxy in front of berth.
    Url(String),
    /// The preview listener's port on whatever host the browser used for berth.
    Port(u16),
}

impl PreviewOrigin {
    /// The preview origin for a browser that reached berth at `host` (the `Host` header).
    pub fn for_host(&self, host: Option<&str>) -> Option<String> {
        match self {
            PreviewOrigin::Url(url) => Some(url.clone()),
            PreviewOrigin::Port(port) => {
                let host = host?;
                let name = match host.strip_prefix('[') {
                    Some(rest) => format!("[{}]", rest.split(']').next()?),
                    None => host.rsplit_once(':').map_or(host, |(name, _)| name).to_owned(),
                };
                // The name goes into headers and pages: letters, digits, dots, dashes and an
                // IPv6 literal's brackets and colons only.
                let plain = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
                plain.then(|| format!("http://{name}:{port}"))
            }
        }
    }
}

/// berth's API, operations endpoints and web UI.
pub fn router(state: AppState) -> Router {
    metrics::install();
    Router::new()
        .merge(ops::router())
        .merge(ui::router())
        .merge(users::router())
        .merge(workspaces::router())
        .merge(changes::router())
        .merge(sessions::router())
        .merge(live::router())
        .merge(metrics::router())
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
        (Some(url), Some(_)) => Some(PreviewOrigin::Url(url.clone())),
        (None, Some(listener)) => Some(PreviewOrigin::Port(listener.local_addr()?.port())),
    };
    if let Some(listener) = &preview_listener {
        tracing::info!(address = %listener.local_addr()?, "previews listening");
    }
    let (stop_feeds, stopping) = tokio::sync::watch::channel(false);
    let state = AppState { engine: Arc::clone(&engine), preview, stopping };
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
    let api = axum::serve(listener, router(state.clone())).with_graceful_shutdown(shutdown.clone());
    let previews = async {
        match preview_listener {
            Some(listener) => {
                axum::serve(listener, preview_router(state)).with_graceful_shutdown(shutdown.clone()).await
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

#[cfg(test)]
mod tests {
    use super::PreviewOrigin;

    #[test]
    fn the_preview_origin_is_the_browsers_host_with_the_preview_port() {
        let port = PreviewOrigin::Port(7071);
        for (host, expected) in [
            (Some("127.0.0.1:7070"), Some("http://127.0.0.1:7071")),
            (Some("berth.example.com"), Some("http://berth.example.com:7071")),
            (Some("[::1]:7070"), Some("http://[::1]:7071")),
            (Some("evil.example\"; script-src *"), None),
            (Some("a b:7070"), None),
            (Some(""), None),
            (None, None),
        ] {
            assert_eq!(port.for_host(host).as_deref(), expected, "{host:?}");
        }
        let configured = PreviewOrigin::Url("https://preview.example.com".into());
        assert_eq!(configured.for_host(Some("other:1")).as_deref(), Some("https://preview.example.com"));
    }
}
