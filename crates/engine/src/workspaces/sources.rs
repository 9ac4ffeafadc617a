//! Where a workspace's repository may be cloned from. A local path is resolved the way
//! git would follow it — symlinks, `..`, a `.git` file, `commondir`, alternates — and is
//! refused when any of it reaches berth's data directory (another user's workspace, the
//! database), or, for members, when it lies outside `git.local_roots`. The clone then
//! sees only the resolved directory, read-only, so a spelling checked here is also the
//! only thing reachable there. Sources are directories of the host that no sandbox
//! writes (the data directory is refused), read here with bounded reads.

use super::Workspaces;
use crate::EngineError;
use berth_core::User;
use berth_core::validate::{self, Field, InputError, RepoSource};
use berth_git::CloneSource;
use std::path::{Path, PathBuf};

/// The most of a `.git` file, `commondir` or `alternates` file read.
const MAX_POINTER_FILE_BYTES: u64 = 64 * 1024;
/// git follows alternates of alternates this deep.
const MAX_ALTERNATES_DEPTH: usize = 5;

fn refuse(reason: impl Into<String>) -> EngineError {
    InputError { field: Field::Repo, reason: reason.into() }.into()
}

impl Workspaces {
    /// What `repo` (a string `validate::repo` accepts) clones from for `owner`, or why it
    /// may not be cloned.
    pub(crate) async fn clone_source(&self, owner: &User, repo: &str) -> Result<CloneSource, EngineError> {
        match validate::repo(repo)? {
            RepoSource::Remote => Ok(CloneSource::Remote(repo.to_owned())),
            RepoSource::LocalPath(path) => {
                let data_dir = self.paths.root().to_owned();
                let roots = if owner.is_admin() { None } else { Some(self.config.git_local_roots.clone()) };
                let path = PathBuf::from(path);
                tokio::task::spawn_blocking(move || local_source(&path, &data_dir, roots.as_deref()))
                    .await
                    .map_err(|_| refuse("the repository path could not be checked"))?
                    .map(CloneSource::Local)
            }
        }
    }
}

/// The canonical directory a local repository `path` is cloned from. `roots`: where a
/// member may clone from (`None` for an administrator).
fn local_source(path: &Path, data_dir: &Path, roots: Option<&[PathBuf]>) -> Result<PathBuf, EngineError> {
    let inside_data_dir = |resolved: &Path| resolved.starts_with(data_dir) || data_dir.starts_with(resolved);
    let resolved = std::fs::canonicalize(path)
        .map_err(|_| refuse("the repository path does not exist or cannot be read"))?;
    if !resolved.is_dir() {
        return Err(refuse("the repository path is not a directory"));
    }
    if inside_data_dir(&resolved) {
        return Err(refuse("the repository path resolves into berth's data directory"));
    }
    if let Some(roots) = roots {
        let allowed = roots
            .iter()
            .filter_map(|root| std::fs::canonicalize(root).ok())
            .any(|root| resolved.starts_with(root));
        if !allowed {
            return Err(refuse(
                "members may clone local paths only under the directories of git.local_roots; use a URL",
            ));
        }
    }
    for git_dir in git_dirs(&resolved) {
        if inside_data_dir(&git_dir) {
            return Err(refuse(
                "the repository's git directory (a .git file or commondir) points into berth's data directory",
            ));
        }
        if alternates(&git_dir, 0).iter().any(|alternate| inside_data_dir(alternate)) {
            return Err(refuse(
                "the repository borrows objects (objects/info/alternates) from berth's data directory",
            ));
        }
    }
    Ok(resolved)
}

/// The git directories a clone of `repository` would read: its `.git` (a directory, or
/// the one a `.git` file names), the repository itself when bare, and their `commondir`.
fn git_dirs(repository: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![repository.to_owned()];
    let dot_git = repository.join(".git");
    if let Ok(resolved) = std::fs::canonicalize(&dot_git) {
        if resolved.is_dir() {
            dirs.push(resolved);
        } else if let Some(target) = read_small(&resolved)
            .and_then(|text| {
                text.lines().next()?.strip_prefix("gitdir:").map(|target| target.trim().to_owned())
            })
            .and_then(|target| std::fs::canonicalize(repository.join(target)).ok())
        {
            dirs.push(target);
        }
    }
    let common: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|dir| {
            let target = read_small(&dir.join("commondir"))?;
            std::fs::canonicalize(dir.join(target.trim())).ok()
        })
        .collect();
    dirs.extend(common);
    dirs
}

