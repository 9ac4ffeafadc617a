//! What can go wrong in the engine, with enough context for the server to answer with a
//! stable code and for a log line to name the input involved.

use berth_core::validate::InputError;
use berth_core::{WorkspaceId, WorkspaceState};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error("no such {what}")]
    NotFound { what: &'static str },
    #[error("only administrators may {action}")]
    Forbidden { action: &'static str },
    #[error("the name '{name}' is already taken")]
    NameTaken { name: String },
    #[error("workspace {id} has unsaved work")]
    UnsavedWork { id: WorkspaceId, status: Option<berth_git::GitStatus>, reason: String },
    #[error("workspace {id} is {state}")]
    WrongState { id: WorkspaceId, state: WorkspaceState },
    #[error("workspace {id} is {state}; only a workspace in error can be retried")]
    NotRetryable { id: WorkspaceId, state: WorkspaceState },
    #[error("git failed for workspace {id}")]
    Git { id: WorkspaceId, source: berth_git::GitError },
    #[error("file system operation failed on '{path}'")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the store failed")]
    Store { source: berth_store::StoreError },
}

impl From<berth_store::StoreError> for EngineError {
    fn from(source: berth_store::StoreError) -> Self {
        match source {
            berth_store::StoreError::NameTaken { name } => EngineError::NameTaken { name },
            source => EngineError::Store { source },
        }
    }
}
