//! The built-in agent spoken to over ACP by an in-process client: commands run only with
//! permission, rejection runs nothing, cancel kills the command, other prompts get the
//! usage reply, and `session/load` replays the conversation from the workspace.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    CancelNotification, ContentBlock, InitializeRequest, LoadSessionRequest, NewSessionRequest,
    PromptRequest, RequestPermissionOutcome, RequestPermissionRequest, RequestPermissionResponse,
    SelectedPermissionOutcome, SessionId, SessionNotification, SessionUpdate, StopReason, ToolCallStatus,
};
use agent_client_protocol::{Agent, ByteStreams, Client};
use berth_agent::builtin;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// What the client saw: every session update and every permission question.
#[derive(Clone, Default)]
struct Seen {
    updates: Arc<Mutex<Vec<SessionUpdate>>>,
    questions: Arc<Mutex<Vec<RequestPermissionRequest>>>,
}

impl Seen {
    fn updates(&self) -> Vec<SessionUpdate> {
        self.updates.lock().unwrap().clone()
    }

    fn agent_text(&self) -> String {
        self.updates()
            .iter()
            .filter_map(|update| match update {
                SessionUpdate::AgentMessageChunk(chunk) => match &chunk.content {
                    ContentBlock::Text(text) => Some(text.text.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn tool_statuses(&self) -> Vec<ToolCallStatus> {
        self.updates()
            .iter()
            .filter_map(|update| match update {
                SessionUpdate::ToolCall(call) => Some(call.status),
                SessionUpdate::ToolCallUpdate(update) => update.fields.status,
                _ => None,
            })
            .collect()
    }
}

/// Connects a client to a fresh built-in agent for `workspace`, answers every permission
/// question with `answer`, and runs `body` with the connection.
async fn with_agent<F, Fut, T>(workspace: &Path, answer: &'static str, body: F) -> (T, Seen)
where
    F: FnOnce(ConnectionTo<Agent>, Seen) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, agent_client_protocol::Error>> + Send,
    T: Send + 'static,
{
    let (client_side, agent_side) = tokio::io::duplex(1 << 20);
    let (agent_read, agent_write) = tokio::io::split(agent_side);
    let agent = tokio::spawn(builtin::serve(
        ByteStreams::new(agent_write.compat_write(), agent_read.compat()),
        workspace.to_owned(),
    ));
    let seen = Seen::default();
    let (updates, questions) = (seen.updates.clone(), seen.questions.clone());
    let (result_sender, mut result) = mpsc::channel(1);
    let (client_read, client_write) = tokio::io::split(client_side);
    let body_seen = seen.clone();
    Client
        .v1()
        .on_receive_notification(
            async move |notification: SessionNotification, _cx| {
                updates.lock().unwrap().push(notification.update);
                Ok(())
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .on_receive_request(
            async move |request: RequestPermissionRequest, responder, _cx| {
                questions.lock().unwrap().push(request);
                responder.respond(RequestPermissionResponse::new(RequestPermissionOutcome::Selected(
                    SelectedPermissionOutcome::new(answer),
                )))
            },
            agent_client_protocol::on_receive_request!(),
        )
        .connect_with(ByteStreams::new(client_write.compat_write(), client_read.compat()), async move |cx| {
            cx.send_request(InitializeRequest::new(ProtocolVersion::V1)).block_task().await?;
            let value = body(cx, body_seen).await?;
            let _ = result_sender.send(value).await;
            Ok(())
        })
        .await
        .unwrap();
    agent.abort();
    (result.recv().await.unwrap(), seen)
}

async fn new_session(
    cx: &ConnectionTo<Agent>,
    workspace: &Path,
) -> Result<SessionId, agent_client_protocol::Error> {
    Ok(cx.send_request(NewSessionRequest::new(workspace.to_owned())).block_task().await?.session_id)
}

async fn prompt(
    cx: &ConnectionTo<Agent>,
    session: &SessionId,
    text: &str,
) -> Result<StopReason, agent_client_protocol::Error> {
    let request = PromptRequest::new(session.clone(), vec![ContentBlock::from(text.to_owned())]);
    Ok(cx.send_request(request).block_task().await?.stop_reason)
}

fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    (dir, path)
}

#[tokio::test]
async fn an_allowed_command_runs_in_the_workspace_and_reports_its_exit_status() {
    let (_dir, path) = workspace();
    let root = path.clone();
    let (stop, seen) = with_agent(&path, builtin::ALLOW_ONCE, async move |cx, _| {
        let session = new_session(&cx, &root).await?;
        prompt(&cx, &session, "$ echo hi > f.txt && echo done").await
    })
    .await;
    assert_eq!(stop, StopReason::EndTurn);
    assert_eq!(std::fs::read_to_string(path.join("f.txt")).unwrap(), "hi\n");
    let questions = seen.questions.lock().unwrap().clone();
    assert_eq!(questions.len(), 1);
    let options: Vec<String> = questions[0].options.iter().map(|o| o.option_id.to_string()).collect();
    assert_eq!(options, ["allow_once", "allow_always", "reject_once"]);
    let statuses = seen.tool_statuses();
    assert_eq!(statuses.first(), Some(&ToolCallStatus::Pending));
    assert_eq!(statuses.last(), Some(&ToolCallStatus::Completed));
    assert!(seen.agent_text().contains("exited with status 0"), "{}", seen.agent_text());
    let output_seen = seen.updates().iter().any(|update| {
        matches!(update, SessionUpdate::ToolCallUpdate(u) if serde_json::to_string(&u.fields.content).unwrap().contains("done"))
    });
    assert!(output_seen, "the command's output reaches the client");
}

#[tokio::test]
async fn a_rejected_command_does_not_run() {
    let (_dir, path) = workspace();
    let root = path.clone();
    let (stop, seen) = with_agent(&path, builtin::REJECT_ONCE, async move |cx, _| {
        let session = new_session(&cx, &root).await?;
        prompt(&cx, &session, "$ touch should-not-exist").await
    })
    .await;
    assert_eq!(stop, StopReason::EndTurn);
    assert!(!path.join("should-not-exist").exists());
    assert_eq!(seen.tool_statuses().last(), Some(&ToolCallStatus::Failed));
    assert!(seen.agent_text().contains("did not run"));
}

#[tokio::test]
async fn cancel_kills_the_running_command_and_ends_the_turn_cancelled() {
    let (_dir, path) = workspace();
    let root = path.clone();
    let (stop, _) = with_agent(&path, builtin::ALLOW_ONCE, async move |cx, seen| {
        let session = new_session(&cx, &root).await?;
        let request = PromptRequest::new(
            session.clone(),
            vec![ContentBlock::from("$ echo $$ > sleep.pid; exec sleep 60".to_owned())],
        );
        let turn = cx.send_request(request).block_task();
        let canceller = async {
            // Cancel once the command runs (its pid file is there).
            while !root.join("sleep.pid").exists()
                || seen.tool_statuses().last() != Some(&ToolCallStatus::InProgress)
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            cx.send_notification(CancelNotification::new(session.clone()))
        };
        let (response, cancelled) = tokio::join!(turn, canceller);
        cancelled?;
        Ok(response?.stop_reason)
    })
    .await;
    assert_eq!(stop, StopReason::Cancelled);
    let pid: i32 = std::fs::read_to_string(path.join("sleep.pid")).unwrap().trim().parse().unwrap();
    let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true);
    assert!(gone, "the cancelled command's process is gone");
}

#[tokio::test]
async fn other_prompts_get_the_usage_reply() {
    let (_dir, path) = workspace();
    let root = path.clone();
    let (stop, seen) = with_agent(&path, builtin::ALLOW_ONCE, async move |cx, _| {
        let session = new_session(&cx, &root).await?;
        prompt(&cx, &session, "hello, what can you do?").await
    })
    .await;
    assert_eq!(stop, StopReason::EndTurn);
    assert_eq!(seen.agent_text(), builtin::USAGE);
    assert!(seen.questions.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_session_is_loaded_back_from_the_workspace() {
    let (_dir, path) = workspace();
    let root = path.clone();
    let (session, first) = with_agent(&path, builtin::ALLOW_ONCE, async move |cx, _| {
        let session = new_session(&cx, &root).await?;
        prompt(&cx, &session, "$ echo remembered").await?;
        Ok(session)
    })
    .await;
    // A new agent process, as after the sandbox powered off and on again.
    let root = path.clone();
    let loaded_session = session.clone();
    let ((), replay) = with_agent(&path, builtin::ALLOW_ONCE, async move |cx, _| {
        cx.send_request(LoadSessionRequest::new(loaded_session, root)).block_task().await?;
        Ok(())
    })
    .await;
    let replayed = replay.updates();
    assert!(matches!(replayed.first(), Some(SessionUpdate::UserMessageChunk(_))), "{replayed:?}");
    let first_updates = first.updates();
    assert_eq!(replayed[1..], first_updates[..], "every update the client saw comes back, in order");

    let root = path.clone();
    let ((), refused) = with_agent(&path, builtin::ALLOW_ONCE, async move |cx, _| {
        let unknown = LoadSessionRequest::new(SessionId::new("../../etc/passwd"), root);
        assert!(cx.send_request(unknown).block_task().await.is_err());
        Ok(())
    })
    .await;
    assert!(refused.updates().is_empty());
}
