//! Workspaces: creating one clones its repository in the background with the whole
//! output kept as the initialisation log; deleting one checks for unsaved work first.

use crate::{EngineError, Services};
use berth_core::validate;
use berth_core::{User, Workspace, WorkspaceId, WorkspaceState};
use berth_git::Checkout;
use berth_store::InitialisationOutcome;
use chrono::Utc;
use std::path::Path;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use berth_git::GitStatus as WorkspaceGitStatus;

/// The initialisation log keeps at most this much; a clone that prints more is cut short
/// in the log, not in the clone.
const MAX_INIT_LOG_BYTES: usize = 1024 * 1024;

/// The folder the built-in agent keeps its conversation in; never part of git status.
const BERTH_FOLDER_PATTERN: &str = "/.berth/";

/// A push's outcome: where to, which branch, which commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedBranch {
    pub remote: String,
    pub branch: String,
    pub head: String,
}

#[derive(Debug, Clone, Default)]
pub struct NewWorkspace {
    pub repo: String,
    pub branch: Option<String>,
    pub name: Option<String>,
    pub agent: Option<String>,
}

/// What a person may change on a workspace after creating it; `None` keeps the current
/// value. An empty `agent` goes back to the installation's agent.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceSettings {
    pub name: Option<String>,
    pub branch: Option<String>,
    pub agent: Option<String>,
}

mod sources;

crate::service!(Workspaces);

/// A clone under way: how to stop it and how to know it has stopped.
struct CloneHandle {
    cancel: CancellationToken,
    finished: watch::Receiver<bool>,
}

/// The clones under way on this replica, so a delete can stop one and wait for it.
#[derive(Default)]
pub(crate) struct Clones(std::sync::Mutex<std::collections::HashMap<WorkspaceId, CloneHandle>>);

impl Workspaces {
    /// The ids of workspaces as they change (state, log). A slow listener misses
    /// notices (`Lagged`) and should re-read what it shows.
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<WorkspaceId> {
        self.workspace_changes.subscribe()
    }

    /// Tells this replica's listeners and the other replicas that workspace `id` changed.
    pub(crate) fn changed(&self, id: &WorkspaceId) {
        // No listener is not an error.
        let _ = self.workspace_changes.send(id.clone());
        self.replicas().tell(berth_store::Change::Workspace(id.clone()));
    }

    /// Another replica changed workspace `id`: this replica's listeners hear of it.
    pub(crate) fn heard_of(&self, id: WorkspaceId) {
        let _ = self.workspace_changes.send(id);
    }

    /// Checks the request, records the workspace as `initialising` and starts cloning.
    pub async fn create(&self, owner: &User, request: NewWorkspace) -> Result<Workspace, EngineError> {
        validate::repo(&request.repo)?;
        if let Some(branch) = &request.branch {
            validate::branch(branch)?;
        }
        if let Some(agent) = &request.agent {
            validate::agent_command(agent)?;
        }
        let name = match request.name {
            Some(name) => {
                validate::name(&name)?;
                name
            }
            None => self.unused_name(owner, &validate::name_from_repo(&request.repo)).await?,
        };
        // Checked now, so a refusal is the request's answer; checked again at each clone.
        self.clone_source(owner, &request.repo).await?;
        let workspace = Workspace {
            id: WorkspaceId::generate(),
            name,
            owner: owner.id.clone(),
            repo: request.repo,
            branch: request.branch,
            agent: request.agent,
            state: WorkspaceState::Initialising,
            error: None,
            created_at: Utc::now(),
            last_opened_at: None,
        };
        self.store.insert_workspace(&workspace).await?;
        tracing::info!(workspace_id = %workspace.id, owner = %owner.id, repo = %workspace.repo, "workspace created");
        self.start_clone(&workspace);
        Ok(workspace)
    }

