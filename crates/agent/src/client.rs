//! berth's side of ACP: connects to an agent's stdin/stdout, initialises (advertising
//! text-file reads and writes confined to the workspace), resumes the agent's earlier
//! session with `session/load` when it can, else starts a new one, and then turns the
//! agent's traffic into [`AgentEvent`]s and berth's commands into requests.
//!
//! Nothing here blocks the connection's dispatch loop: a permission request is parked
//! (its answer travels back through a oneshot channel) and prompts run in tasks.

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    AuthMethod, AuthenticateRequest, CancelNotification, ClientCapabilities, ContentBlock,
    FileSystemCapabilities, InitializeRequest, LoadSessionRequest, NewSessionRequest, PromptRequest,
    ReadTextFileRequest, ReadTextFileResponse, RequestPermissionOutcome, RequestPermissionRequest,
    RequestPermissionResponse, SelectedPermissionOutcome, SessionId, SessionNotification,
    WriteTextFileRequest, WriteTextFileResponse,
};
use agent_client_protocol::{Agent, ByteStreams, Client};
use serde_json::Value;
use std::path::{Component, Path, PathBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// What the agent did, in the order it did it. Everything ACP is read here: the rest of
/// berth names no protocol field or error number.
#[derive(Debug)]
pub enum AgentEvent {
    /// The connection is up; `resumed` when the agent's earlier session was loaded.
    Ready { agent_session_id: String, resumed: bool, handshake: Handshake },
    /// One `session/update`.
    Update(Update),
    /// A permission request; answer with an option id, or `None` to cancel it.
    Question { question: Question, answer: oneshot::Sender<Option<String>> },
    /// A prompt's turn ended (`end_turn`, `cancelled`, `max_tokens`, …).
    TurnEnded { stop_reason: String },
    /// A prompt failed.
    TurnFailed(TurnFailure),
    /// The agent will not start a session without credentials (ACP `auth_required`).
    NeedsCredentials,
    /// The connection ended; the reason when it was an error.
    Closed { error: Option<String> },
}

/// How long the handshake took: from the connection's start to `initialize`'s answer
/// (the agent's own start is in it), then to its session (`authenticate` when it asked,
/// and `session/new` or `session/load`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Handshake {
    pub initialize: std::time::Duration,
    pub session: std::time::Duration,
}

/// One `session/update` as berth stores it: the event kind it is (`agent_message` for
/// the agent's text chunks, `tool_call`, `plan`, … — an unknown update keeps its own name,
/// so nothing is lost) and the update as JSON text, serialised once, here.
#[derive(Debug, Clone)]
pub struct Update {
    pub kind: String,
    pub data: String,
}

impl Update {
    fn new(update: &impl serde::Serialize) -> Update {
        let value = serde_json::to_value(update).unwrap_or(Value::Null);
        let kind = event_kind(value["sessionUpdate"].as_str().unwrap_or("agent_update")).to_owned();
        Update { kind, data: value.to_string() }
    }
}

/// The update's JSON, for a reader that needs its fields (tests).
impl From<Update> for Value {
    fn from(update: Update) -> Value {
        serde_json::from_str(&update.data).unwrap_or(Value::Null)
    }
}

/// The event kind for an ACP `session/update` variant (its `sessionUpdate` name).
pub fn event_kind(session_update: &str) -> &str {
    match session_update {
        "agent_message_chunk" => "agent_message",
        "agent_thought_chunk" => "agent_thought",
        "user_message_chunk" => "user_message",
        other => other,
    }
}

/// A permission request as people are asked it.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub title: String,
    pub options: Vec<QuestionOption>,
    /// The tool call it is about, as the agent described it (its `toolCallId` links the
    /// question to the call).
    pub tool_call: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionOption {
    pub id: String,
    pub label: String,
    /// `allow_once`, `allow_always`, `reject_once`, `reject_always`.
    pub kind: String,
}

