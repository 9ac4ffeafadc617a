//! Environment that must stay private: a user's secrets, a git credential. It never goes
//! on a command line (`bwrap --setenv` would put it in the host's process list) nor into
//! the environment of a host-side program (`LD_PRELOAD` set as a "secret" would run in
//! bubblewrap itself). The local driver writes it to a file only root can read, in its
//! state directory (hidden from every sandbox), binds that one file read-only at
//! [`INSIDE`], and the sandbox's first shell exports it; the file is removed when the
//! sandbox or job ends.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where a sandbox finds its private environment.
pub const INSIDE: &str = "/run/berth/env";

/// Exports the file at [`INSIDE`], then runs the program given after it.
const EXPORT_THEN_EXEC: &str = "set -a; . /run/berth/env; set +a; exec \"$@\"";

/// A name a shell exports as it is.
pub fn is_plain_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// `program` run after the private environment is exported.
pub fn wrap(program: &[OsString]) -> Vec<OsString> {
    let mut line: Vec<OsString> =
        vec!["/bin/sh".into(), "-c".into(), EXPORT_THEN_EXEC.into(), "berth-env".into()];
    line.extend(program.iter().cloned());
    line
}

/// The private environment file of one sandbox or job; removed when dropped.
#[derive(Debug)]
pub struct EnvFile {
    path: PathBuf,
}

impl EnvFile {
    /// Writes `env` to `path` (which must not exist), readable by its owner only: one
    /// `NAME='value'` per variable. Names that are not plain are skipped; a value holding
    /// NUL (no environment can) is cut there.
    pub fn write(path: &Path, env: &[(String, String)]) -> std::io::Result<EnvFile> {
        let mut text = String::new();
        for (name, value) in env.iter().filter(|(name, _)| is_plain_name(name)) {
            let value = value.split('\0').next().unwrap_or_default();
            text.push_str(&format!("{name}='{}'\n", value.replace('\'', r"'\''")));
        }
        EnvFile::write_text(path, &text)
    }

    /// Writes `text` as it is to `path` (which must not exist), readable by its owner
    /// only: another file a sandbox or job is shown (berth's git configuration).
    pub fn write_text(path: &Path, text: &str) -> std::io::Result<EnvFile> {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        let file_guard = EnvFile { path: path.to_owned() };
        file.write_all(text.as_bytes())?;
        Ok(file_guard)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EnvFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_quotes_every_value_and_only_its_owner_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.env");
        let env = vec![
            ("TOKEN".to_owned(), "it's $(reboot) `x`\nline two".to_owned()),
            ("bad name".to_owned(), "skipped".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ];
        let file = EnvFile::write(&path, &env).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let output = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("set -a; . {}; set +a; printf '%s|%s' \"$TOKEN\" \"$EMPTY\"", path.display()))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "it's $(reboot) `x`\nline two|");
        assert!(!std::fs::read_to_string(&path).unwrap().contains("skipped"));
        drop(file);
        assert!(!path.exists(), "removed with its guard");
    }

    #[test]
    fn plain_names_only() {
        for good in ["A", "_X", "OPENAI_API_KEY", "a1"] {
            assert!(is_plain_name(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "Ä"] {
            assert!(!is_plain_name(bad), "{bad}");
        }
    }
}
