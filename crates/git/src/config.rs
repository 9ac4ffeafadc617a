//! The configuration berth's git reads on a checkout: berth's own, never the checkout's.
//! git keeps adding keys that name programs and places (`core.askPass`, `core.gitProxy`,
//! `core.sshCommand`, `credential.*`, `url.*.insteadOf`, `http.*`, `include*`, `gpg.*`,
//! `diff.*`, `filter.*`, …), so no list of forbidden keys can be complete: every job on a
//! checkout sees this file over `.git/config` instead (the sandbox driver shows it there
//! read-only; see `berth_sandbox::Job::repository_config`). It holds only what git needs
//! to read the repository: its format, recorded when berth cloned it.

use std::fmt;

/// How a repository's objects are named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ObjectFormat {
    #[default]
    Sha1,
    Sha256,
}

/// How a repository stores its references.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RefFormat {
    #[default]
    Files,
    Reftable,
}

/// What git must know to read a repository, as berth's clone found it. The default
/// (SHA-1 objects, files for references) is what every repository made before berth
/// recorded formats has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepositoryFormat {
    pub objects: ObjectFormat,
    pub refs: RefFormat,
}

impl RepositoryFormat {
    /// Reads what git prints for `rev-parse --show-object-format` and
    /// `--show-ref-format` (or a record of [`RepositoryFormat`]'s `Display`): anything
    /// else is `None`.
    pub fn parse(objects: &str, refs: &str) -> Option<RepositoryFormat> {
        let objects = match objects.trim() {
            "sha1" => ObjectFormat::Sha1,
            "sha256" => ObjectFormat::Sha256,
            _ => return None,
        };
        let refs = match refs.trim() {
            "files" => RefFormat::Files,
            "reftable" => RefFormat::Reftable,
            _ => return None,
        };
        Some(RepositoryFormat { objects, refs })
    }

    /// A record written by `Display`, such as `sha1 files`.
    pub fn parse_record(record: &str) -> Option<RepositoryFormat> {
        let mut words = record.split_whitespace();
        let format = RepositoryFormat::parse(words.next()?, words.next()?)?;
        words.next().is_none().then_some(format)
    }

    /// The whole configuration berth's git runs with on this repository.
    pub fn config(&self) -> String {
        let mut text = String::from(
            "[core]\n\trepositoryformatversion = 1\n\tbare = false\n\tfilemode = true\n\tlogallrefupdates = true\n",
        );
        let objects = match self.objects {
            ObjectFormat::Sha1 => "sha1",
            ObjectFormat::Sha256 => "sha256",
        };
        text.push_str(&format!("[extensions]\n\tobjectformat = {objects}\n"));
        if self.refs == RefFormat::Reftable {
            // Named only when needed: a git older than 2.45 refuses the extension.
            text.push_str("\trefstorage = reftable\n");
        }
        text
    }
}

impl fmt::Display for RepositoryFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let objects = match self.objects {
            ObjectFormat::Sha1 => "sha1",
            ObjectFormat::Sha256 => "sha256",
        };
        let refs = match self.refs {
            RefFormat::Files => "files",
            RefFormat::Reftable => "reftable",
        };
        write!(f, "{objects} {refs}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_is_recorded_and_read_back() {
        let sha256 = RepositoryFormat { objects: ObjectFormat::Sha256, refs: RefFormat::Reftable };
        for format in [RepositoryFormat::default(), sha256] {
            assert_eq!(RepositoryFormat::parse_record(&format.to_string()), Some(format));
        }
        for record in ["", "sha1", "md5 files", "sha1 files extra", "sha1 [include]"] {
            assert_eq!(RepositoryFormat::parse_record(record), None, "{record}");
        }
    }

    #[test]
    fn the_configuration_names_no_program_or_place() {
        let config = RepositoryFormat { objects: ObjectFormat::Sha256, refs: RefFormat::Reftable }.config();
        assert!(config.contains("objectformat = sha256"), "{config}");
        assert!(config.contains("refstorage = reftable"), "{config}");
        assert!(!RepositoryFormat::default().config().contains("refstorage"));
        for section in ["include", "url", "remote", "credential", "http", "gpg", "filter", "diff", "alias"] {
            assert!(!config.contains(&format!("[{section}")), "{config}");
        }
    }
}