/// The object directories `git_dir` borrows from, followed as deep as git would.
fn alternates(git_dir: &Path, depth: usize) -> Vec<PathBuf> {
    if depth >= MAX_ALTERNATES_DEPTH {
        return Vec::new();
    }
    let objects = if git_dir.ends_with("objects") { git_dir.to_owned() } else { git_dir.join("objects") };
    let Some(text) = read_small(&objects.join("info/alternates")) else { return Vec::new() };
    let mut found = Vec::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
        // A relative entry is relative to the objects directory.
        if let Ok(resolved) = std::fs::canonicalize(objects.join(line.trim_matches('"'))) {
            found.extend(alternates(&resolved, depth + 1));
            found.push(resolved);
        }
    }
    found
}

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(MAX_POINTER_FILE_BYTES).read_to_string(&mut text).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_testkit::git;

    struct Layout {
        _dir: tempfile::TempDir,
        root: PathBuf,
        data: PathBuf,
        other_workspace: PathBuf,
    }

    /// A local root that holds the data directory (the worst a configuration can do), a
    /// workspace in it, and a repository beside it.
    fn layout() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let data = root.join("data");
        let other_workspace = data.join("workspaces/w_other");
        std::fs::create_dir_all(&other_workspace).unwrap();
        git(&other_workspace, &["init", "--quiet"]);
        let repo = root.join("repo");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "--quiet"]);
        Layout { _dir: dir, root, data, other_workspace }
    }

    fn member_clones(layout: &Layout, path: &Path) -> Result<PathBuf, String> {
        local_source(path, &layout.data, Some(std::slice::from_ref(&layout.root))).map_err(|e| e.to_string())
    }

    #[test]
    fn a_repository_under_a_local_root_is_cloned_from_its_canonical_path() {
        let layout = layout();
        let spelled = layout.root.join("repo/./");
        assert_eq!(member_clones(&layout, &spelled).unwrap(), layout.root.join("repo"));
    }

    #[test]
    fn every_spelling_of_the_data_directory_is_refused() {
        let layout = layout();
        let link = layout.root.join("link");
        std::os::unix::fs::symlink(&layout.other_workspace, &link).unwrap();
        let proc_spelling = PathBuf::from(format!("/proc/self/root{}", layout.other_workspace.display()));
        for path in [layout.other_workspace.clone(), link, proc_spelling, layout.root.clone()] {
            let error = member_clones(&layout, &path).expect_err(&path.display().to_string());
            assert!(error.contains("data directory"), "{path:?}: {error}");
        }
    }

    #[test]
    fn a_gitfile_or_alternates_into_the_data_directory_is_refused() {
        let layout = layout();
        let gitfile_repo = layout.root.join("gitfile");
        std::fs::create_dir(&gitfile_repo).unwrap();
        std::fs::write(
            gitfile_repo.join(".git"),
            format!("gitdir: {}/.git\n", layout.other_workspace.display()),
        )
        .unwrap();
        let error = member_clones(&layout, &gitfile_repo).unwrap_err();
        assert!(error.contains(".git file"), "{error}");

        let borrowing = layout.root.join("repo");
        let objects = layout.other_workspace.join(".git/objects");
        std::fs::write(borrowing.join(".git/objects/info/alternates"), format!("{}\n", objects.display()))
            .unwrap();
        let error = member_clones(&layout, &borrowing).unwrap_err();
        assert!(error.contains("alternates"), "{error}");
    }

    #[test]
    fn members_clone_only_under_local_roots_and_administrators_anywhere_else() {
        let layout = layout();
        let elsewhere = tempfile::tempdir().unwrap();
        git(elsewhere.path(), &["init", "--quiet"]);
        let error = local_source(elsewhere.path(), &layout.data, Some(&[])).unwrap_err().to_string();
        assert!(error.contains("git.local_roots"), "{error}");
        assert!(local_source(elsewhere.path(), &layout.data, None).is_ok());
        assert!(local_source(&layout.other_workspace, &layout.data, None).is_err());
    }
}