    /// `base`, or `base-2`, `base-3`, ... whichever the owner does not use yet.
    async fn unused_name(&self, owner: &User, base: &str) -> Result<String, EngineError> {
        let taken = self.store.workspace_names_of(&owner.id).await?;
        let candidates = std::iter::once(base.to_owned()).chain((2..).map(|n| format!("{base}-{n}")));
        Ok(candidates
            .take(10_000)
            .find(|name| !taken.contains(name))
            .unwrap_or_else(|| WorkspaceId::generate().to_string()))
    }

    /// The caller's workspaces, oldest first.
    pub async fn list(&self, owner: &User) -> Result<Vec<Workspace>, EngineError> {
        Ok(self.store.workspaces_of(&owner.id).await?)
    }

    /// One of the caller's workspaces. Another user's workspace is "not found", exactly
    /// like one that does not exist, so its existence is never revealed.
    pub async fn workspace(&self, owner: &User, id: &str) -> Result<Workspace, EngineError> {
        let not_found = EngineError::NotFound { what: "workspace" };
        let id = WorkspaceId::parse(id).ok_or(EngineError::NotFound { what: "workspace" })?;
        match self.store.workspace(&id).await? {
            Some(workspace) if workspace.owner == owner.id => Ok(workspace),
            _ => Err(not_found),
        }
    }

    pub async fn init_log(&self, owner: &User, id: &str) -> Result<String, EngineError> {
        let workspace = self.workspace(owner, id).await?;
        Ok(self.store.init_log(&workspace.id).await?.unwrap_or_default())
    }

    /// One of the caller's workspaces that has a checkout (`workspace_not_ready` otherwise):
    /// what every git command on a workspace starts from.
    async fn with_checkout(&self, owner: &User, id: &str) -> Result<Workspace, EngineError> {
        let workspace = self.workspace(owner, id).await?;
        if !workspace.state.has_checkout() {
            return Err(EngineError::WrongState { id: workspace.id, state: workspace.state });
        }
        Ok(workspace)
    }

    pub async fn git_status(&self, owner: &User, id: &str) -> Result<WorkspaceGitStatus, EngineError> {
        let workspace = self.with_checkout(owner, id).await?;
        let (dir, format) = self.checkout_of(&workspace.id).await;
        berth_git::status(&*self.driver, Checkout { workspace_id: &workspace.id, dir: &dir, format })
            .await
            .map_err(|source| EngineError::Git { id: workspace.id, source })
    }

    /// Each uncommitted file's diff against HEAD and the commits no remote has, read in a
    /// sandbox of the workspace.
    pub async fn changes(&self, owner: &User, id: &str) -> Result<berth_git::Changes, EngineError> {
        let workspace = self.with_checkout(owner, id).await?;
        let (dir, format) = self.checkout_of(&workspace.id).await;
        berth_git::changes(&*self.driver, Checkout { workspace_id: &workspace.id, dir: &dir, format })
            .await
            .map_err(|source| EngineError::Git { id: workspace.id, source })
    }

    /// What `path` is in the checkout — a directory's entries, a text file, a link (not
    /// followed) — read in a sandbox of the workspace. A binary file is refused
    /// (`binary_file`), a file over 1 MiB is cut (`truncated`).
    pub async fn path(&self, owner: &User, id: &str, path: &str) -> Result<WorkspaceFile, EngineError> {
        let path = berth_core::validate::checkout_path(path)?;
        let workspace = self.with_checkout(owner, id).await?;
        let (dir, format) = self.checkout_of(&workspace.id).await;
        let found = berth_git::read_path(
            &*self.driver,
            Checkout { workspace_id: &workspace.id, dir: &dir, format },
            path,
        )
        .await
        .map_err(|source| EngineError::Git { id: workspace.id, source })?;
        Ok(match found {
            berth_git::CheckoutPath::Dir { entries, truncated } => WorkspaceFile::Dir { entries, truncated },
            berth_git::CheckoutPath::Symlink { target } => WorkspaceFile::Symlink { target },
            berth_git::CheckoutPath::NotFound => {
                return Err(EngineError::NotFound { what: "file or directory" });
            }
            berth_git::CheckoutPath::File { size, bytes, truncated, sha } => {
                let text = text_of(&bytes, truncated).ok_or(EngineError::BinaryFile { size })?;
                WorkspaceFile::Text { size, text, truncated, sha }
            }
        })
    }

