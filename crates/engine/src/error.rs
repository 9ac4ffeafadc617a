//! What can go wrong in the engine, with enough context for the server to answer with a
//! stable code and for a log line to name the input involved.

use berth_core::validate::InputError;
use berth_core::{WorkspaceId, WorkspaceState};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    /// A credential that is missing, wrong, expired or revoked.
    #[error("{message}")]
    Unauthorized { message: &'static str },
    #[error("no such {what}")]
    NotFound { what: &'static str },
    #[error("only administrators may {action}")]
    Forbidden { action: &'static str },
    #[error("the name '{name}' is already taken")]
    NameTaken { name: String },
    #[error("{reason}; delete with force=true to destroy them")]
    UnsavedWork { id: WorkspaceId, status: Option<Box<berth_git::GitStatus>>, reason: String },
    #[error("the workspace is {state}, not ready")]
    WrongState { id: WorkspaceId, state: WorkspaceState },
    #[error("only a workspace in error can be retried; this one is {state}")]
    NotRetryable { id: WorkspaceId, state: WorkspaceState },
    #[error(
        "the limit of {limit} live session(s) per user is reached: close a session first, or close all and retry"
    )]
    SessionLimit { limit: u32, active_sessions: Vec<berth_core::Session> },
    #[error("controllers are busy: every sandbox slot is taken")]
    ControllersBusy { retry_after: std::time::Duration },
    #[error("session {session_id} could not be powered off to make room: {message}")]
    ReplaceFailed { session_id: berth_core::SessionId, message: String },
    #[error("the sandbox did not power on: {message}")]
    SandboxFailed { message: String },
    #[error("session {session_id} did not close: {message}")]
    CloseFailed { session_id: berth_core::SessionId, message: String },
    #[error("a prompt holds 1 to {max_bytes} bytes")]
    InvalidPrompt { max_bytes: usize },
    #[error("the session is not active")]
    SessionNotActive,
    #[error("the session has ended")]
    SessionEnded,
    #[error("the agent is still working on the last prompt; wait for it or cancel it")]
    TurnInProgress,
    #[error("at most {per_second} prompts a second; send it again in a moment")]
    RateLimited { per_second: u32 },
    #[error("this question was already answered or is not waiting")]
    QuestionNotPending,
    #[error("'{option}' is not an option of this question")]
    InvalidOption { option: String },
    #[error(transparent)]
    Transition(#[from] berth_core::session::SessionTransitionError),
    #[error("a token name is 1 to {max_chars} characters, none a control character")]
    InvalidTokenName { max_chars: usize },
    #[error("a token lives from 1 s to {max_days} days")]
    InvalidExpiry { max_days: u64 },
    #[error("an administrator cannot disable or demote themselves; ask another administrator")]
    CannotChangeYourself,
    #[error("your {field} comes from your identity provider at each sign-in; change it there")]
    ManagedByProvider { field: &'static str },
    #[error("there is nothing to commit")]
    NothingToCommit,
    #[error("close the workspace's session before switching its branch")]
    WorkspaceActive,
    #[error("git cannot switch to '{branch}': {reason}")]
    BranchSwitchFailed { branch: String, reason: String },
    #[error("{what}")]
    PortsUnavailable { what: String },
    #[error("'{text}' is not a port: expected a number from 1 to 65535")]
    InvalidPort { text: String },
    #[error("port {port} is not open for previews on this installation")]
    PortNotAllowed { port: u16 },
    #[error("the workspace has no live session")]
    NoLiveSession,
    #[error("the session is not live: a terminal runs in a live session's sandbox")]
    SessionNotLive,
    #[error("a session has at most {limit} terminals open; close one first")]
    TooManyTerminals { limit: usize },
    #[error("{what}")]
    TerminalUnavailable { what: String },
    #[error("the file changed since it was read (someone else, or the agent, wrote it)")]
    FileChanged { sha: Option<String> },
    #[error("a file written through berth is at most {max_bytes} bytes")]
    FileTooLarge { max_bytes: usize },
    #[error("'{path}' exists already")]
    FileExists { path: String },
    #[error("the agent '{agent}' is not installed on this server: {install}")]
    AgentNotInstalled { agent: String, install: String },
    #[error("the agent '{agent}' needs your secret {}: add it (Account → Secrets) and open again", missing.join(", "))]
    AgentNeedsSecrets { agent: String, missing: Vec<String> },
    #[error("the push failed: {message}")]
    PushFailed { message: String },
    #[error("nothing answers on port {port} in the sandbox: {message}")]
    PreviewUnreachable { port: u16, message: String },
    #[error("this is a binary file of {size} bytes; the file browser shows text only")]
    BinaryFile { size: u64 },
    #[error("{what}")]
    Unsupported { what: &'static str },
    /// The session an open would resume is owned by another replica (it became live
    /// there a moment ago): the request goes there.
    #[error("this workspace's session is served by another replica; send the request again")]
    SessionElsewhere { peer: crate::Peer },
    #[error(
        "SQLite serves one replica, and replica '{other}' holds a lease on this database; \
         several replicas share a PostgreSQL database (database_url = postgres://...)"
    )]
    OneReplicaOnly { other: String },
    #[error("the sandbox driver failed")]
    Sandbox { source: berth_sandbox::SandboxError },
    #[error("git failed for workspace {id}")]
    Git { id: WorkspaceId, source: berth_git::GitError },
    #[error("file system operation failed on '{path}'")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the store failed: {source}")]
    Store { source: berth_store::StoreError },
}

impl From<berth_store::StoreError> for EngineError {
    fn from(source: berth_store::StoreError) -> Self {
        match source {
            berth_store::StoreError::NameTaken { name } => EngineError::NameTaken { name },
            // Another replica took the session over: for this one it has ended.
            berth_store::StoreError::Fenced { .. } => EngineError::SessionEnded,
            source => EngineError::Store { source },
        }
    }
}

impl EngineError {
    /// The stable code clients branch on (API.md).
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Invalid(input) => input.field.error_code(),
            EngineError::Unauthorized { .. } => "unauthorized",
            EngineError::NotFound { .. } => "not_found",
            EngineError::Forbidden { .. } => "forbidden",
            EngineError::NameTaken { .. } => "name_taken",
            EngineError::UnsavedWork { .. } => "unsaved_work",
            EngineError::WrongState { .. } => "workspace_not_ready",
            EngineError::NotRetryable { .. } => "not_retryable",
            EngineError::SessionLimit { .. } => "session_limit",
            EngineError::ControllersBusy { .. } => "controllers_busy",
            EngineError::ReplaceFailed { .. } => "replace_failed",
            EngineError::SandboxFailed { .. } => "sandbox_failed",
            EngineError::CloseFailed { .. } => "close_failed",
            EngineError::Git { .. } => "git_failed",
            EngineError::InvalidPrompt { .. } => "invalid_prompt",
            EngineError::SessionNotActive => "session_not_active",
            EngineError::SessionEnded => "session_ended",
            EngineError::TurnInProgress => "turn_in_progress",
            EngineError::RateLimited { .. } => "rate_limited",
            EngineError::QuestionNotPending => "question_not_pending",
            EngineError::InvalidOption { .. } => "invalid_option",
            EngineError::Transition(_) => "invalid_transition",
            EngineError::InvalidTokenName { .. } => "invalid_token_name",
            EngineError::InvalidExpiry { .. } => "invalid_expiry",
            EngineError::CannotChangeYourself => "cannot_change_yourself",
            EngineError::ManagedByProvider { .. } => "managed_by_provider",
            EngineError::NothingToCommit => "nothing_to_commit",
            EngineError::WorkspaceActive => "workspace_active",
            EngineError::BranchSwitchFailed { .. } => "branch_switch_failed",
            EngineError::PortsUnavailable { .. } => "ports_unavailable",
            EngineError::InvalidPort { .. } => "invalid_port",
            EngineError::PortNotAllowed { .. } => "port_not_allowed",
            EngineError::NoLiveSession => "no_live_session",
            EngineError::SessionNotLive => "session_not_live",
            EngineError::TooManyTerminals { .. } => "too_many_terminals",
            EngineError::TerminalUnavailable { .. } => "terminal_unavailable",
            EngineError::FileChanged { .. } => "file_changed",
            EngineError::FileTooLarge { .. } => "file_too_large",
            EngineError::FileExists { .. } => "file_exists",
            EngineError::AgentNotInstalled { .. } => "agent_not_installed",
            EngineError::AgentNeedsSecrets { .. } => "agent_needs_secrets",
            EngineError::PushFailed { .. } => "push_failed",
            EngineError::PreviewUnreachable { .. } => "preview_unreachable",
            EngineError::BinaryFile { .. } => "binary_file",
            EngineError::Unsupported { .. } => "unsupported",
            EngineError::Store { source: berth_store::StoreError::Unavailable { .. } } => "store_unavailable",
            EngineError::SessionElsewhere { .. } => "replica_unavailable",
            EngineError::OneReplicaOnly { .. }
            | EngineError::Sandbox { .. }
            | EngineError::Io { .. }
            | EngineError::Store { .. } => "internal",
        }
    }
}
