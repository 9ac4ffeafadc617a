//! The file browser's view of a checkout: a directory's entries or a file's bytes, read
//! in a sandbox of the workspace like every git command — the host never opens, lists or
//! follows anything the agent wrote. Inside, no symbolic link is followed either: a link
//! is shown as one (with its target's text), and a path through one is not found.

use crate::{Checkout, GitError, GitJob};
use berth_sandbox::SandboxDriver;
use std::time::Duration;

const FILES_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a file read; a longer one is cut (`truncated`).
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// The most entries of a directory listed.
pub const MAX_ENTRIES: usize = 5000;
/// The most of a link's target kept.
const MAX_TARGET_BYTES: usize = 4096;
/// Each listed entry is `kind\tsize\tname\0`: the listing's output is bounded at this
/// many bytes per entry on average (names are at most 255 bytes).
const ENTRY_BYTES: usize = 300;

/// Walks `$2` name by name from the checkout (`$1`), stopping at the first link, then
/// prints one header line — `D` (entries follow), `F\t<size>\t<sha or ->` (bytes follow), `L` (the
/// target follows) or `N` (nothing there) — and what follows it, bounded by `$3`.
/// `.git` is never listed (the path was checked on the host not to start with it), nor
/// the checkout's `.berth` (the agent's own files, never part of the work).
const FILES_SCRIPT: &str = r#"cd -- "$1" || exit 1
target=. rest=$2
while [ -n "$rest" ]; do
    name=${rest%%/*}
    if [ "$name" = "$rest" ]; then rest=; else rest=${rest#*/}; fi
    target=$target/$name
    if [ -L "$target" ]; then
        [ -z "$rest" ] || { echo N; exit 0; }
        echo L; readlink -- "$target" | head -c 4096; exit 0
    fi
    [ -e "$target" ] || { echo N; exit 0; }
    [ -z "$rest" ] || [ -d "$target" ] || { echo N; exit 0; }
done
if [ -d "$target" ]; then
    echo D
    find "$target" -mindepth 1 -maxdepth 1 ! -name .git ! -path ./.berth -printf '%y\t%s\t%f\0' | head -c "$3"
elif [ -f "$target" ]; then
    size=$(stat -c %s -- "$target")
    sha=-
    if [ "$size" -le "$3" ]; then sha=$(sha256sum < "$target" | cut -c1-64); fi
    printf 'F\t%s\t%s\n' "$size" "$sha"
    head -c "$3" -- "$target"
else
    echo N
fi
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    /// A FIFO, socket or device: listed, never read.
    Other,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Dir => "dir",
            EntryKind::File => "file",
            EntryKind::Symlink => "symlink",
            EntryKind::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
}

/// What a path of a checkout is, as the sandbox saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutPath {
    /// Directories first, then by name; `truncated` past [`MAX_ENTRIES`].
    Dir {
        entries: Vec<Entry>,
        truncated: bool,
    },
    /// The file's size and its first [`MAX_FILE_BYTES`], and the version of a whole one
    /// (its SHA-256, hex), which a write names to be sure it replaces what was read.
    File {
        size: u64,
        bytes: Vec<u8>,
        truncated: bool,
        sha: Option<String>,
    },
    /// A symbolic link, not followed: what it points at, as text.
    Symlink {
        target: String,
    },
    NotFound,
}

/// What `path` (checked by `berth_core::validate::checkout_path`) is in the checkout.
pub async fn read_path(
    driver: &dyn SandboxDriver,
    checkout: Checkout<'_>,
    path: &str,
) -> Result<CheckoutPath, GitError> {
    let limit = MAX_FILE_BYTES.max((MAX_ENTRIES + 1) * ENTRY_BYTES);
    let mut job = GitJob::on_checkout("read", FILES_SCRIPT, FILES_TIMEOUT, limit + 64);
    job.args = vec![path.to_owned(), limit.to_string()];
    let output = job.run(driver, checkout).await?;
    parse(&output.stdout)
}

