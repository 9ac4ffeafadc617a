//! `/api/workspaces/changes`: the dashboard's live feed, as server-sent events. It sends
//! the caller's workspace list whenever it differs from the last one sent (`workspaces`),
//! and names a workspace of the caller whose record or initialisation log changed
//! (`changed`), so a page streams a clone log without polling.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::sessions::admin_session_list;
use crate::workspaces::workspace_list;
use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use berth_core::preview::PreviewHosts;
use berth_core::{User, WorkspaceId};
use berth_engine::Engine;
use futures::Stream;
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/workspaces/changes", get(workspace_changes))
        .route("/api/admin/sessions/changes", get(admin_session_changes))
}

/// Changes come in bursts (a clone writes its log many times a second): they are gathered
/// for this long before the list is read again.
const GATHER: Duration = Duration::from_millis(50);

/// Server-sent events: `workspaces` with `{"workspaces": [...]}` (at once, then on every
/// change of the list), `changed` with `{"workspace_id": ...}`.
#[utoipa::path(get, path = "/api/workspaces/changes", tag = "workspaces",
    responses((status = 200, content_type = "text/event-stream",
        description = "events `workspaces` (the list, as GET /api/workspaces answers it) and `changed` ({workspace_id})"),
        (status = 401, body = crate::wire::ErrorEnvelope)))]
pub async fn workspace_changes(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let changes = state.engine.workspaces.subscribe_changes();
    let first = serde_json::to_string(&workspace_list(&state.engine, state.preview.as_ref(), &caller).await?)
        .unwrap_or_default();
    let (events, received) = mpsc::channel::<Event>(16);
    // The first list goes out before the feed task starts, so the page has it at once.
    let _ = events.try_send(Event::default().event("workspaces").data(first.clone()));
    tokio::spawn(feed(
        Arc::clone(&state.engine),
        state.preview.clone(),
        caller,
        changes,
        first,
        events,
        state.stopping.clone(),
    ));
    let stream = futures::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|event| (Ok(event), received))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(20))))
}

async fn feed(
    engine: Arc<Engine>,
    previews: Option<PreviewHosts>,
    caller: User,
    mut changes: tokio::sync::broadcast::Receiver<WorkspaceId>,
    mut last_sent: String,
    events: mpsc::Sender<Event>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    while let Some(changed) = next_burst(&mut changes, &events, &mut stopping).await {
        let Ok(list) = workspace_list(&engine, previews.as_ref(), &caller).await else { continue };
        let text = serde_json::to_string(&list).unwrap_or_default();
        if text != last_sent {
            if events.send(Event::default().event("workspaces").data(text.clone())).await.is_err() {
                return;
            }
            last_sent = text;
        }
        // Only the caller's own workspaces are named; another user's are never revealed.
        for workspace in
            list.workspaces.iter().filter(|workspace| changed.iter().any(|id| id.as_str() == workspace.id))
        {
            let data = serde_json::json!({ "workspace_id": workspace.id }).to_string();
            if events.send(Event::default().event("changed").data(data)).await.is_err() {
                return;
            }
        }
    }
}

/// The workspaces named by the next burst of changes, gathered for [`GATHER`]; `None`
/// when the feed should end (the page went, the server stops).
async fn next_burst(
    changes: &mut tokio::sync::broadcast::Receiver<WorkspaceId>,
    events: &mpsc::Sender<Event>,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<HashSet<WorkspaceId>> {
    let mut changed = HashSet::new();
    tokio::select! {
        () = events.closed() => return None,
        // The server stops: the feed ends, so the connection can close.
        _ = stopping.wait_for(|stopping| *stopping) => return None,
        received = changes.recv() => match received {
            Ok(id) => { changed.insert(id); }
            // Missed notices: the list is read again after, which covers them.
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return None,
        },
    }
    tokio::time::sleep(GATHER).await;
    while let Ok(id) = changes.try_recv() {
        changed.insert(id);
    }
    Some(changed)
}

/// Server-sent events for administrators: `sessions` with every live session of the
/// installation (as GET /api/admin/sessions answers), at once and on every change.
#[utoipa::path(get, path = "/api/admin/sessions/changes", tag = "admin",
    responses((status = 200, content_type = "text/event-stream",
        description = "events `sessions` (the list, as GET /api/admin/sessions answers it)"),
        (status = 401, body = crate::wire::ErrorEnvelope), (status = 403, body = crate::wire::ErrorEnvelope)))]
pub async fn admin_session_changes(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let mut changes = state.engine.workspaces.subscribe_changes();
    let list = |engine: Arc<Engine>, caller: User| async move {
        let sessions = admin_session_list(&engine, &caller).await?;
        Ok::<_, ApiError>(serde_json::to_string(&sessions).unwrap_or_default())
    };
    let mut last_sent = list(Arc::clone(&state.engine), caller.clone()).await?;
    let (events, received) = mpsc::channel::<Event>(16);
    let _ = events.try_send(Event::default().event("sessions").data(last_sent.clone()));
    let engine = Arc::clone(&state.engine);
    let mut stopping = state.stopping.clone();
    tokio::spawn(async move {
        while next_burst(&mut changes, &events, &mut stopping).await.is_some() {
            let Ok(text) = list(Arc::clone(&engine), caller.clone()).await else { continue };
            if text != last_sent {
                if events.send(Event::default().event("sessions").data(text.clone())).await.is_err() {
                    return;
                }
                last_sent = text;
            }
        }
    });
    let stream = futures::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|event| (Ok(event), received))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(20))))
}
