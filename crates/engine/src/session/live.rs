//! What people do with a live session — prompt, answer, cancel, attach a live channel,
//! read the history — each sent to the session's owner task (`runtime`) as a command.

use super::runtime::{Attached, Command};
use super::{LiveMessage, Sessions};
use crate::{EngineError, Services};
use berth_core::{Event, Session, User};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Keeps a live-channel connection counted; dropped, however the connection went, it
/// tells the session's owner, which decides (the last one going is a leave, with the
/// grace window if a run is in progress).
pub struct LiveAttachment {
    _counted: super::runtime::Detacher,
}

/// What a client gets when it attaches: a subscription taken before the history is read
/// (so nothing falls between the two), and the questions waiting now.
pub struct LiveSubscription {
    pub session: Session,
    pub messages: broadcast::Receiver<Arc<LiveMessage>>,
    pub pending_questions: Vec<Value>,
    pub attachment: LiveAttachment,
}

impl Sessions {
    /// A person's prompt: stored, then sent to the agent. Refused while a turn runs.
    pub async fn prompt(&self, caller: &User, session_id: &str, text: &str) -> Result<Event, EngineError> {
        let session = self.own_session(caller, session_id).await?;
        let text = text.to_owned();
        let prompted = self.ask(&session.id, |reply| Command::Prompt { text, reply }).await;
        prompted.unwrap_or(Err(EngineError::SessionNotActive))
    }

    /// Answers a waiting question; the first answer wins.
    pub async fn answer(
        &self,
        caller: &User,
        session_id: &str,
        question_id: &str,
        option_id: &str,
    ) -> Result<Event, EngineError> {
        let session = self.own_session(caller, session_id).await?;
        let (question_id, option_id) = (question_id.to_owned(), option_id.to_owned());
        let answered = self.ask(&session.id, |reply| Command::Answer { question_id, option_id, reply }).await;
        answered.unwrap_or(Err(EngineError::QuestionNotPending))
    }

    /// Asks the agent to stop its turn; questions still waiting are answered `cancelled`.
    pub async fn cancel(&self, caller: &User, session_id: &str) -> Result<(), EngineError> {
        let session = self.own_session(caller, session_id).await?;
        self.ask(&session.id, |reply| Command::Cancel { reply }).await.unwrap_or(Ok(()))
    }

    /// Attaches a live-channel client to the caller's session. A disconnected session
    /// becomes active again.
    pub async fn attach_live(
        &self,
        caller: &User,
        session_id: &str,
    ) -> Result<LiveSubscription, EngineError> {
        let session = self.own_session(caller, session_id).await?;
        if !session.state.is_live() {
            return Err(EngineError::SessionEnded);
        }
        self.hold_grace_for_reconnect(&session.user_id, &session.workspace_id);
        let attached = match self.handle(&session.id) {
            Some(handle) => {
                let commands = handle.commands;
                self.ask(&session.id, |reply| Command::Attach { commands, reply }).await
            }
            None => None,
        };
        let Attached { session, messages, pending_questions, counted } =
            attached.unwrap_or(Err(EngineError::SessionEnded))?;
        Ok(LiveSubscription {
            session,
            messages,
            pending_questions,
            attachment: LiveAttachment { _counted: counted },
        })
    }

    /// History of one of the caller's own sessions, after `after`, at most `limit`. The
    /// conversation is private: administrators can close anyone's session, not read it.
    pub async fn session_events(
        &self,
        caller: &User,
        session_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, EngineError> {
        let session = self.own_session(caller, session_id).await?;
        Ok(self.store.session_events(&session.id, after, limit).await?)
    }

    /// History of one of the caller's workspaces across its sessions.
    pub async fn workspace_events(
        &self,
        caller: &User,
        workspace_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, EngineError> {
        let workspace = self.workspaces().workspace(caller, workspace_id).await?;
        Ok(self.store.workspace_events(&workspace.id, after, limit).await?)
    }
}
