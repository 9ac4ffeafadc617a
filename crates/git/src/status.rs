//! A checkout's status: branch, head, uncommitted paths, commits on no remote.

use crate::{GitError, git_output};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitStatus {
    /// `None` when HEAD is detached.
    pub branch: Option<String>,
    /// `None` before the first commit.
    pub head: Option<String>,
    pub clean: bool,
    /// Paths with staged, unstaged, conflicted or untracked changes, as git names them.
    pub uncommitted: Vec<String>,
    /// Commits reachable from HEAD that no remote-tracking branch has.
    pub unpushed_commits: u64,
}

/// Reads the status of a checkout the agent can write to. The checkout's own
/// configuration may name filter drivers — commands git would run on this machine while
/// comparing files — so every filter it names is switched off for the read, and
/// submodules are compared by commit only (their configuration is not read at all).
pub async fn status(checkout: &Path) -> Result<GitStatus, GitError> {
    if !checkout.join(".git").exists() {
        return Err(GitError::NotACheckout { path: checkout.to_owned() });
    }
    let mut args: Vec<String> = filter_overrides(checkout).await?;
    args.extend(
        ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all", "--ignore-submodules=dirty"]
            .map(str::to_owned),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let porcelain = git_output(checkout, "status", &args).await?;
    let mut parsed = parse_porcelain_v2(&porcelain)?;
    if parsed.head.is_some() {
        let count =
            git_output(checkout, "rev-list", &["rev-list", "--count", "HEAD", "--not", "--remotes"]).await?;
        let count = String::from_utf8_lossy(&count);
        parsed.unpushed_commits =
            count.trim().parse().map_err(|_| GitError::Parse { line: count.trim().to_owned() })?;
    }
    parsed.clean = parsed.uncommitted.is_empty();
    Ok(parsed)
}

/// `-c filter.NAME.clean=` (and smudge, process) for every filter driver the checkout's
/// configuration names: an empty command is no filter. Reading configuration runs
/// nothing.
async fn filter_overrides(checkout: &Path) -> Result<Vec<String>, GitError> {
    let listed =
        match git_output(checkout, "config", &["config", "--null", "--get-regexp", r"^filter\."]).await {
            Ok(listed) => listed,
            // Exit status 1: no such keys.
            Err(GitError::Failed { status, .. }) if status.code() == Some(1) => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
    let mut names: Vec<String> = listed
        .split(|byte| *byte == 0)
        .filter_map(|entry| {
            let key = String::from_utf8_lossy(entry.split(|byte| *byte == b'\n').next()?).into_owned();
            let name = key.strip_prefix("filter.")?.rsplit_once('.')?.0.to_owned();
            Some(name)
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names
        .iter()
        .flat_map(|name| {
            ["clean=", "smudge=", "process=", "required=false"]
                .map(|setting| ["-c".to_owned(), format!("filter.{name}.{setting}")])
        })
        .flatten()
        .collect())
}

/// Parses `git status --porcelain=v2 --branch -z`; `clean` and `unpushed_commits` are
/// left for the caller.
fn parse_porcelain_v2(output: &[u8]) -> Result<GitStatus, GitError> {
    let mut status =
        GitStatus { branch: None, head: None, clean: true, uncommitted: Vec::new(), unpushed_commits: 0 };
    let mut entries = output.split(|byte| *byte == 0).filter(|entry| !entry.is_empty());
    while let Some(entry) = entries.next() {
        let line = String::from_utf8_lossy(entry);
        let parse_error = || GitError::Parse { line: line.to_string() };
        if let Some(header) = line.strip_prefix("# ") {
            if let Some(oid) = header.strip_prefix("branch.oid ") {
                status.head = (oid != "(initial)").then(|| oid.to_owned());
            } else if let Some(head) = header.strip_prefix("branch.head ") {
                status.branch = (head != "(detached)").then(|| head.to_owned());
            }
            continue;
        }
        // Changed entries carry a fixed number of fields before the path, which may
        // itself contain spaces; renames carry their original path as the next entry.
        let (fields_before_path, renamed) = match line.chars().next() {
            Some('1') => (8, false),
            Some('2') => (9, true),
            Some('u') => (10, false),
            Some('?') => (1, false),
            Some('!') => continue,
            _ => return Err(parse_error()),
        };
        let path =
            line.splitn(fields_before_path + 1, ' ').nth(fields_before_path).ok_or_else(parse_error)?;
        status.uncommitted.push(path.to_owned());
        if renamed {
            entries.next().ok_or_else(parse_error)?;
        }
    }
    Ok(status)
}

/// Switches a checkout the agent can write to onto `branch` (a local branch, or one a
/// remote has, which git then tracks). Hooks and every filter driver the checkout names
/// are switched off, as for [`status`], so nothing the agent wrote runs on this machine.
/// git refuses by itself when the switch would overwrite uncommitted changes.
pub async fn switch_branch(checkout: &Path, branch: &str) -> Result<(), GitError> {
    if !checkout.join(".git").exists() {
        return Err(GitError::NotACheckout { path: checkout.to_owned() });
    }
    let mut args: Vec<String> = filter_overrides(checkout).await?;
    args.extend(["-c", "core.hooksPath=/dev/null", "switch", "--no-progress", "--"].map(str::to_owned));
    args.push(branch.to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    git_output(checkout, "switch", &args).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_entry() {
        let output =
            b"# branch.oid 1234abcd\0# branch.head main\0# branch.upstream origin/main\0# branch.ab +1 -0\0\
1 .M N... 100644 100644 100644 aaa bbb src/lib.rs\0\
2 R. N... 100644 100644 100644 aaa bbb R100 new name.txt\0old name.txt\0\
u UU N... 100644 100644 100644 100644 aaa bbb ccc conflict.txt\0\
? notes/todo.md\0! target/\0";
        let status = parse_porcelain_v2(output).unwrap();
        assert_eq!(status.branch.as_deref(), Some("main"));
        assert_eq!(status.head.as_deref(), Some("1234abcd"));
        assert_eq!(status.uncommitted, ["src/lib.rs", "new name.txt", "conflict.txt", "notes/todo.md"]);
    }

    #[test]
    fn an_unborn_detached_checkout_has_no_branch_and_no_head() {
        let status = parse_porcelain_v2(b"# branch.oid (initial)\0# branch.head (detached)\0").unwrap();
        assert_eq!((status.branch, status.head), (None, None));
    }

    #[tokio::test]
    async fn a_filter_driver_set_in_the_checkout_never_runs_on_the_host() {
        use berth_testkit::git;
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("checkout");
        std::fs::create_dir(&checkout).unwrap();
        git(&checkout, &["init", "--quiet"]);
        std::fs::write(checkout.join("a.txt"), "hi\n").unwrap();
        git(&checkout, &["add", "a.txt"]);
        git(&checkout, &["commit", "--quiet", "-m", "first"]);
        // What an agent could write: a filter that runs a command, on every file.
        let marker = dir.path().join("filter-ran");
        let command = format!("touch '{}'; cat", marker.display());
        git(&checkout, &["config", "filter.evil.clean", &command]);
        git(&checkout, &["config", "filter.evil.process", &command]);
        std::fs::write(checkout.join(".git/info/attributes"), "* filter=evil\n").unwrap();
        // A new modification time makes git compare the content, through the filter.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(checkout.join("a.txt"))
            .unwrap()
            .set_modified(later)
            .unwrap();

        let read = status(&checkout).await.unwrap();
        assert!(!marker.exists(), "git ran the checkout's filter command while reading status");
        assert!(read.clean, "{read:?}");
        assert_eq!(read.unpushed_commits, 1);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_porcelain_v2(b"1 short\0").is_err());
        assert!(parse_porcelain_v2(b"zzz\0").is_err());
        assert!(parse_porcelain_v2(b"2 R. N... 100644 100644 100644 aaa bbb R100 renamed\0").is_err());
    }
}