    /// Writes `content` to the file `path` of the checkout (its directories made), in a
    /// sandbox of the workspace, when the file is still the version `expected` —
    /// otherwise `file_changed` with the version it is now. Nothing on the way is
    /// followed: a link there, or `.git`, is `invalid_path`. Returns the new version.
    pub async fn write_file(
        &self,
        owner: &User,
        id: &str,
        path: &str,
        content: &str,
        expected: &berth_git::Expected,
    ) -> Result<String, EngineError> {
        let path = writable_path(path)?;
        if content.len() > berth_git::MAX_FILE_BYTES {
            return Err(EngineError::FileTooLarge { max_bytes: berth_git::MAX_FILE_BYTES });
        }
        let workspace = self.with_checkout(owner, id).await?;
        let (dir, format) = self.checkout_of(&workspace.id).await;
        let checkout = Checkout { workspace_id: &workspace.id, dir: &dir, format };
        let outcome =
            berth_git::write_file(&*self.driver, checkout, path, content.as_bytes(), expected).await;
        match file_outcome(&workspace.id, outcome)? {
            berth_git::FileOutcome::Written { sha } => Ok(sha),
            berth_git::FileOutcome::Changed { sha } => Err(EngineError::FileChanged { sha }),
            _ => Err(EngineError::NotFound { what: "file" }),
        }
    }

    /// Removes the file (or link, never followed) `path` of the checkout.
    pub async fn delete_file(&self, owner: &User, id: &str, path: &str) -> Result<(), EngineError> {
        let path = writable_path(path)?;
        let workspace = self.with_checkout(owner, id).await?;
        let (dir, format) = self.checkout_of(&workspace.id).await;
        let checkout = Checkout { workspace_id: &workspace.id, dir: &dir, format };
        match file_outcome(&workspace.id, berth_git::delete_file(&*self.driver, checkout, path).await)? {
            berth_git::FileOutcome::Removed => Ok(()),
            _ => Err(EngineError::NotFound { what: "file" }),
        }
    }

    /// Renames `from` to `to` (which must not exist) in the checkout.
    pub async fn rename_file(
        &self,
        owner: &User,
        id: &str,
        from: &str,
        to: &str,
    ) -> Result<String, EngineError> {
        let (from, to) = (writable_path(from)?, writable_path(to)?);
        let workspace = self.with_checkout(owner, id).await?;
        let (dir, format) = self.checkout_of(&workspace.id).await;
        let checkout = Checkout { workspace_id: &workspace.id, dir: &dir, format };
        match file_outcome(&workspace.id, berth_git::rename_file(&*self.driver, checkout, from, to).await)? {
            berth_git::FileOutcome::Renamed => Ok(to.to_owned()),
            berth_git::FileOutcome::Exists => Err(EngineError::FileExists { path: to.to_owned() }),
            _ => Err(EngineError::NotFound { what: "file" }),
        }
    }

    /// Commits everything in the checkout as the caller, with `message`, in a sandbox of
    /// the workspace (hooks off).
    pub async fn commit(
        &self,
        owner: &User,
        id: &str,
        message: &str,
    ) -> Result<berth_git::Committed, EngineError> {
        berth_core::validate::commit_message(message)?;
        let workspace = self.with_checkout(owner, id).await?;
        let (dir, format) = self.checkout_of(&workspace.id).await;
        let (name, email) = self.accounts().profile(owner).await?.git_identity(owner);
        let checkout = Checkout { workspace_id: &workspace.id, dir: &dir, format };
        match berth_git::commit(&*self.driver, checkout, (&name, &email), message).await {
            Ok(committed) => {
                tracing::info!(workspace_id = %workspace.id, head = %committed.head, "committed");
                self.changed(&workspace.id);
                Ok(committed)
            }
            Err(berth_git::GitError::Failed { ref stderr, .. }) if stderr.contains("nothing to commit") => {
                Err(EngineError::NothingToCommit)
            }
            Err(source) => Err(EngineError::Git { id: workspace.id, source }),
        }
    }

