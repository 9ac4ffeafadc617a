//! The built-in agent (`berth agent`). Its behaviour is fixed by DESIGN.md §1 "Agents":
//!
//! - a prompt starting with `$ ` proposes to run the rest as a shell command in the
//!   workspace: a `tool_call` of kind `execute`, then `session/request_permission` with
//!   `allow_once`, `allow_always` and `reject_once`; on approval the command runs, its
//!   output streams as `tool_call_update`s, and the turn ends with a message giving the
//!   exit status; `reject_once` ends the turn without running it;
//! - `session/cancel` kills a running command and ends the turn `cancelled`;
//! - any other prompt gets a short reply saying what it can do.
//!
//! It keeps each conversation under `.berth/agent/` in the workspace, one JSON line per
//! update, so it supports `session/load`. Being the agent, it runs inside the sandbox and
//! starts the commands it was allowed to run there.

use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    AgentCapabilities, CancelNotification, ContentBlock, ContentChunk, InitializeRequest, InitializeResponse,
    LoadSessionRequest, LoadSessionResponse, NewSessionRequest, NewSessionResponse, PermissionOption,
    PermissionOptionKind, PromptRequest, PromptResponse, RequestPermissionOutcome, RequestPermissionRequest,
    SessionNotification, SessionUpdate, StopReason, ToolCall, ToolCallStatus, ToolCallUpdate,
    ToolCallUpdateFields, ToolKind,
};
use agent_client_protocol::{Client, ConnectTo};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

/// What the agent says to any prompt that is not a command.
pub const USAGE: &str = "I am berth's built-in agent. Start a message with `$ ` to run a shell command \
in the workspace, for example `$ git status`; I will ask for your permission first.";

/// The most command output a tool call carries; older output is dropped from the front.
const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// How often running output is sent on, at most.
const OUTPUT_INTERVAL: Duration = Duration::from_millis(50);

pub const ALLOW_ONCE: &str = "allow_once";
pub const ALLOW_ALWAYS: &str = "allow_always";
pub const REJECT_ONCE: &str = "reject_once";

struct AgentState {
    workspace: PathBuf,
    /// The turn running in each session, to cancel it.
    turns: Mutex<HashMap<String, CancellationToken>>,
    /// Commands allowed for good (`allow_always`) in each session.
    always_allowed: Mutex<HashMap<String, Vec<String>>>,
}

impl AgentState {
    fn history_path(&self, session_id: &str) -> PathBuf {
        self.workspace.join(".berth").join("agent").join(format!("{session_id}.jsonl"))
    }

    /// Appends `update` to the session's history before it is sent.
    fn record(&self, session_id: &str, update: &SessionUpdate) -> std::io::Result<()> {
        use std::io::Write;
        let path = self.history_path(session_id);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let mut line = serde_json::to_vec(update).map_err(std::io::Error::other)?;
        line.push(b'\n');
        file.write_all(&line)
    }

    fn history(&self, session_id: &str) -> std::io::Result<Vec<SessionUpdate>> {
        let text = std::fs::read_to_string(self.history_path(session_id))?;
        Ok(text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect())
    }