fn parse(output: &[u8]) -> Result<CheckoutPath, GitError> {
    let at = output.iter().position(|byte| *byte == b'\n').unwrap_or(output.len());
    let (header, rest) = (&output[..at], output.get(at + 1..).unwrap_or_default());
    let unexpected = || GitError::Parse { line: String::from_utf8_lossy(header).chars().take(200).collect() };
    match header {
        b"D" => Ok(listing(rest)),
        b"L" => Ok(CheckoutPath::Symlink {
            target: String::from_utf8_lossy(&rest[..rest.len().min(MAX_TARGET_BYTES)]).trim_end().to_owned(),
        }),
        b"N" => Ok(CheckoutPath::NotFound),
        _ => {
            let fields = header.strip_prefix(b"F\t").and_then(|fields| std::str::from_utf8(fields).ok());
            let (size, sha) = fields.and_then(|fields| fields.split_once('\t')).ok_or_else(unexpected)?;
            let size: u64 = size.parse().map_err(|_| unexpected())?;
            let truncated = rest.len() > MAX_FILE_BYTES || size > MAX_FILE_BYTES as u64;
            let sha = is_sha(sha).then(|| sha.to_owned()).filter(|_| !truncated);
            Ok(CheckoutPath::File {
                size,
                bytes: rest[..rest.len().min(MAX_FILE_BYTES)].to_vec(),
                truncated,
                sha,
            })
        }
    }
}

/// Whether `text` is a SHA-256 as `sha256sum` prints it.
fn is_sha(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase())
}

/// `find -printf '%y\t%s\t%f\0'` records; a record cut by the bound is dropped.
fn listing(output: &[u8]) -> CheckoutPath {
    let mut records: Vec<&[u8]> = output.split(|byte| *byte == 0).collect();
    // The last piece follows the last NUL: empty, or a record the bound cut.
    let cut = !records.pop().unwrap_or_default().is_empty();
    let mut entries: Vec<Entry> = records
        .into_iter()
        .filter_map(|record| {
            let record = String::from_utf8_lossy(record);
            let mut fields = record.splitn(3, '\t');
            let (kind, size, name) = (fields.next()?, fields.next()?, fields.next()?);
            let kind = match kind {
                "d" => EntryKind::Dir,
                "f" => EntryKind::File,
                "l" => EntryKind::Symlink,
                _ => EntryKind::Other,
            };
            (!name.is_empty()).then(|| Entry { name: name.to_owned(), kind, size: size.parse().unwrap_or(0) })
        })
        .collect();
    let truncated = cut || entries.len() > MAX_ENTRIES;
    entries.truncate(MAX_ENTRIES);
    entries.sort_by(|a, b| (a.kind != EntryKind::Dir, &a.name).cmp(&(b.kind != EntryKind::Dir, &b.name)));
    CheckoutPath::Dir { entries, truncated }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_puts_directories_first_and_drops_a_cut_record() {
        let parsed = parse(b"D\nf\t3\tb.txt\0d\t4096\tsrc\0l\t9\tlink\tname\0f\t1\tcu").unwrap();
        let CheckoutPath::Dir { entries, truncated } = parsed else { panic!("{parsed:?}") };
        assert!(truncated);
        let names: Vec<_> = entries.iter().map(|entry| (entry.name.as_str(), entry.kind)).collect();
        assert_eq!(
            names,
            [("src", EntryKind::Dir), ("b.txt", EntryKind::File), ("link\tname", EntryKind::Symlink)]
        );
    }

    #[test]
    fn a_file_keeps_its_size_and_is_cut_at_the_bound() {
        let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(
            parse(format!("F\t5\t{sha}\nhello").as_bytes()).unwrap(),
            CheckoutPath::File { size: 5, bytes: b"hello".to_vec(), truncated: false, sha: Some(sha.into()) }
        );
        let big = [b"F\t9999999\t-\n".as_slice(), &vec![b'a'; MAX_FILE_BYTES + 10]].concat();
        let CheckoutPath::File { bytes, truncated, .. } = parse(&big).unwrap() else { panic!() };
        assert!(truncated && bytes.len() == MAX_FILE_BYTES);
    }

    #[test]
    fn links_and_nothing_and_nonsense() {
        assert_eq!(
            parse(b"L\n/etc/passwd\n").unwrap(),
            CheckoutPath::Symlink { target: "/etc/passwd".into() }
        );
        assert_eq!(parse(b"N\n").unwrap(), CheckoutPath::NotFound);
        assert!(matches!(parse(b"F\tlots\n"), Err(GitError::Parse { .. })));
        assert!(matches!(parse(b""), Err(GitError::Parse { .. })));
    }
}