    /// Pushes the checkout's branch, from a sandbox of the workspace, to the repository
    /// it was made from, with the caller's credential for that host.
    pub async fn push(&self, owner: &User, id: &str) -> Result<PushedBranch, EngineError> {
        let workspace = self.with_checkout(owner, id).await?;
        if !workspace.pushable() {
            return Err(EngineError::PushFailed {
                message: "this workspace's repository is a directory of the server; berth pushes only to remote repositories"
                    .into(),
            });
        }
        let credential = self.accounts().git_credential(&owner.id, &workspace.repo).await?;
        let ssh = self.accounts().ssh_credential(&owner.id, &workspace.repo, None).await?;
        let (dir, format) = self.checkout_of(&workspace.id).await;
        let checkout = Checkout { workspace_id: &workspace.id, dir: &dir, format };
        let timeout = self.config.clone_timeout;
        match berth_git::push(&*self.driver, checkout, &workspace.repo, credential, ssh, timeout).await {
            Ok(pushed) => {
                tracing::info!(workspace_id = %workspace.id, branch = %pushed.branch, head = %pushed.head, "pushed");
                Ok(PushedBranch { remote: workspace.repo, branch: pushed.branch, head: pushed.head })
            }
            Err(source) if source.is_about_the_checkout() => {
                Err(EngineError::PushFailed { message: source.summary() })
            }
            Err(source) => Err(EngineError::Git { id: workspace.id, source }),
        }
    }

    /// Destroys the workspace's files and record. Unless `force`, refuses while the
    /// checkout has uncommitted changes or commits no remote has. Never touches the remote.
    pub async fn delete(&self, owner: &User, id: &str, force: bool) -> Result<WorkspaceId, EngineError> {
        let workspace = self.workspace(owner, id).await?;
        let (dir, format) = self.checkout_of(&workspace.id).await;
        if workspace.state.has_checkout() && !force {
            match berth_git::status(
                &*self.driver,
                Checkout { workspace_id: &workspace.id, dir: &dir, format },
            )
            .await
            {
                Ok(status) if status.clean && status.unpushed_commits == 0 => {}
                Ok(status) => {
                    return Err(EngineError::UnsavedWork {
                        id: workspace.id,
                        reason: format!(
                            "{} uncommitted path(s) and {} unpushed commit(s) would be lost",
                            status.uncommitted.len(),
                            status.unpushed_commits
                        ),
                        status: Some(Box::new(status)),
                    });
                }
                Err(error) => {
                    return Err(EngineError::UnsavedWork {
                        id: workspace.id,
                        status: None,
                        reason: format!(
                            "git status could not be read ({error}), so unsaved work cannot be ruled out"
                        ),
                    });
                }
            }
        }
        if let Some(session) = self.store.live_session_of_workspace(&workspace.id).await? {
            self.sessions().close_session(&session.id, berth_core::EndReason::Deleted).await?;
        }
        self.stop_clone(&workspace.id).await;
        self.store.delete_workspace(&workspace.id).await?;
        remove_dir_if_present(&dir).await?;
        let _ = tokio::fs::remove_file(self.paths.repository_format(&workspace.id)).await;
        self.changed(&workspace.id);
        tracing::info!(workspace_id = %workspace.id, forced = force, "workspace deleted");
        Ok(workspace.id)
    }