    fn lock_turns(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.turns.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The process groups of the commands running now. Each command runs in a group of its
/// own (so a cancel ends all it started); when the agent is told to stop (SIGTERM, or its
/// client goes away) they are killed with it, so none outlives the agent.
static COMMAND_GROUPS: Mutex<std::collections::BTreeSet<i32>> = Mutex::new(std::collections::BTreeSet::new());

fn command_groups() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<i32>> {
    COMMAND_GROUPS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn kill_commands() {
    for pgid in std::mem::take(&mut *command_groups()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Session ids are used as file names: only what `new_session_id` makes is accepted.
fn valid_session_id(id: &str) -> bool {
    id.len() == 24 && id.starts_with("berth-") && id[6..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn new_session_id() -> String {
    let bytes: [u8; 9] = rand::random();
    format!("berth-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Runs the built-in agent on this process's stdin and stdout, in the current directory.
pub async fn serve_stdio() -> Result<(), agent_client_protocol::Error> {
    let workspace = std::env::current_dir().map_err(agent_client_protocol::Error::into_internal_error)?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(agent_client_protocol::Error::into_internal_error)?;
    let outcome = tokio::select! {
        outcome = serve(agent_client_protocol::Stdio::new(), workspace) => outcome,
        _ = terminate.recv() => Ok(()),
    };
    kill_commands();
    outcome
}

/// Runs the built-in agent over `transport` for the workspace at `workspace`.
pub async fn serve(
    transport: impl ConnectTo<agent_client_protocol::Agent>,
    workspace: PathBuf,
) -> Result<(), agent_client_protocol::Error> {
    let state = Arc::new(AgentState {
        workspace,
        turns: Mutex::new(HashMap::new()),
        always_allowed: Mutex::new(HashMap::new()),
    });
    let (on_new, on_load, on_prompt, on_cancel) = (state.clone(), state.clone(), state.clone(), state);
    agent_client_protocol::Agent
        .v1()
        .name("berth-agent")
        .on_receive_request(
            async move |request: InitializeRequest, responder, _cx| {
                responder.respond(
                    InitializeResponse::new(request.protocol_version)
                        .agent_capabilities(AgentCapabilities::new().load_session(true)),
                )
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |_request: NewSessionRequest, responder, _cx| {
                let session_id = new_session_id();
                // An empty history marks the session as one of ours for a later load.
                if let Err(error) =
                    on_new.history_path(&session_id).parent().map(std::fs::create_dir_all).transpose()
                {
                    return responder
                        .respond_with_error(agent_client_protocol::Error::into_internal_error(error));
                }
                let _ = std::fs::File::create(on_new.history_path(&session_id));
                responder.respond(NewSessionResponse::new(session_id))
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: LoadSessionRequest, responder, cx: ConnectionTo<Client>| {
                let session_id = request.session_id.to_string();
                let history =
                    if valid_session_id(&session_id) { on_load.history(&session_id).ok() } else { None };
                let Some(history) = history else {
                    return responder.respond_with_error(
                        agent_client_protocol::Error::invalid_params()
                            .data(format!("no session {session_id} here")),
                    );
                };
                for update in history {
                    cx.send_notification(SessionNotification::new(request.session_id.clone(), update))?;
                }
                responder.respond(LoadSessionResponse::new())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: PromptRequest, responder, cx: ConnectionTo<Client>| {
                let session_id = request.session_id.to_string();
                if !valid_session_id(&session_id) {
                    return responder.respond_with_error(
                        agent_client_protocol::Error::invalid_params().data("unknown session"),
                    );
                }
                let cancel = CancellationToken::new();
                on_prompt.lock_turns().insert(session_id.clone(), cancel.clone());
                let state = on_prompt.clone();
                // The turn runs outside the dispatch loop: it waits on the client's answer
                // to a permission request, which the loop must stay free to deliver.
                cx.spawn({
                    let cx = cx.clone();
                    async move {
                        let turn = Turn { state: &state, cx: &cx, request: &request, cancel: &cancel };
                        let outcome = turn.run().await;
                        state.lock_turns().remove(&session_id);
                        match outcome {
                            Ok(stop_reason) => responder.respond(PromptResponse::new(stop_reason)),
                            Err(error) => responder.respond_with_error(error),
                        }
                    }
                })
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_notification(
            async move |notification: CancelNotification, _cx| {
                if let Some(turn) = on_cancel.lock_turns().get(notification.session_id.0.as_ref()) {
                    turn.cancel();
                }
                Ok(())
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .connect_to(transport)
        .await
}

/// One prompt, from the user's message to the stop reason.
struct Turn<'a> {
    state: &'a AgentState,
    cx: &'a ConnectionTo<Client>,
    request: &'a PromptRequest,
    cancel: &'a CancellationToken,
}

impl Turn<'_> {
    fn session_id(&self) -> String {
        self.request.session_id.to_string()
    }

    /// Records the update in the history, then sends it.
    fn send(&self, update: SessionUpdate) -> Result<(), agent_client_protocol::Error> {
        self.state
            .record(&self.session_id(), &update)
            .map_err(agent_client_protocol::Error::into_internal_error)?;
        self.cx.send_notification(SessionNotification::new(self.request.session_id.clone(), update))
    }

    fn say(&self, text: impl Into<String>) -> Result<(), agent_client_protocol::Error> {
        self.send(SessionUpdate::AgentMessageChunk(ContentChunk::new(ContentBlock::from(text.into()))))
    }

    async fn run(&self) -> Result<StopReason, agent_client_protocol::Error> {
        let text: String = self
            .request
            .prompt
            .iter()
            .filter_map(|block| match block {
                ContentBlock::Text(text) => Some(text.text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n");
        // The user's words are kept for `session/load`; the client already shows them.
        self.state
            .record(
                &self.session_id(),
                &SessionUpdate::UserMessageChunk(ContentChunk::new(ContentBlock::from(text.clone()))),
            )
            .map_err(agent_client_protocol::Error::into_internal_error)?;
        match text.strip_prefix("$ ").map(str::trim).filter(|command| !command.is_empty()) {
            Some(command) => self.run_command(command).await,
            None => {
                self.say(USAGE)?;
                Ok(StopReason::EndTurn)
            }
        }
    }

    async fn run_command(&self, command: &str) -> Result<StopReason, agent_client_protocol::Error> {
        let call_id = format!("call-{}", new_session_id().trim_start_matches("berth-"));
        let title = format!("Run `{command}`");
        self.send(SessionUpdate::ToolCall(
            ToolCall::new(call_id.clone(), title.clone())
                .kind(ToolKind::Execute)
                .status(ToolCallStatus::Pending)
                .raw_input(serde_json::json!({ "command": command })),
        ))?;

        let already_allowed = self
            .state
            .always_allowed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&self.session_id())
            .is_some_and(|commands| commands.iter().any(|c| c == command));
        if !already_allowed {
            let question = RequestPermissionRequest::new(
                self.request.session_id.clone(),
                ToolCallUpdate::new(
                    call_id.clone(),
                    ToolCallUpdateFields::new().title(title.clone()).kind(ToolKind::Execute),
                ),
                vec![
                    PermissionOption::new(ALLOW_ONCE, "Allow once", PermissionOptionKind::AllowOnce),
                    PermissionOption::new(
                        ALLOW_ALWAYS,
                        "Always allow this command",
                        PermissionOptionKind::AllowAlways,
                    ),
                    PermissionOption::new(REJECT_ONCE, "Reject", PermissionOptionKind::RejectOnce),
                ],
            );
            let answer = tokio::select! {
                answer = self.cx.send_request(question).block_task() => answer?,
                () = self.cancel.cancelled() => return self.finish_cancelled(&call_id),
            };
            let chosen = match answer.outcome {
                RequestPermissionOutcome::Selected(selected) => selected.option_id.to_string(),
                RequestPermissionOutcome::Cancelled => return self.finish_cancelled(&call_id),
                _ => REJECT_ONCE.to_owned(),
            };
            match chosen.as_str() {
                ALLOW_ONCE => {}
                ALLOW_ALWAYS => {
                    self.state
                        .always_allowed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .entry(self.session_id())
                        .or_default()
                        .push(command.to_owned());
                }
                _ => {
                    self.send(SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
                        call_id.clone(),
                        ToolCallUpdateFields::new()
                            .status(ToolCallStatus::Failed)
                            .content(vec!["Rejected: not run.".into()]),
                    )))?;
                    self.say(format!("I did not run `{command}`."))?;
                    return Ok(StopReason::EndTurn);
                }
            }
        }
        self.execute(&call_id, command).await
    }

    fn finish_cancelled(&self, call_id: &str) -> Result<StopReason, agent_client_protocol::Error> {
        self.send(SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
            call_id.to_owned(),
            ToolCallUpdateFields::new().status(ToolCallStatus::Failed).content(vec!["Cancelled.".into()]),
        )))?;
        Ok(StopReason::Cancelled)
    }

    async fn execute(
        &self,
        call_id: &str,
        command: &str,
    ) -> Result<StopReason, agent_client_protocol::Error> {
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .current_dir(&self.state.workspace)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(agent_client_protocol::Error::into_internal_error)?;
        let pgid = child.id().and_then(|pid| i32::try_from(pid).ok());
        // Forgotten again when this function returns, however it returns; and if it is
        // dropped before the command ended (the agent is stopping), the command's whole
        // group is killed — killing only the shell would leave its children running.
        struct Registered {
            pgid: Option<i32>,
            ended: bool,
        }
        impl Drop for Registered {
            fn drop(&mut self) {
                if let Some(pgid) = self.pgid {
                    command_groups().remove(&pgid);
                    if !self.ended {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pgid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
        if let Some(pgid) = pgid {
            command_groups().insert(pgid);
        }
        let mut registered = Registered { pgid, ended: false };
        let update = |status: ToolCallStatus, output: &[u8]| {
            let text = String::from_utf8_lossy(output).into_owned();
            SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
                call_id.to_owned(),
                ToolCallUpdateFields::new().status(status).content(vec![text.into()]),
            ))
        };
        self.send(update(ToolCallStatus::InProgress, b""))?;

        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        for pipe in [child.stdout.take().map(boxed), child.stderr.take().map(boxed)].into_iter().flatten() {
            let sender = sender.clone();
            tokio::spawn(forward_output(pipe, sender));
        }
        drop(sender);

        let mut output = Vec::new();
        let mut unsent = false;
        let mut ticker = tokio::time::interval(OUTPUT_INTERVAL);
        loop {
            tokio::select! {
                chunk = receiver.recv() => match chunk {
                    Some(chunk) => {
                        output.extend_from_slice(&chunk);
                        if output.len() > MAX_OUTPUT_BYTES {
                            output.drain(..output.len() - MAX_OUTPUT_BYTES);
                        }
                        unsent = true;
                    }
                    None => break,
                },
                _ = ticker.tick() => {
                    if unsent {
                        self.send(update(ToolCallStatus::InProgress, &output))?;
                        unsent = false;
                    }
                }
                () = self.cancel.cancelled() => {
                    if let Some(pgid) = pgid {
                        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
                    }
                    let _ = child.wait().await;
                    self.send(update(ToolCallStatus::Failed, &output))?;
                    return Ok(StopReason::Cancelled);
                }
            }
        }
        let status = child.wait().await.map_err(agent_client_protocol::Error::into_internal_error)?;
        registered.ended = true;
        let final_status = if status.success() { ToolCallStatus::Completed } else { ToolCallStatus::Failed };
        self.send(update(final_status, &output))?;
        let described = match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_owned(),
        };
        self.say(format!("`{command}` {described}."))?;
        Ok(StopReason::EndTurn)
    }
}

fn boxed(
    pipe: impl tokio::io::AsyncRead + Send + Unpin + 'static,
) -> Box<dyn tokio::io::AsyncRead + Send + Unpin> {
    Box::new(pipe)
}

async fn forward_output(
    mut pipe: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    sender: tokio::sync::mpsc::Sender<Vec<u8>>,
) {
    let mut buffer = vec![0u8; 8192];
    while let Ok(read) = pipe.read(&mut buffer).await {
        if read == 0 || sender.send(buffer[..read].to_vec()).await.is_err() {
            break;
        }
    }
}

/// Where the built-in agent keeps the history of `session_id` inside `workspace`.
pub fn history_path(workspace: &Path, session_id: &str) -> PathBuf {
    workspace.join(".berth").join("agent").join(format!("{session_id}.jsonl"))
}
