//! The agent's file requests (`fs/read_text_file`, `fs/write_text_file`), served on the
//! host for an agent that may be sandboxed: a path is opened *beneath* the workspace
//! directory in one kernel call (`openat2` with `RESOLVE_BENEATH`), so no symlink, `..`
//! or magic link the agent planted — or swaps in between a check and the open — leads
//! out of it; only regular files are read or written (never a FIFO that would hang the
//! server or a device), and reads are bounded.

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest file the agent may have berth read for it.
pub const MAX_READ_BYTES: u64 = 16 << 20;

/// Opens `relative` (no leading `/`) beneath the directory `root`.
fn open_beneath(root: &Path, relative: &Path, flags: OFlag) -> std::io::Result<File> {
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW).bits())
        .open(root)?;
    // openat2 refuses a mode unless it creates.
    let mode = if flags.contains(OFlag::O_CREAT) { Mode::from_bits_truncate(0o644) } else { Mode::empty() };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
        .mode(mode)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_XDEV,
        );
    let file = File::from(openat2(&dir, relative, how).map_err(std::io::Error::from)?);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(format!("{} is not a regular file", relative.display())));
    }
    Ok(file)
}

/// The text of the file `relative` beneath `root`.
pub fn read_text(root: &Path, relative: &Path) -> std::io::Result<String> {
    let file = open_beneath(root, relative, OFlag::O_RDONLY)?;
    let mut bytes = Vec::new();
    file.take(MAX_READ_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_READ_BYTES {
        return Err(std::io::Error::other(format!(
            "{} is larger than {MAX_READ_BYTES} bytes",
            relative.display()
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::other(format!("{} is not UTF-8 text", relative.display())))
}

/// Replaces (or makes) the file `relative` beneath `root` with `content`.
pub fn write_text(root: &Path, relative: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut file = open_beneath(root, relative, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC)?;
    file.write_all(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_inside_are_read_and_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        write_text(dir.path(), Path::new("src/a.txt"), b"hello").unwrap();
        assert_eq!(read_text(dir.path(), Path::new("src/a.txt")).unwrap(), "hello");
        // A symlink that stays inside is followed like git would.
        std::os::unix::fs::symlink("src/a.txt", dir.path().join("link")).unwrap();
        assert_eq!(read_text(dir.path(), Path::new("link")).unwrap(), "hello");
    }

    #[test]
    fn nothing_planted_in_the_workspace_leads_out_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host secret").unwrap();
        let root = dir.path();
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("secret-link")).unwrap();
        std::os::unix::fs::symlink("../../../../../../../../etc/passwd", root.join("climb")).unwrap();
        std::os::unix::fs::symlink("/proc/self/root/etc/passwd", root.join("magic")).unwrap();
        for path in ["escape/secret", "secret-link", "climb", "magic", "../outside", "/etc/passwd"] {
            assert!(read_text(root, Path::new(path)).is_err(), "{path} was read");
        }
        assert!(write_text(root, Path::new("escape/planted"), b"x").is_err());
        assert!(!outside.path().join("planted").exists());
        assert_eq!(std::fs::read_to_string(outside.path().join("secret")).unwrap(), "host secret");
    }

    #[test]
    fn a_fifo_or_a_device_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&dir.path().join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        assert!(read_text(dir.path(), Path::new("fifo")).is_err());
        assert!(write_text(dir.path(), Path::new("fifo"), b"x").is_err());
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero")).unwrap();
        assert!(read_text(dir.path(), Path::new("zero")).is_err());
    }
}