    /// Renames the workspace, changes its agent command (used from the next open) or
    /// switches its checkout to another branch. A branch switch needs a checkout and no
    /// live session (the agent works in that tree); git itself refuses a switch that
    /// would overwrite uncommitted changes.
    pub async fn update(
        &self,
        owner: &User,
        id: &str,
        settings: WorkspaceSettings,
    ) -> Result<Workspace, EngineError> {
        let workspace = self.workspace(owner, id).await?;
        let name = match settings.name {
            Some(name) => {
                validate::name(&name)?;
                name
            }
            None => workspace.name.clone(),
        };
        let agent = match settings.agent {
            Some(agent) if agent.trim().is_empty() => None,
            Some(agent) => {
                validate::agent_command(&agent)?;
                Some(agent)
            }
            None => workspace.agent.clone(),
        };
        let mut branch = workspace.branch.clone();
        if let Some(wanted) = settings.branch.filter(|wanted| Some(wanted) != workspace.branch.as_ref()) {
            validate::branch(&wanted)?;
            self.switch_branch(&workspace, &wanted).await?;
            branch = Some(wanted);
        }
        if !self
            .store
            .update_workspace_settings(&workspace.id, &name, branch.as_deref(), agent.as_deref())
            .await?
        {
            return Err(EngineError::NotFound { what: "workspace" });
        }
        self.changed(&workspace.id);
        tracing::info!(workspace_id = %workspace.id, "workspace settings changed");
        self.workspace(owner, id).await
    }

    async fn switch_branch(&self, workspace: &Workspace, branch: &str) -> Result<(), EngineError> {
        if !workspace.state.has_checkout() {
            return Err(EngineError::WrongState { id: workspace.id.clone(), state: workspace.state });
        }
        if self.store.live_session_of_workspace(&workspace.id).await?.is_some() {
            return Err(EngineError::WorkspaceActive);
        }
        let (dir, format) = self.checkout_of(&workspace.id).await;
        let checkout = Checkout { workspace_id: &workspace.id, dir: &dir, format };
        match berth_git::switch_branch(&*self.driver, checkout, branch).await {
            Ok(()) => Ok(()),
            Err(error @ berth_git::GitError::Failed { .. }) => {
                Err(EngineError::BranchSwitchFailed { branch: branch.to_owned(), reason: error.summary() })
            }
            Err(source) => Err(EngineError::Git { id: workspace.id.clone(), source }),
        }
    }

    /// Clones a workspace whose initialisation failed again, from an empty log.
    pub async fn retry(&self, owner: &User, id: &str) -> Result<Workspace, EngineError> {
        let workspace = self.workspace(owner, id).await?;
        let not_retryable = |state| EngineError::NotRetryable { id: workspace.id.clone(), state };
        workspace
            .state
            .on(berth_core::WorkspaceEvent::RetryRequested)
            .map_err(|refusal| not_retryable(refusal.from))?;
        if !self.store.restart_initialisation(&workspace.id).await? {
            // Another request retried it first.
            return Err(not_retryable(WorkspaceState::Initialising));
        }
        let workspace = self.workspace(owner, id).await?;
        self.start_clone(&workspace);
        Ok(workspace)
    }

    /// At start: a workspace left `initialising` by a stopped or crashed server is cloned
    /// again from scratch, and directories with no workspace record are removed.
    pub(crate) async fn resume_interrupted_initialisations(&self) -> Result<(), EngineError> {
        for workspace in self.store.interrupted_clones().await? {
            tracing::warn!(workspace_id = %workspace.id, "initialisation was interrupted; cloning again");
            self.store
                .append_init_log(
                    &workspace.id,
                    "\nberth: the server stopped during initialisation; cloning again\n",
                )
                .await?;
            self.start_clone(&workspace);
        }
        self.remove_orphan_directories().await
    }

    /// Clones again what a lost replica was cloning (now this replica's).
    pub(crate) async fn clone_again(&self, workspaces: Vec<Workspace>) -> Result<(), EngineError> {
        for workspace in workspaces {
            tracing::warn!(workspace_id = %workspace.id, "the replica cloning it was lost; cloning again");
            self.store
                .append_init_log(&workspace.id, "\nberth: the replica cloning it was lost; cloning again\n")
                .await?;
            self.start_clone(&workspace);
        }
        Ok(())
    }

    /// Stops every clone of this replica (its lease was lost: another replica clones
    /// them again), recording nothing.
    pub(crate) fn stop_every_clone(&self) {
        for (_, handle) in self.lock_clones().drain() {
            handle.cancel.cancel();
        }
    }

