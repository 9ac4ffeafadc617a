//! A checkout's status: branch, head, uncommitted paths, commits on no remote.

use crate::{Checkout, GitError, GitJob};
use berth_sandbox::SandboxDriver;
use std::time::Duration;

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

/// How long reading a status may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a branch switch may take (it writes the whole tree).
const SWITCH_TIMEOUT: Duration = Duration::from_secs(300);
/// The most of `git status` kept: enough for tens of thousands of paths.
const MAX_STATUS_BYTES: usize = 4 << 20;

/// Counts the commits no remote has while the filters are looked up (counting runs no
/// filter), and says how many on standard error, after [`UNPUSHED`]. Counting fails before
/// the first commit: none then.
const STATUS_PRELUDE: &str = r#"{ count=$(git rev-list --count HEAD --not --remotes 2>/dev/null) || count=0
printf '\nberth-unpushed=%s\n' "$count" >&2; } &
"#;

/// The porcelain status; the count is waited for before the job ends.
const STATUS_SCRIPT: &str = r#"git status --porcelain=v2 --branch -z --untracked-files=all --ignore-submodules=dirty
code=$?
wait
exit $code
"#;

/// What precedes the count of unpushed commits on the status job's standard error.
const UNPUSHED: &str = "berth-unpushed=";

/// Switches to `$2`: a local branch, else one berth's clone fetched from `origin` (made
/// local from it, without tracking: the configuration is berth's and read-only),
/// leaving submodules alone.
const SWITCH_SCRIPT: &str = r#"if git show-ref --verify --quiet -- "refs/heads/$2" || ! git show-ref --verify --quiet -- "refs/remotes/origin/$2"; then
    exec git switch --no-progress --no-recurse-submodules -- "$2"
fi
exec git switch --no-progress --no-recurse-submodules --no-track -c "$2" "refs/remotes/origin/$2"
"#;

/// Reads the status of a checkout the agent can write to, in a sandbox of its workspace.
pub async fn status(driver: &dyn SandboxDriver, checkout: Checkout<'_>) -> Result<GitStatus, GitError> {
    let mut job = GitJob::on_checkout("status", STATUS_SCRIPT, STATUS_TIMEOUT, MAX_STATUS_BYTES);
    job.prelude = STATUS_PRELUDE;
    let output = job.run(driver, checkout).await?;
    let stderr = String::from_utf8_lossy(&output.stderr_tail);
    parse_status(&output.stdout, output.stdout_truncated, &stderr)
}

/// Switches a checkout the agent can write to onto `branch`, in a sandbox of its
/// workspace. git refuses by itself when the switch would overwrite uncommitted changes.
pub async fn switch_branch(
    driver: &dyn SandboxDriver,
    checkout: Checkout<'_>,
    branch: &str,
) -> Result<(), GitError> {
    let mut job = GitJob::on_checkout("switch", SWITCH_SCRIPT, SWITCH_TIMEOUT, 64 * 1024);
    job.args.push(branch.to_owned());
    job.run(driver, checkout).await.map(drop)
}

/// Parses what the status job printed: the porcelain status on standard output (cut at its
/// bound when `truncated`, so its last entry may be partial and is dropped), the count of
/// unpushed commits on standard error.
fn parse_status(porcelain: &[u8], truncated: bool, stderr: &str) -> Result<GitStatus, GitError> {
    let count = stderr.lines().rev().find_map(|line| line.strip_prefix(UNPUSHED));
    let unpushed_commits = count.and_then(|count| count.trim().parse().ok()).ok_or_else(|| {
        GitError::Parse { line: count.unwrap_or("no count of unpushed commits").to_owned() }
    })?;
    let mut porcelain = porcelain;
    if truncated {
        let complete = porcelain.iter().rposition(|byte| *byte == 0).map_or(0, |end| end + 1);
        porcelain = &porcelain[..complete];
    }
    let mut parsed = parse_porcelain_v2(porcelain, truncated)?;
    parsed.unpushed_commits = if parsed.head.is_some() { unpushed_commits } else { 0 };
    parsed.clean = parsed.uncommitted.is_empty() && !truncated;
    Ok(parsed)
}

/// Parses `git status --porcelain=v2 --branch -z`; `clean` and `unpushed_commits` are
/// left for the caller. `truncated`: a rename whose original path was cut off ends it.
fn parse_porcelain_v2(output: &[u8], truncated: bool) -> Result<GitStatus, GitError> {
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
        if renamed && entries.next().is_none() && !truncated {
            return Err(parse_error());
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
        let status = parse_porcelain_v2(output, false).unwrap();
        assert_eq!(status.branch.as_deref(), Some("main"));
        assert_eq!(status.head.as_deref(), Some("1234abcd"));
        assert_eq!(status.uncommitted, ["src/lib.rs", "new name.txt", "conflict.txt", "notes/todo.md"]);
    }

    #[test]
    fn an_unborn_detached_checkout_has_no_branch_and_no_head() {
        let status =
            parse_porcelain_v2(b"# branch.oid (initial)\0# branch.head (detached)\0", false).unwrap();
        assert_eq!((status.branch, status.head), (None, None));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_porcelain_v2(b"1 short\0", false).is_err());
        assert!(parse_porcelain_v2(b"zzz\0", false).is_err());
        assert!(parse_porcelain_v2(b"2 R. N... 100644 100644 100644 aaa bbb R100 renamed\0", false).is_err());
        assert!(parse_status(b"# branch.oid abc\0", false, "").is_err());
        assert!(parse_status(b"# branch.oid abc\0", false, "berth-unpushed=many\n").is_err());
    }

    #[test]
    fn the_count_of_unpushed_commits_comes_on_standard_error() {
        let porcelain = b"# branch.oid abc\0# branch.head main\0? new.txt\0";
        let status = parse_status(porcelain, false, "warning: x\nberth-unpushed=3\n").unwrap();
        assert_eq!(status.unpushed_commits, 3);
        assert_eq!(status.uncommitted, ["new.txt"]);
        assert!(!status.clean);
        let unborn =
            parse_status(b"# branch.oid (initial)\0# branch.head main\0", false, "berth-unpushed=0").unwrap();
        assert!(unborn.clean && unborn.head.is_none());
    }

    #[test]
    fn output_cut_at_its_bound_keeps_the_complete_entries_and_is_not_clean() {
        let status = parse_status(b"# branch.oid abc\0? one.txt\0? tw", true, "berth-unpushed=0\n").unwrap();
        assert_eq!(status.uncommitted, ["one.txt"]);
        assert!(!status.clean);
    }
}