/// Walks the directories of `$2` from the checkout (`$1`) — making those missing when
/// `$4` is `make` — and stops at a link, or at something else than a directory, on the
/// way: the walk a write or a rename does before it touches anything. Leaves `dir` (the
/// last directory) and `name` (the last name). The checkout's `.berth` (the agent's own
/// files) is not written to.
const WALK_SCRIPT: &str = r#"cd -- "$1" || exit 1
walk() {
    dir=. rest=$1
    case $rest in .berth|.berth/*) echo "E the agent's own files (.berth) are not written through berth"; exit 0;; esac
    while :; do
        name=${rest%%/*}
        [ "$name" = "$rest" ] && break
        rest=${rest#*/}
        dir=$dir/$name
        [ -L "$dir" ] && { echo "E a symbolic link is on the way"; exit 0; }
        if [ ! -e "$dir" ] && [ "$2" = make ]; then mkdir -- "$dir" || exit 1; fi
        [ -e "$dir" ] || { echo N; exit 0; }
        [ -d "$dir" ] || { echo "E a file is on the way, not a directory"; exit 0; }
    done
}
version() { sha256sum < "$1" | cut -c1-64; }
"#;

/// Writes standard input to `$2` when it is still the version `$3` (`-`: any; `none`: it
/// must not exist), by a rename over it (so a link planted there is replaced, never
/// followed); prints `W <new version>`, `C <current version or nothing>`, `E <reason>`.
const WRITE_SCRIPT: &str = r#"walk "$2" make
target=$dir/$name
[ -L "$target" ] && { echo "E the path is a symbolic link"; exit 0; }
[ -d "$target" ] && { echo "E the path is a directory"; exit 0; }
[ ! -e "$target" ] || [ -f "$target" ] || { echo "E the path is not a regular file"; exit 0; }
current=
[ -f "$target" ] && current=$(version "$target")
case $3 in
    -) ;;
    none) [ -z "$current" ] || { echo "C $current"; exit 0; } ;;
    *) [ "$current" = "$3" ] || { echo "C $current"; exit 0; } ;;
esac
temporary=$dir/.berth-write-$$
cat > "$temporary" || { rm -f -- "$temporary"; exit 1; }
[ -f "$target" ] && chmod --reference="$target" -- "$temporary" 2>/dev/null
written=$(version "$temporary")
mv -f -T -- "$temporary" "$target" || { rm -f -- "$temporary"; exit 1; }
echo "W $written"
"#;

/// Removes the file (or link, never followed) `$2`; prints `D`, `N` or `E <reason>`.
const DELETE_SCRIPT: &str = r#"walk "$2" find
target=$dir/$name
[ -L "$target" ] || [ -e "$target" ] || { echo N; exit 0; }
[ -d "$target" ] && ! [ -L "$target" ] && { echo "E the path is a directory"; exit 0; }
rm -f -- "$target" || exit 1
echo D
"#;