impl Question {
    fn from_request(request: &Value) -> Question {
        let tool_call = request.get("toolCall").cloned().unwrap_or(Value::Null);
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        let options = request["options"]
            .as_array()
            .map(|options| {
                options
                    .iter()
                    .map(|option| QuestionOption {
                        id: text(&option["optionId"]),
                        label: text(&option["name"]),
                        kind: text(&option["kind"]),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let title = tool_call["title"].as_str().unwrap_or("The agent asks for permission").to_owned();
        Question { title, options, tool_call }
    }
}

/// Why a turn failed, as berth tells people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnFailure {
    /// The agent wants credentials it does not have (ACP `auth_required`).
    AuthRequired,
    /// The connection to the agent broke under the turn.
    Disconnected,
    /// The agent refused or failed the turn; its words when they are one plain line.
    Failed { message: Option<String> },
}

impl TurnFailure {
    fn from_error(code: i32, message: &str) -> TurnFailure {
        let lowered = message.to_ascii_lowercase();
        if code == AUTH_REQUIRED {
            return TurnFailure::AuthRequired;
        }
        if code == INTERNAL_ERROR || lowered.contains("transport") || lowered.contains("connection closed") {
            return TurnFailure::Disconnected;
        }
        let line = message.lines().next().unwrap_or_default().trim().trim_end_matches('.');
        let plain = !line.is_empty() && !line.contains(['{', '}']) && line.len() <= 300;
        TurnFailure::Failed { message: plain.then(|| line.to_owned()) }
    }
}

/// JSON-RPC's "internal error": what a broken connection to the agent reads as.
const INTERNAL_ERROR: i32 = -32603;

enum Command {
    Prompt(String),
    Cancel,
}

/// A live connection to an agent. Dropping it closes the agent's input.
pub struct AgentConnection {
    commands: mpsc::UnboundedSender<Command>,
}

impl AgentConnection {
    /// Sends a prompt; its updates and its end arrive as events.
    pub fn prompt(&self, text: String) -> bool {
        self.commands.send(Command::Prompt(text)).is_ok()
    }

    /// Asks the agent to stop the running turn.
    pub fn cancel(&self) -> bool {
        self.commands.send(Command::Cancel).is_ok()
    }
}

/// The workspace seen from both sides: where its files are on this machine, and where the
/// agent sees them (its working directory, `/workspace` in a sandbox).
#[derive(Debug, Clone)]
pub struct WorkspaceRoots {
    pub host: PathBuf,
    pub agent: PathBuf,
}

impl WorkspaceRoots {
    /// The same directory on both sides (an agent that is not sandboxed).
    pub fn same(root: PathBuf) -> WorkspaceRoots {
        WorkspaceRoots { host: root.clone(), agent: root }
    }

    /// The path beneath the workspace the agent means by `path`: absolute, under its
    /// workspace, no `..`. What it leads to is resolved only by [`crate::files`].
    fn relative_path(&self, path: &Path) -> Option<PathBuf> {
        let relative = path.strip_prefix(&self.agent).ok()?;
        let plain = relative.components().all(|component| matches!(component, Component::Normal(_)));
        (plain && !relative.as_os_str().is_empty()).then(|| relative.to_owned())
    }

    async fn read(&self, path: &Path) -> Result<String, agent_client_protocol::Error> {
        let relative = self.relative_path(path).ok_or_else(|| outside_workspace(path))?;
        let host = self.host.clone();
        match tokio::task::spawn_blocking(move || crate::files::read_text(&host, &relative)).await {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(error)) => Err(agent_client_protocol::Error::into_internal_error(error)),
            Err(error) => Err(agent_client_protocol::Error::into_internal_error(error)),
        }
    }

    async fn write(&self, path: &Path, content: String) -> Result<(), agent_client_protocol::Error> {
        let relative = self.relative_path(path).ok_or_else(|| outside_workspace(path))?;
        let host = self.host.clone();
        match tokio::task::spawn_blocking(move || {
            crate::files::write_text(&host, &relative, content.as_bytes())
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(agent_client_protocol::Error::into_internal_error(error)),
            Err(error) => Err(agent_client_protocol::Error::into_internal_error(error)),
        }
    }
}

/// Connects to an agent over its standard streams. `resume` is the agent session id of an
/// earlier session of this workspace, to be loaded when the agent supports it.
pub fn connect(
    stdin: impl tokio::io::AsyncWrite + Send + Unpin + 'static,
    stdout: impl tokio::io::AsyncRead + Send + Unpin + 'static,
    roots: WorkspaceRoots,
    resume: Option<String>,
) -> (AgentConnection, mpsc::UnboundedReceiver<AgentEvent>) {
    let (events, event_receiver) = mpsc::unbounded_channel();
    let (commands, command_receiver) = mpsc::unbounded_channel();
    let transport = ByteStreams::new(stdin.compat_write(), stdout.compat());
    let closing = events.clone();
    tokio::spawn(async move {
        let outcome = run(transport, roots, resume, events, command_receiver).await;
        let _ = closing.send(AgentEvent::Closed { error: outcome.err().map(|error| error.to_string()) });
    });
    (AgentConnection { commands }, event_receiver)
}

async fn run(
    transport: impl agent_client_protocol::ConnectTo<Client> + 'static,
    roots: WorkspaceRoots,
    resume: Option<String>,
    events: mpsc::UnboundedSender<AgentEvent>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> Result<(), agent_client_protocol::Error> {
    let (updates, questions) = (events.clone(), events.clone());
    let (read_roots, write_roots) = (roots.clone(), roots.clone());
    let workspace_root = roots.agent.clone();
    Client
        .v1()
        .name("berth")
        .on_receive_notification(
            async move |notification: SessionNotification, _cx| {
                let _ = updates.send(AgentEvent::Update(Update::new(&notification.update)));
                Ok(())
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .on_receive_request(
            async move |request: RequestPermissionRequest, responder, cx: ConnectionTo<Agent>| {
                let (answer, answered) = oneshot::channel();
                let raw = serde_json::to_value(&request).unwrap_or(Value::Null);
                let question = Question::from_request(&raw);
                let _ = questions.send(AgentEvent::Question { question, answer });
                // Parked: the answer may take minutes; the dispatch loop goes on.
                cx.spawn(async move {
                    let outcome = match answered.await {
                        Ok(Some(option_id)) => {
                            RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(option_id))
                        }
                        _ => RequestPermissionOutcome::Cancelled,
                    };
                    responder.respond(RequestPermissionResponse::new(outcome))
                })
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: ReadTextFileRequest, responder, _cx| match read_roots
                .read(&request.path)
                .await
            {
                Ok(text) => responder.respond(ReadTextFileResponse::new(select_lines(
                    &text,
                    request.line,
                    request.limit,
                ))),
                Err(error) => responder.respond_with_error(error),
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: WriteTextFileRequest, responder, _cx| match write_roots
                .write(&request.path, request.content)
                .await
            {
                Ok(()) => responder.respond(WriteTextFileResponse::new()),
                Err(error) => responder.respond_with_error(error),
            },
            agent_client_protocol::on_receive_request!(),
        )
        .connect_with(transport, async move |cx: ConnectionTo<Agent>| {
            let started = std::time::Instant::now();
            let capabilities = ClientCapabilities::new()
                .fs(FileSystemCapabilities::new().read_text_file(true).write_text_file(true));
            let initialized = cx
                .send_request(InitializeRequest::new(ProtocolVersion::V1).client_capabilities(capabilities))
                .block_task()
                .await?;
            let initialize = started.elapsed();
            // An agent that takes an API key from its environment (the person's secret)
            // is told to use it before a session is asked for: Codex's adapter refuses
            // `session/new` until then.
            if let Some(method) = api_key_method(&initialized.auth_methods) {
                let authenticated = cx.send_request(AuthenticateRequest::new(method.id().clone())).block_task().await;
                if let Err(error) = authenticated {
                    tracing::info!(method = %method.id(), error = %error.message, "the agent refused its API key");
                }
            }
            let (session_id, resumed) = match resume.filter(|_| initialized.agent_capabilities.load_session) {
                Some(previous) => {
                    let load =
                        LoadSessionRequest::new(SessionId::new(previous.clone()), workspace_root.clone());
                    match cx.send_request(load).block_task().await {
                        Ok(_) => (SessionId::new(previous), true),
                        Err(_) => (new_session(&cx, &workspace_root, &events).await?, false),
                    }
                }
                None => (new_session(&cx, &workspace_root, &events).await?, false),
            };
            let handshake = Handshake { initialize, session: started.elapsed().saturating_sub(initialize) };
            let _ = events.send(AgentEvent::Ready { agent_session_id: session_id.to_string(), resumed, handshake });
            while let Some(command) = commands.recv().await {
                match command {
                    Command::Prompt(text) => {
                        let request = PromptRequest::new(session_id.clone(), vec![ContentBlock::from(text)]);
                        let events = events.clone();
                        let cx_for_turn = cx.clone();
                        cx.spawn(async move {
                            let event = match cx_for_turn.send_request(request).block_task().await {
                                Ok(response) => AgentEvent::TurnEnded {
                                    stop_reason: serde_json::to_value(response.stop_reason)
                                        .ok()
                                        .and_then(|value| value.as_str().map(str::to_owned))
                                        .unwrap_or_else(|| "end_turn".to_owned()),
                                },
                                // The sentence only: the error's data is protocol detail.
                                Err(error) => AgentEvent::TurnFailed(TurnFailure::from_error(
                                    error.code.into(),
                                    &error.message,
                                )),
                            };
                            let _ = events.send(event);
                            Ok(())
                        })?;
                    }
                    Command::Cancel => cx.send_notification(CancelNotification::new(session_id.clone()))?,
                }
            }
            Ok(())
        })
        .await
}

async fn new_session(
    cx: &ConnectionTo<Agent>,
    root: &Path,
    events: &mpsc::UnboundedSender<AgentEvent>,
) -> Result<SessionId, agent_client_protocol::Error> {
    match cx.send_request(NewSessionRequest::new(root.to_owned())).block_task().await {
        Ok(response) => Ok(response.session_id),
        Err(error) => {
            if i32::from(error.code) == AUTH_REQUIRED {
                let _ = events.send(AgentEvent::NeedsCredentials);
            }
            Err(error)
        }
    }
}

/// The authentication method an agent announces for an API key in its environment: one
/// it handles itself (not a terminal login) whose id or name says "API key".
fn api_key_method(methods: &[AuthMethod]) -> Option<&AuthMethod> {
    let squeezed = |text: &str| text.to_lowercase().replace(['-', '_', ' '], "");
    methods.iter().find(|method| {
        matches!(method, AuthMethod::Agent(_))
            && (squeezed(&method.id().to_string()).contains("apikey")
                || squeezed(method.name()).contains("apikey"))
    })
}

/// ACP's error code for "authentication required".
const AUTH_REQUIRED: i32 = -32000;

fn outside_workspace(path: &Path) -> agent_client_protocol::Error {
    agent_client_protocol::Error::invalid_params()
        .data(format!("{} is outside the workspace", path.display()))
}

fn select_lines(text: &str, line: Option<u32>, limit: Option<u32>) -> String {
    if line.is_none() && limit.is_none() {
        return text.to_owned();
    }
    let skip = line.map_or(0, |line| line.saturating_sub(1) as usize);
    let take = limit.map_or(usize::MAX, |limit| limit as usize);
    text.lines().skip(skip).take(take).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_api_key_method_is_found_by_its_id_or_name_and_a_terminal_login_is_not() {
        let methods = |json: serde_json::Value| serde_json::from_value::<Vec<AuthMethod>>(json).unwrap();
        let codex = methods(serde_json::json!([
            { "id": "chatgpt", "name": "Log in with ChatGPT" },
            { "id": "api-key", "name": "Use OPENAI_API_KEY" },
        ]));
        assert_eq!(api_key_method(&codex).map(|method| method.id().to_string()), Some("api-key".into()));
        let gemini = methods(serde_json::json!([
            { "id": "oauth-personal", "name": "Log in with Google" },
            { "id": "gemini-api-key", "name": "Use Gemini API key" },
        ]));
        assert_eq!(
            api_key_method(&gemini).map(|method| method.id().to_string()),
            Some("gemini-api-key".into())
        );
        let login_only = methods(serde_json::json!([
            { "id": "claude-login", "name": "Log in", "type": "terminal", "args": ["/login"] },
        ]));
        assert!(api_key_method(&login_only).is_none());
    }

    use super::*;

    #[test]
    fn sandbox_paths_become_paths_beneath_the_checkout() {
        let roots = WorkspaceRoots { host: PathBuf::from("/data/w1"), agent: PathBuf::from("/workspace") };
        assert_eq!(
            roots.relative_path(Path::new("/workspace/src/main.rs")),
            Some(PathBuf::from("src/main.rs"))
        );
        assert_eq!(roots.relative_path(Path::new("/workspace/../etc/passwd")), None);
        assert_eq!(roots.relative_path(Path::new("/data/w1/x")), None, "host paths mean nothing inside");
        assert_eq!(roots.relative_path(Path::new("/etc/passwd")), None);
        assert_eq!(roots.relative_path(Path::new("/workspace")), None);
    }

    #[test]
    fn failures_are_read_here_and_protocol_text_stays_here() {
        assert_eq!(TurnFailure::from_error(-32000, "Authentication required"), TurnFailure::AuthRequired);
        assert_eq!(TurnFailure::from_error(-32603, "Internal error"), TurnFailure::Disconnected);
        let raw = "Incoming transport closed: { \"reason\": \"incoming_transport_closed\" }";
        assert_eq!(TurnFailure::from_error(-32002, raw), TurnFailure::Disconnected);
        assert_eq!(
            TurnFailure::from_error(-32001, "model overloaded."),
            TurnFailure::Failed { message: Some("model overloaded".into()) }
        );
        assert_eq!(TurnFailure::from_error(-32001, "{\"detail\": 1}"), TurnFailure::Failed { message: None });
    }

    #[test]
    fn a_permission_request_becomes_a_question() {
        let request = serde_json::json!({ "sessionId": "s", "toolCall": { "toolCallId": "t1", "title": "Run `ls`" },
            "options": [{ "optionId": "allow_once", "name": "Allow once", "kind": "allow_once" }] });
        let question = Question::from_request(&request);
        assert_eq!(question.title, "Run `ls`");
        assert_eq!(
            question.options[0],
            QuestionOption { id: "allow_once".into(), label: "Allow once".into(), kind: "allow_once".into() }
        );
        assert_eq!(question.tool_call["toolCallId"], "t1");
        assert_eq!(Question::from_request(&serde_json::json!({})).title, "The agent asks for permission");
    }

    #[test]
    fn chunks_become_messages_and_the_rest_keeps_its_name() {
        assert_eq!(event_kind("agent_message_chunk"), "agent_message");
        assert_eq!(event_kind("agent_thought_chunk"), "agent_thought");
        assert_eq!(event_kind("user_message_chunk"), "user_message");
        assert_eq!(event_kind("tool_call_update"), "tool_call_update");
        assert_eq!(event_kind("usage_update"), "usage_update");
    }

    #[test]
    fn lines_are_selected_from_one() {
        assert_eq!(select_lines("a\nb\nc\n", Some(2), Some(1)), "b");
        assert_eq!(select_lines("a\nb", None, None), "a\nb");
    }
}
