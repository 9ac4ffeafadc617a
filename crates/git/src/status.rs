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

pub async fn status(checkout: &Path) -> Result<GitStatus, GitError> {
    if !checkout.join(".git").exists() {
        return Err(GitError::NotACheckout { path: checkout.to_owned() });
    }
    let porcelain = git_output(
        checkout,
        "status",
        &["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"],
    )
    .await?;
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

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_porcelain_v2(b"1 short\0").is_err());
        assert!(parse_porcelain_v2(b"zzz\0").is_err());
        assert!(parse_porcelain_v2(b"2 R. N... 100644 100644 100644 aaa bbb R100 renamed\0").is_err());
    }
}
