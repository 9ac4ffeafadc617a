//! berth's ACP client against the built-in agent: questions are parked until answered,
//! turns end with their stop reason, cancel reaches the agent, and a second connection
//! resumes the agent's context with `session/load`.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use agent_client_protocol::ByteStreams;
use berth_agent::builtin;
use berth_agent::client::{AgentConnection, AgentEvent, connect};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// A built-in agent on one end of an in-memory pipe, berth's client on the other.
fn start(root: &Path, resume: Option<String>) -> (AgentConnection, UnboundedReceiver<AgentEvent>) {
    let (client_side, agent_side) = tokio::io::duplex(1 << 20);
    let (agent_read, agent_write) = tokio::io::split(agent_side);
    tokio::spawn(builtin::serve(
        ByteStreams::new(agent_write.compat_write(), agent_read.compat()),
        root.to_owned(),
    ));
    let (client_read, client_write) = tokio::io::split(client_side);
    connect(client_write, client_read, berth_agent::client::WorkspaceRoots::same(root.to_owned()), resume)
}

async fn next(events: &mut UnboundedReceiver<AgentEvent>) -> AgentEvent {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("an event in time")
        .expect("open")
}

/// Events until the turn ends, answering each question with `answer`.
async fn until_turn_end(
    events: &mut UnboundedReceiver<AgentEvent>,
    answer: Option<&str>,
) -> (String, Vec<serde_json::Value>) {
    let mut updates = Vec::new();
    loop {
        match next(events).await {
            AgentEvent::Update(update) => updates.push(update.into()),
            AgentEvent::Question { answer: reply, question } => {
                assert_eq!(question.options[0].id, "allow_once", "{question:?}");
                reply.send(answer.map(str::to_owned)).unwrap();
            }
            AgentEvent::TurnEnded { stop_reason } => return (stop_reason, updates),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_prompt_asks_runs_and_ends_and_a_reconnect_resumes_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, mut events) = start(dir.path(), None);
    let AgentEvent::Ready { agent_session_id, resumed, .. } = next(&mut events).await else {
        panic!("ready first")
    };
    assert!(!resumed);

    assert!(agent.prompt("$ echo hi > f.txt".into()));
    let (stop_reason, updates) = until_turn_end(&mut events, Some("allow_once")).await;
    assert_eq!(stop_reason, "end_turn");
    assert_eq!(std::fs::read_to_string(dir.path().join("f.txt")).unwrap(), "hi\n");
    assert!(
        updates.iter().any(|u| u["sessionUpdate"] == "tool_call" && u["kind"] == "execute"),
        "{updates:?}"
    );

    assert!(agent.prompt("$ touch nope".into()));
    let (stop_reason, _) = until_turn_end(&mut events, None).await;
    assert_eq!(stop_reason, "cancelled", "a question cancelled by berth cancels the turn");
    assert!(!dir.path().join("nope").exists());
    drop(agent);

    let (_again, mut replay) = start(dir.path(), Some(agent_session_id.clone()));
    let mut replayed = Vec::new();
    let resumed = loop {
        match next(&mut replay).await {
            AgentEvent::Update(update) => replayed.push(serde_json::Value::from(update)),
            AgentEvent::Ready { agent_session_id: id, resumed, .. } => {
                assert_eq!(id, agent_session_id);
                break resumed;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(resumed);
    assert!(replayed.iter().any(|u| u["sessionUpdate"] == "user_message_chunk"), "{replayed:?}");
}

#[tokio::test]
async fn cancel_ends_a_running_command() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, mut events) = start(dir.path(), None);
    let AgentEvent::Ready { .. } = next(&mut events).await else { panic!("ready first") };
    agent.prompt("$ sleep 60".into());
    loop {
        match next(&mut events).await {
            AgentEvent::Question { answer, .. } => answer.send(Some("allow_once".into())).unwrap(),
            AgentEvent::Update(update)
                if serde_json::Value::from(update.clone())["status"] == "in_progress" =>
            {
                break;
            }
            AgentEvent::Update(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(agent.cancel());
    let (stop_reason, _) = until_turn_end(&mut events, None).await;
    assert_eq!(stop_reason, "cancelled");
}
