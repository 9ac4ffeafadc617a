//! What changed in a checkout — each uncommitted file's unified diff against HEAD
//! (untracked files included, as new files) and the commits no remote has — and a commit
//! of everything, both run in a sandbox of the workspace like every git command. What git
//! prints is the checkout's content: parsed as untrusted text and bounded.

use crate::{Checkout, GitError, GitJob};
use berth_sandbox::SandboxDriver;
use std::time::Duration;

const CHANGES_TIMEOUT: Duration = Duration::from_secs(60);
/// The most of the job's output read: numbers, the patch and the commits.
const MAX_CHANGES_BYTES: usize = 4 << 20;
/// The most of one file's patch kept; a longer one is cut (`truncated` on the file).
pub const MAX_FILE_DIFF_BYTES: usize = 256 * 1024;
/// The most files listed.
pub const MAX_FILES: usize = 1000;
/// The most unpushed commits listed.
pub const MAX_COMMITS: usize = 100;

/// Between the parts of the job's output: a line of three NULs, which neither
/// `--numstat -z` (no path is empty, so no two NULs meet) nor a text patch nor a commit
/// list can hold.
const SEPARATOR: &[u8] = b"\n\0\0\0\n";

/// The numbers (`--numstat -z`), the patch, and the commits no remote has. Untracked
/// files are added to a *copy* of the index as intent-to-add, so they show as new files
/// while the checkout's own index is never touched and no object is written.
const CHANGES_SCRIPT: &str = r#"index=$(mktemp) || exit 1
if [ -f "$GIT_DIR/index" ]; then cp "$GIT_DIR/index" "$index"; else rm -f "$index"; fi
export GIT_INDEX_FILE="$index"
git ls-files --others --exclude-standard -z | git add --intent-to-add --pathspec-from-file=- --pathspec-file-nul 2>/dev/null
base=HEAD
git rev-parse --verify --quiet HEAD >/dev/null || base=4b825dc642cb6eb9a060e54bf8d69288fbee4904
set -e
git diff "$base" --numstat -z -M --no-ext-diff --no-textconv --ignore-submodules=dirty
printf '\n\0\0\0\n'
git diff "$base" -M --no-color --no-ext-diff --no-textconv --ignore-submodules=dirty --patch
printf '\n\0\0\0\n'
if [ "$base" = HEAD ]; then git log --format='%H %s' --max-count=100 HEAD --not --remotes; fi
"#;

/// `git add --all` then a commit of everything with the given identity and message.
const COMMIT_SCRIPT: &str = r#"set -e
git add --all
if git diff --cached --quiet --ignore-submodules=dirty; then echo "error: nothing to commit" >&2; exit 3; fi
git commit --quiet --no-verify --cleanup=strip -m "$2"
git rev-parse HEAD
git symbolic-ref --quiet --short HEAD || true
"#;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    Added,
    Modified,
    Deleted,
    Renamed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFile {
    pub path: String,
    /// The path before a rename.
    pub old_path: Option<String>,
    pub change: FileChange,
    /// `None` for a binary file.
    pub additions: Option<u64>,
    pub deletions: Option<u64>,
    pub binary: bool,
    /// The file's unified diff (headers included); `None` for a binary file or when the
    /// output's bound came first.
    pub diff: Option<String>,
    /// The diff was cut at [`MAX_FILE_DIFF_BYTES`].
    pub diff_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
    pub subject: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    pub files: Vec<ChangedFile>,
    /// Commits reachable from HEAD that no remote-tracking branch has (newest first).
    pub unpushed: Vec<Commit>,
    /// More files, or more output, than the bounds allow: the lists are partial.
    pub truncated: bool,
}

/// What changed in a checkout, read in a sandbox of its workspace.
pub async fn changes(driver: &dyn SandboxDriver, checkout: Checkout<'_>) -> Result<Changes, GitError> {
    let job = GitJob::on_checkout("diff", CHANGES_SCRIPT, CHANGES_TIMEOUT, MAX_CHANGES_BYTES);
    let output = job.run(driver, checkout).await?;
    Ok(parse_changes(&output.stdout, output.stdout_truncated))
}

/// The new head and branch after a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub head: String,
    pub branch: Option<String>,
}

/// Commits everything in the checkout (new, changed and deleted files) as `author`
/// (`name`, `email`) with `message`, in a sandbox of its workspace. Hooks do not run.
/// Nothing to commit is [`GitError::Failed`] with `nothing to commit`.
pub async fn commit(
    driver: &dyn SandboxDriver,
    checkout: Checkout<'_>,
    author: (&str, &str),
    message: &str,
) -> Result<Committed, GitError> {
    let mut job = GitJob::on_checkout("commit", COMMIT_SCRIPT, CHANGES_TIMEOUT, 4096);
    job.args.push(message.to_owned());
    job.identity = Some((author.0.to_owned(), author.1.to_owned()));
    let output = job.run(driver, checkout).await?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let head = lines
        .next()
        .filter(|head| head.len() >= 40)
        .ok_or_else(|| GitError::Parse { line: text.chars().take(200).collect() })?;
    Ok(Committed {
        head: head.to_owned(),
        branch: lines.next().filter(|branch| !branch.is_empty()).map(str::to_owned),
    })
}

