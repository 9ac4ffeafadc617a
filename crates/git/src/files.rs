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
/// prints one header line — `D` (entries follow), `F\t<size>` (bytes follow), `L` (the
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
    printf 'F\t%s\n' "$(stat -c %s -- "$target")"
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
    /// The file's size and its first [`MAX_FILE_BYTES`].
    File {
        size: u64,
        bytes: Vec<u8>,
        truncated: bool,
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
            let size = header.strip_prefix(b"F\t").and_then(|size| std::str::from_utf8(size).ok());
            let size: u64 = size.and_then(|size| size.parse().ok()).ok_or_else(unexpected)?;
            let truncated = rest.len() > MAX_FILE_BYTES || size > MAX_FILE_BYTES as u64;
            Ok(CheckoutPath::File { size, bytes: rest[..rest.len().min(MAX_FILE_BYTES)].to_vec(), truncated })
        }
    }
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
        assert_eq!(
            parse(b"F\t5\nhello").unwrap(),
            CheckoutPath::File { size: 5, bytes: b"hello".to_vec(), truncated: false }
        );
        let big = [b"F\t9999999\n".as_slice(), &vec![b'a'; MAX_FILE_BYTES + 10]].concat();
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