/// Renames `$2` (a file, a link or a directory, never followed) to `$3`, whose
/// directories are made; prints `R`, `N`, `X` (`$3` exists) or `E <reason>`.
const RENAME_SCRIPT: &str = r#"walk "$2" find
from=$dir/$name
[ -L "$from" ] || [ -e "$from" ] || { echo N; exit 0; }
walk "$3" make
to=$dir/$name
{ [ -L "$to" ] || [ -e "$to" ]; } && { echo X; exit 0; }
mv -T -- "$from" "$to" || exit 1
echo R
"#;

/// What a change to a checkout's files came to, as the sandbox saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// Written: its new version.
    Written {
        sha: String,
    },
    /// Not written: the file is no longer the version named (`None`: it does not exist).
    Changed {
        sha: Option<String>,
    },
    Removed,
    Renamed,
    NotFound,
    /// The destination of a rename exists.
    Exists,
    /// Refused for what the path is: a link on the way, a directory, `.berth`.
    Refused {
        reason: String,
    },
}

/// The version a write must replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Whatever is there.
    Any,
    /// The file must not exist yet.
    Absent,
    /// The file must be this version.
    Version(String),
}

const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes `content` to `path` (checked by `berth_core::validate::checkout_path`) of the
/// checkout, in a sandbox of the workspace, if it is still the version `expected`.
pub async fn write_file(
    driver: &dyn SandboxDriver,
    checkout: Checkout<'_>,
    path: &str,
    content: &[u8],
    expected: &Expected,
) -> Result<FileOutcome, GitError> {
    let expected = match expected {
        Expected::Any => "-".to_owned(),
        Expected::Absent => "none".to_owned(),
        // Only a version as reads give it can match.
        Expected::Version(sha) if is_sha(sha) => sha.clone(),
        Expected::Version(_) => "not-a-version".to_owned(),
    };
    let script = format!("{WALK_SCRIPT}{WRITE_SCRIPT}");
    let mut job = GitJob::on_checkout("write", &script, WRITE_TIMEOUT, 256);
    job.args = vec![path.to_owned(), expected];
    job.stdin = content.to_vec();
    change(job.run(driver, checkout).await?.stdout)
}

/// Removes the file or link `path` of the checkout.
pub async fn delete_file(
    driver: &dyn SandboxDriver,
    checkout: Checkout<'_>,
    path: &str,
) -> Result<FileOutcome, GitError> {
    let script = format!("{WALK_SCRIPT}{DELETE_SCRIPT}");
    let mut job = GitJob::on_checkout("delete", &script, WRITE_TIMEOUT, 256);
    job.args = vec![path.to_owned()];
    change(job.run(driver, checkout).await?.stdout)
}

/// Renames `from` to `to` in the checkout; `to` must not exist.
pub async fn rename_file(
    driver: &dyn SandboxDriver,
    checkout: Checkout<'_>,
    from: &str,
    to: &str,
) -> Result<FileOutcome, GitError> {
    let script = format!("{WALK_SCRIPT}{RENAME_SCRIPT}");
    let mut job = GitJob::on_checkout("rename", &script, WRITE_TIMEOUT, 256);
    job.args = vec![from.to_owned(), to.to_owned()];
    change(job.run(driver, checkout).await?.stdout)
}

fn change(output: Vec<u8>) -> Result<FileOutcome, GitError> {
    let text = String::from_utf8_lossy(&output);
    let line = text.lines().next().unwrap_or_default();
    let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
    Ok(match kind {
        "W" if is_sha(rest) => FileOutcome::Written { sha: rest.to_owned() },
        "C" => FileOutcome::Changed { sha: is_sha(rest).then(|| rest.to_owned()) },
        "D" => FileOutcome::Removed,
        "R" => FileOutcome::Renamed,
        "N" => FileOutcome::NotFound,
        "X" => FileOutcome::Exists,
        "E" => FileOutcome::Refused { reason: rest.chars().take(200).collect() },
        _ => return Err(GitError::Parse { line: line.chars().take(200).collect() }),
    })
}