fn split_parts(output: &[u8]) -> [&[u8]; 3] {
    let mut parts = [&output[..0]; 3];
    let mut rest = output;
    for part in parts.iter_mut() {
        match rest.windows(SEPARATOR.len()).position(|window| window == SEPARATOR) {
            Some(at) => {
                *part = &rest[..at];
                rest = &rest[at + SEPARATOR.len()..];
            }
            None => {
                *part = rest;
                rest = &rest[..0];
            }
        }
    }
    parts
}

fn parse_changes(output: &[u8], cut: bool) -> Changes {
    let [numstat, patch, commits] = split_parts(output);
    let mut truncated = cut;
    let mut files = parse_numstat(numstat);
    if files.len() > MAX_FILES {
        files.truncate(MAX_FILES);
        truncated = true;
    }
    let patch = String::from_utf8_lossy(patch);
    let mut sections = patch_sections(&patch).into_iter();
    for file in &mut files {
        // One section per file, in the same order as the numbers.
        let Some(section) = sections.next() else { break };
        if section.lines().any(|line| line.starts_with("new file mode")) {
            file.change = FileChange::Added;
        } else if section.lines().any(|line| line.starts_with("deleted file mode")) {
            file.change = FileChange::Deleted;
        }
        if !file.binary {
            let mut text = section.to_owned();
            if text.len() > MAX_FILE_DIFF_BYTES {
                let mut cut_at = MAX_FILE_DIFF_BYTES;
                while !text.is_char_boundary(cut_at) {
                    cut_at -= 1;
                }
                text.truncate(cut_at);
                file.diff_truncated = true;
            }
            file.diff = Some(text);
        }
    }
    let unpushed = String::from_utf8_lossy(commits)
        .lines()
        .filter_map(|line| {
            let (sha, subject) = line.split_once(' ').unwrap_or((line, ""));
            (sha.len() >= 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| Commit { sha: sha.to_owned(), subject: subject.chars().take(200).collect() })
        })
        .take(MAX_COMMITS)
        .collect();
    Changes { files, unpushed, truncated }
}

/// `--numstat -z`: `added\tdeleted\tpath\0`, or for a rename `added\tdeleted\t\0old\0new\0`;
/// `-\t-\t` for a binary file.
fn parse_numstat(numstat: &[u8]) -> Vec<ChangedFile> {
    let mut fields =
        numstat.split(|byte| *byte == 0).map(|field| String::from_utf8_lossy(field).into_owned());
    let mut files = Vec::new();
    while let Some(record) = fields.next() {
        let mut parts = record.splitn(3, '\t');
        let (Some(added), Some(deleted), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let binary = added == "-" && deleted == "-";
        let (path, old_path) = if path.is_empty() {
            let (Some(old), Some(new)) = (fields.next(), fields.next()) else { break };
            (new, Some(old))
        } else {
            (path.to_owned(), None)
        };
        files.push(ChangedFile {
            change: if old_path.is_some() { FileChange::Renamed } else { FileChange::Modified },
            path,
            old_path,
            additions: added.parse().ok(),
            deletions: deleted.parse().ok(),
            binary,
            diff: None,
            diff_truncated: false,
        });
    }
    files
}

/// The patch cut into one section per file, at each `diff --git ` line.
fn patch_sections(patch: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = Vec::new();
    let mut offset = 0;
    for line in patch.split_inclusive('\n') {
        if line.starts_with("diff --git ") {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts
        .iter()
        .enumerate()
        .map(|(index, &start)| &patch[start..starts.get(index + 1).copied().unwrap_or(patch.len())])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_patch_and_commits_are_read_apart() {
        let mut output = Vec::new();
        output.extend_from_slice(b"1\t0\tnew.txt\x002\t1\t\x00old name\x00new name\x00-\t-\timage.png\x00");
        output.extend_from_slice(SEPARATOR);
        output.extend_from_slice(
            b"diff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hi\n\
              diff --git a/old name b/new name\nsimilarity index 50%\nrename from old name\nrename to new name\n\
              diff --git a/image.png b/image.png\nBinary files a/image.png and b/image.png differ\n",
        );
        output.extend_from_slice(SEPARATOR);
        output.extend_from_slice(format!("{} first line\nnot a commit\n", "a".repeat(40)).as_bytes());
        let changes = parse_changes(&output, false);
        assert_eq!(changes.files.len(), 3);
        assert_eq!(
            (changes.files[0].change.clone(), changes.files[0].additions),
            (FileChange::Added, Some(1))
        );
        assert!(changes.files[0].diff.as_deref().unwrap().ends_with("+hi\n"));
        assert_eq!(changes.files[1].change, FileChange::Renamed);
        assert_eq!(changes.files[1].old_path.as_deref(), Some("old name"));
        assert_eq!(changes.files[1].path, "new name");
        assert!(changes.files[2].binary && changes.files[2].diff.is_none());
        assert_eq!(changes.unpushed, vec![Commit { sha: "a".repeat(40), subject: "first line".into() }]);
        assert!(!changes.truncated);
    }

    #[test]
    fn nothing_changed_reads_as_nothing() {
        let changes = parse_changes(b"\n\0\0\0\n\n\0\0\0\n", false);
        assert!(changes.files.is_empty() && changes.unpushed.is_empty());
    }
}