    async fn remove_orphan_directories(&self) -> Result<(), EngineError> {
        let root = self.paths.workspaces();
        let io_error = |source| EngineError::Io { path: root.clone(), source };
        let mut entries = tokio::fs::read_dir(&root).await.map_err(io_error)?;
        while let Some(entry) = entries.next_entry().await.map_err(io_error)? {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(WorkspaceId::parse) else {
                continue;
            };
            if self.store.workspace(&id).await?.is_none() {
                tracing::warn!(workspace_id = %id, "removing the files of a deleted workspace");
                remove_dir_if_present(&entry.path()).await?;
            }
        }
        Ok(())
    }

    fn start_clone(&self, workspace: &Workspace) {
        let cancel = self.shutdown.child_token();
        let (finished_sender, finished) = watch::channel(false);
        self.lock_clones().insert(workspace.id.clone(), CloneHandle { cancel: cancel.clone(), finished });
        let engine = self.clone();
        let workspace = workspace.clone();
        self.tasks.spawn(async move {
            let id = workspace.id.clone();
            let claimed = engine.store.claim_clone(&id).await;
            let cloned = match claimed {
                Ok(()) => engine.run_clone(&workspace, cancel).await,
                Err(error) => Err(error.into()),
            };
            if let Err(error) = cloned {
                tracing::error!(workspace_id = %id, error = %error, "initialisation could not be recorded");
            }
            engine.lock_clones().remove(&id);
            let _ = finished_sender.send(true);
        });
    }

