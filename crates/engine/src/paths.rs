//! Where berth keeps files under its data directory. Paths are built only from generated
//! ids, never from names or other input.

use crate::EngineError;
use berth_core::WorkspaceId;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DataPaths {
    root: PathBuf,
}

impl DataPaths {
    pub async fn create(root: &Path) -> Result<DataPaths, EngineError> {
        let paths = DataPaths { root: root.to_owned() };
        for dir in [paths.root.clone(), paths.workspaces(), paths.repository_formats()] {
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|source| EngineError::Io { path: dir.clone(), source })?;
            restrict_to_owner(&dir).await?;
        }
        // Canonical, so that "is this path inside the data directory" compares like with like.
        let root = tokio::fs::canonicalize(root)
            .await
            .map_err(|source| EngineError::Io { path: root.to_owned(), source })?;
        Ok(DataPaths { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn workspaces(&self) -> PathBuf {
        self.root.join("workspaces")
    }

    fn repository_formats(&self) -> PathBuf {
        self.root.join("repository-formats")
    }

    /// The format of a workspace's repository as berth's clone found it (a record of
    /// `berth_git::RepositoryFormat`): outside the checkout, so the agent cannot change
    /// what berth's own git is told.
    pub fn repository_format(&self, id: &WorkspaceId) -> PathBuf {
        self.repository_formats().join(id.as_str())
    }

    /// The checkout of one workspace; the sandbox sees this directory and nothing else.
    pub fn workspace(&self, id: &WorkspaceId) -> PathBuf {
        self.workspaces().join(id.as_str())
    }
}

/// The data directory holds the database and every user's files: only berth's own user
/// may enter it.
async fn restrict_to_owner(dir: &Path) -> Result<(), EngineError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .await
        .map_err(|source| EngineError::Io { path: dir.to_owned(), source })
}
