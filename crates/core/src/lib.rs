//! berth's domain: the states, transitions, policies and input rules of §1 of the design,
//! as plain types and functions. Nothing here does I/O or knows about tokio, SQL or HTTP.

pub mod agent_env;
pub mod agents;
pub mod event;
pub mod ids;
pub mod limits;
pub mod oidc;
pub mod preview;
pub mod session;
pub mod user;
pub mod validate;
pub mod workspace;

pub use event::Event;
pub use ids::{CredentialId, SessionId, SignInId, TerminalId, TokenId, UserId, WorkspaceId};
pub use limits::{Limits, OnUserLimit, PromptWindow};
pub use session::{EndReason, Session, SessionState};
pub use user::{Account, CredentialInfo, Profile, Role, SecretInfo, SignInInfo, SignInVia, TokenInfo, User};
pub use workspace::{Workspace, WorkspaceEvent, WorkspaceState, WorkspaceTransitionError};