    fn lock_clones(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<WorkspaceId, CloneHandle>> {
        // A panic while holding this lock leaves only a map of handles behind, which is
        // still consistent, so a poisoned lock is used as it is.
        self.clones.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops the clone of `id`, if one runs, and waits until it has stopped.
    async fn stop_clone(&self, id: &WorkspaceId) {
        let handle = self.lock_clones().remove(id);
        if let Some(mut handle) = handle {
            handle.cancel.cancel();
            let _ = handle.finished.wait_for(|finished| *finished).await;
        }
    }

    async fn run_clone(&self, workspace: &Workspace, cancel: CancellationToken) -> Result<(), EngineError> {
        let dir = self.paths.workspace(&workspace.id);
        remove_dir_if_present(&dir).await?;
        let (log_sender, log_receiver) = mpsc::unbounded_channel();
        let cloned = async {
            // Checked again: what a path resolves to may have changed since creation.
            let owner =
                self.store.user(&workspace.owner).await?.ok_or(EngineError::NotFound { what: "user" })?;
            let source = self.clone_source(&owner, &workspace.repo).await?;
            // The checkout to be: made empty here, filled by git inside the sandbox.
            tokio::fs::create_dir(&dir)
                .await
                .map_err(|source| EngineError::Io { path: dir.clone(), source })?;
            let request = berth_git::CloneRequest {
                workspace_id: &workspace.id,
                destination: &dir,
                source,
                branch: workspace.branch.as_deref(),
                exclude: &[BERTH_FOLDER_PATTERN],
                timeout: self.config.clone_timeout,
                log: log_sender,
                cancel,
                credential: self.accounts().git_credential(&owner.id, &workspace.repo).await?,
                ssh: self
                    .accounts()
                    .ssh_credential(&owner.id, &workspace.repo, Some((&workspace.id, &dir)))
                    .await?,
            };
            berth_git::clone(&*self.driver, request)
                .await
                .map_err(|source| EngineError::Git { id: workspace.id.clone(), source })
        };
        let (cloned, logged) = tokio::join!(cloned, self.record_log(&workspace.id, log_receiver));
        logged?;
        let outcome = match cloned {
            Ok(outcome) => {
                self.record_repository_format(&workspace.id, outcome.format).await?;
                let branch = outcome.branch.as_deref().unwrap_or("(detached HEAD)");
                self.store
                    .append_init_log(&workspace.id, &format!("berth: ready on branch {branch}\n"))
                    .await?;
                InitialisationOutcome::Ready { branch: outcome.branch }
            }
            // Stopped by a delete (which removes the files) or by shutdown (the next start
            // clones again): nothing to record.
            Err(EngineError::Git { source: berth_git::GitError::Cancelled, .. }) => return Ok(()),
            Err(error) => {
                let summary = failure_summary(&error);
                self.store
                    .append_init_log(&workspace.id, &format!("berth: initialisation failed: {summary}\n"))
                    .await?;
                // Everything git said, not only its last line: ssh says why before git does.
                let said = match &error {
                    EngineError::Git { source: berth_git::GitError::Failed { stderr, .. }, .. } => {
                        stderr.as_str()
                    }
                    _ => summary.as_str(),
                };
                // What the person can do about it is the headline; git's own words stay in
                // the log above it.
                let hint = self.credential_hint(workspace, said).await?;
                if let Some(hint) = &hint {
                    self.store.append_init_log(&workspace.id, &format!("berth: {hint}\n")).await?;
                }
                remove_dir_if_present(&dir).await?;
                InitialisationOutcome::Failed { error: hint.unwrap_or(summary) }
            }
        };
        if !self.store.finish_initialisation(&workspace.id, &outcome).await?
            && self.store.workspace(&workspace.id).await?.is_none()
        {
            // Deleted while cloning: leave nothing behind. (Not finished but still there:
            // another replica clones it now, into this directory.)
            remove_dir_if_present(&dir).await?;
        }
        self.changed(&workspace.id);
        tracing::info!(workspace_id = %workspace.id, outcome = ?outcome, "initialisation finished");
        Ok(())
    }

    /// Where a workspace's checkout is and the format of its repository (what berth's
    /// clone recorded; a workspace cloned before formats were recorded has git's default).
    async fn checkout_of(&self, id: &WorkspaceId) -> (std::path::PathBuf, berth_git::RepositoryFormat) {
        let record = tokio::fs::read_to_string(self.paths.repository_format(id)).await.unwrap_or_default();
        let format = berth_git::RepositoryFormat::parse_record(&record).unwrap_or_default();
        (self.paths.workspace(id), format)
    }

    async fn record_repository_format(
        &self,
        id: &WorkspaceId,
        format: berth_git::RepositoryFormat,
    ) -> Result<(), EngineError> {
        let path = self.paths.repository_format(id);
        tokio::fs::write(&path, format!("{format}\n"))
            .await
            .map_err(|source| EngineError::Io { path, source })
    }

    /// What to tell a person whose clone was refused for want of a credential, or because
    /// an SSH server's key is not the one recorded at first use.
    async fn credential_hint(
        &self,
        workspace: &Workspace,
        said: &str,
    ) -> Result<Option<String>, EngineError> {
        const REFUSALS: [&str; 5] =
            ["could not read Username", "Authentication failed", "terminal prompts disabled", " 401", " 403"];
        if let Some(target) = berth_git::ssh_target(&workspace.repo) {
            let host = target.known_hosts_name();
            if said.contains("Host key verification failed") {
                return Ok(Some(format!(
                    "the SSH host key of {host} is not the one berth recorded when it first reached it, so \
                     nothing was sent there (a changed key can mean someone is in between)"
                )));
            }
            if said.contains("Permission denied") {
                return Ok(Some(format!(
                    "{host} refused your berth SSH key: add it to your account there (your account page, \
                     or `berth ssh-key`), then retry"
                )));
            }
            return Ok(None);
        }
        let Some(origin) = berth_git::http_origin(&workspace.repo) else { return Ok(None) };
        if !REFUSALS.iter().any(|refusal| said.contains(refusal)) {
            return Ok(None);
        }
        let host = &origin.host;
        let hint = match self.accounts().git_credential(&workspace.owner, &workspace.repo).await? {
            Some(_) => format!(
                "{host} refused your credential; replace it on your account page (Git credentials) \
                 or with `berth credential add {host}`, then retry"
            ),
            None => format!(
                "this repository needs a credential for {host}: add one on your account page (Git credentials) \
                 or with `berth credential add {host}`, then retry"
            ),
        };
        Ok(Some(hint))
    }

    /// Appends what git prints to the stored log as it arrives, in as few writes as the
    /// pace allows, up to [`MAX_INIT_LOG_BYTES`].
    async fn record_log(
        &self,
        id: &WorkspaceId,
        mut chunks: mpsc::UnboundedReceiver<String>,
    ) -> Result<(), EngineError> {
        let mut written = 0usize;
        let mut truncated = false;
        while let Some(mut text) = chunks.recv().await {
            while let Ok(more) = chunks.try_recv() {
                text.push_str(&more);
            }
            if truncated {
                continue;
            }
            if written + text.len() > MAX_INIT_LOG_BYTES {
                let mut cut = MAX_INIT_LOG_BYTES.saturating_sub(written);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push_str("\nberth: the rest of the output is not kept\n");
                truncated = true;
            }
            written += text.len();
            self.store.append_init_log(id, &text).await?;
            self.changed(id);
        }
        Ok(())
    }
}

/// One line saying why a clone failed.
fn failure_summary(error: &EngineError) -> String {
    match error {
        EngineError::Git { source, .. } => source.summary(),
        error => error.to_string(),
    }
}

async fn remove_dir_if_present(dir: &Path) -> Result<(), EngineError> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(EngineError::Io { path: dir.to_owned(), source }),
    }
}

/// A path a person may write: one the file browser may show, not the checkout itself,
/// and with no `.git` anywhere in it.
fn writable_path(path: &str) -> Result<&str, EngineError> {
    let path = berth_core::validate::checkout_path(path)?;
    let refuse = |reason: &str| {
        EngineError::Invalid(berth_core::validate::InputError {
            field: berth_core::validate::Field::FilePath,
            reason: reason.to_owned(),
        })
    };
    if path.is_empty() {
        return Err(refuse("name a file inside the checkout"));
    }
    if path.split('/').any(|name| name == ".git") {
        return Err(refuse("berth does not write inside .git"));
    }
    Ok(path)
}

/// A change of a checkout's files as the engine answers it: a path refused inside the
/// sandbox is `invalid_path`.
fn file_outcome(
    id: &WorkspaceId,
    outcome: Result<berth_git::FileOutcome, berth_git::GitError>,
) -> Result<berth_git::FileOutcome, EngineError> {
    match outcome.map_err(|source| EngineError::Git { id: id.clone(), source })? {
        berth_git::FileOutcome::Refused { reason } => {
            Err(EngineError::Invalid(berth_core::validate::InputError {
                field: berth_core::validate::Field::FilePath,
                reason,
            }))
        }
        outcome => Ok(outcome),
    }
}

/// What the file browser shows of a path of a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceFile {
    Dir {
        entries: Vec<berth_git::Entry>,
        truncated: bool,
    },
    /// A file's text: its first MiB when `truncated`; the version of a whole one.
    Text {
        size: u64,
        text: String,
        truncated: bool,
        sha: Option<String>,
    },
    /// A symbolic link, shown and never followed.
    Symlink {
        target: String,
    },
}

/// The bytes as text, or `None` for a binary file: one with a NUL in its first 8,000
/// bytes (git's own test) or that is not UTF-8 — but for a character cut at the end.
fn text_of(bytes: &[u8], cut: bool) -> Option<String> {
    if bytes[..bytes.len().min(8000)].contains(&0) {
        return None;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text.to_owned()),
        Err(error) if cut && error.error_len().is_none() => {
            Some(String::from_utf8_lossy(&bytes[..error.valid_up_to()]).into_owned())
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::text_of;

    #[test]
    fn text_is_utf8_without_nul_and_a_cut_character_is_dropped() {
        assert_eq!(text_of(b"fn main() {}\n", false).as_deref(), Some("fn main() {}\n"));
        assert_eq!(text_of(b"\x89PNG\r\n\x1a\n\0\0", false), None);
        assert_eq!(text_of(b"caf\xc3", false), None);
        assert_eq!(text_of(b"caf\xc3", true).as_deref(), Some("caf"));
        assert_eq!(text_of(b"a\xffb", true), None);
    }
}
