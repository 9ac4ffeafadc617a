//! Rules for input a stranger controls: repository strings, branch names, names of
//! workspaces and users, agent commands. Each refusal names the field and says why, so
//! the API can answer with a stable code and a message a person can act on.

use std::path::{Component, Path};

pub const MAX_NAME_LEN: usize = 64;
pub const MAX_REPO_LEN: usize = 2048;
pub const MAX_BRANCH_LEN: usize = 255;
pub const MAX_AGENT_COMMAND_LEN: usize = 4096;

/// URL schemes git may be asked to clone from. Anything else — remote helpers such as
/// `ext::` or `fd::`, unknown schemes — is refused before git sees it.
const ALLOWED_SCHEMES: [&str; 5] = ["https", "http", "ssh", "git", "file"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Repo,
    /// A repository URL with a password in it: credentials have a store of their own.
    RepoCredentials,
    Branch,
    Name,
    Agent,
    SecretName,
    SecretValue,
    CredentialHost,
    /// A credential's username or secret.
    Credential,
    CommitMessage,
    /// A path inside a checkout, for the file browser.
    FilePath,
    /// A person's display name (what their commits carry).
    DisplayName,
    Email,
    /// What is typed into a terminal.
    TerminalInput,
}

impl Field {
    /// The stable error code of a refusal of this field.
    pub fn error_code(self) -> &'static str {
        match self {
            Field::Repo => "invalid_repo",
            Field::RepoCredentials => "credentials_in_url",
            Field::Branch => "invalid_branch",
            Field::Name => "invalid_name",
            Field::Agent => "invalid_agent",
            Field::SecretName => "invalid_secret_name",
            Field::SecretValue => "invalid_secret",
            Field::CredentialHost => "invalid_host",
            Field::Credential => "invalid_credential",
            Field::CommitMessage => "invalid_message",
            Field::FilePath => "invalid_path",
            Field::DisplayName => "invalid_display_name",
            Field::Email => "invalid_email",
            Field::TerminalInput => "invalid_request",
        }
    }
}

pub const MAX_SECRET_NAME_LEN: usize = 64;
pub const MAX_SECRET_LEN: usize = 16 * 1024;
pub const MAX_CREDENTIAL_LEN: usize = 4096;

/// A secret's name, which becomes an environment variable: `[A-Z_][A-Z0-9_]{0,63}`,
/// and not `BERTH_…` (berth's own).
pub fn secret_name(value: &str) -> Result<(), InputError> {
    let field = Field::SecretName;
    let mut bytes = value.bytes();
    let plain = bytes.next().is_some_and(|first| first.is_ascii_uppercase() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_');
    if !plain || value.len() > MAX_SECRET_NAME_LEN {
        return refuse(
            field,
            "a secret's name is upper-case letters, digits and '_', at most 64, not starting with a digit",
        );
    }
    if value.starts_with("BERTH_") {
        return refuse(field, "names starting with BERTH_ are berth's own");
    }
    Ok(())
}

/// A secret's value: at most 16 KiB, and no NUL (no environment can hold one).
pub fn secret_value(value: &str) -> Result<(), InputError> {
    if value.len() > MAX_SECRET_LEN {
        return refuse(Field::SecretValue, format!("a secret is at most {MAX_SECRET_LEN} bytes"));
    }
    if value.contains('\0') {
        return refuse(Field::SecretValue, "a secret cannot contain a NUL character");
    }
    Ok(())
}

/// The host a git credential is for: `github.com`, `127.0.0.1:8080` — a host name or
/// IPv4 address, lower-case, and an optional port. Returned as written.
pub fn credential_host(value: &str) -> Result<(), InputError> {
    let field = Field::CredentialHost;
    let expected = "expected a host name with an optional port, such as github.com or 127.0.0.1:8080";
    let (host, port) = match value.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (value, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return refuse(field, expected);
    }
    if let Some(port) = port
        && (port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().map_or(true, |p| p == 0))
    {
        return refuse(field, expected);
    }
    Ok(())
}

pub const MAX_COMMIT_MESSAGE_LEN: usize = 10 * 1024;

/// A commit message: some text, at most 10 KiB, no NUL.
pub fn commit_message(value: &str) -> Result<(), InputError> {
    if value.trim().is_empty() {
        return refuse(Field::CommitMessage, "the commit message is empty");
    }
    if value.len() > MAX_COMMIT_MESSAGE_LEN || value.contains('\0') {
        return refuse(
            Field::CommitMessage,
            format!("a commit message is at most {MAX_COMMIT_MESSAGE_LEN} bytes, without NUL"),
        );
    }
    Ok(())
}

pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
pub const MAX_EMAIL_LEN: usize = 254;

/// A person's display name: at most 100 characters, none of them a control character or
/// `<`/`>` (git's author line would drop them, or be cut by them). Empty clears it.
pub fn display_name(value: &str) -> Result<(), InputError> {
    if value.chars().count() > MAX_DISPLAY_NAME_CHARS
        || value.chars().any(|c| c.is_control() || c == '<' || c == '>')
        || value.trim() != value
    {
        return refuse(
            Field::DisplayName,
            format!(
                "a display name is at most {MAX_DISPLAY_NAME_CHARS} characters, without '<', '>', control characters or surrounding spaces"
            ),
        );
    }
    Ok(())
}

/// An email address as commits carry it: `local@domain`, one `@`, no spaces, control
/// characters, `<` or `>`, at most 254 bytes. Empty clears it.
pub fn email(value: &str) -> Result<(), InputError> {
    if value.is_empty() {
        return Ok(());
    }
    let well_formed = value.len() <= MAX_EMAIL_LEN
        && !value.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | ',' | '"'))
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !domain.starts_with('.')
        });
    if !well_formed {
        return refuse(Field::Email, "an email address is local@domain, without spaces, at most 254 bytes");
    }
    Ok(())
}

pub const MAX_FILE_PATH_LEN: usize = 4096;

/// A path inside a checkout, as the file browser names it: empty (the checkout itself)
/// or `/`-separated names relative to it — no empty name, `.`, `..` or NUL (a name may
/// hold any other byte), at most 4 KiB — and never into `.git` (berth's view of the checkout leaves
/// it out). Returned without a leading or trailing `/`.
pub fn checkout_path(value: &str) -> Result<&str, InputError> {
    let field = Field::FilePath;
    let path = value.trim_matches('/');
    if path.len() > MAX_FILE_PATH_LEN || path.contains('\0') {
        return refuse(field, format!("a path is at most {MAX_FILE_PATH_LEN} bytes, without NUL"));
    }
    if path.is_empty() {
        return Ok(path);
    }
    let mut names = path.split('/');
    if names.any(|name| name.is_empty() || name == "." || name == "..") {
        return refuse(field, "a path names files inside the checkout: no empty name, '.' or '..'");
    }
    if path.split('/').next() == Some(".git") {
        return refuse(field, "the file browser does not show .git");
    }
    Ok(path)
}

/// A credential's username or secret: not empty, at most 4 KiB, no control characters
/// (git's credential protocol is line-based).
pub fn credential_part(what: &str, value: &str) -> Result<(), InputError> {
    if value.is_empty() || value.len() > MAX_CREDENTIAL_LEN {
        return refuse(Field::Credential, format!("the {what} must have 1 to {MAX_CREDENTIAL_LEN} bytes"));
    }
    if value.chars().any(char::is_control) {
        return refuse(Field::Credential, format!("the {what} cannot contain control characters"));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InputError {
    pub field: Field,
    pub reason: String,
}

fn refuse<T>(field: Field, reason: impl Into<String>) -> Result<T, InputError> {
    Err(InputError { field, reason: reason.into() })
}

/// Where a repository string points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoSource {
    /// A path on the server's file system (given as an absolute path or a `file://` URL).
    LocalPath(String),
    /// A network URL (`https://`, `ssh://`, `git://`, or scp-like `user@host:path`).
    Remote,
}

/// Checks a repository string and says where it points. Refuses anything that git could
/// read as an option (`-...`), remote-helper transports (`ext::`, `file::`), unknown
/// schemes, relative paths and `..` segments.
pub fn repo(value: &str) -> Result<RepoSource, InputError> {
    let field = Field::Repo;
    if value.is_empty() {
        return refuse(field, "the repository is empty");
    }
    if value.len() > MAX_REPO_LEN {
        return refuse(field, format!("the repository is longer than {MAX_REPO_LEN} bytes"));
    }
    if value.chars().any(char::is_control) {
        return refuse(field, "the repository contains control characters");
    }
    if value.trim() != value {
        return refuse(field, "the repository starts or ends with white space");
    }
    if value.starts_with('-') {
        return refuse(field, "the repository starts with '-', which git would read as an option");
    }
    if has_remote_helper_prefix(value) {
        return refuse(
            field,
            "remote-helper transports such as 'ext::' and 'file::' are not allowed; use https://, ssh://, git:// or an absolute path",
        );
    }
    if value.starts_with('/') {
        return local_path(value).map(|path| RepoSource::LocalPath(path.to_owned()));
    }
    if let Some((scheme, rest)) = value.split_once("://") {
        let scheme_lower = scheme.to_ascii_lowercase();
        if !ALLOWED_SCHEMES.contains(&scheme_lower.as_str()) {
            return refuse(
                field,
                format!(
                    "the scheme '{scheme}' is not allowed; use https://, ssh://, git:// or an absolute path"
                ),
            );
        }
        if scheme_lower == "file" {
            // `file:///srv/repo` has an empty host; `file://host/...` is not a local path.
            let Some(path) = rest.strip_prefix('/').map(|_| rest) else {
                return refuse(field, "a file:// URL must name an absolute path (file:///path)");
            };
            // The path git would open: `%2f`, `%2e` and every other escape decoded, then
            // checked like any other path.
            let Some(decoded) = percent_decode(path) else {
                return refuse(field, "the file:// URL has a bad '%' escape or is not UTF-8 once decoded");
            };
            if decoded.chars().any(char::is_control) {
                return refuse(field, "the repository contains control characters");
            }
            return local_path(&decoded).map(|path| RepoSource::LocalPath(path.to_owned()));
        }
        if has_password(rest) {
            return refuse(
                Field::RepoCredentials,
                "the repository URL holds a password; give the URL without it (credentials are kept apart)",
            );
        }
        return remote_url(rest).map(|()| RepoSource::Remote);
    }
    if let Some((authority, path)) = value.split_once(':')
        && !authority.contains('/')
        && !authority.is_empty()
    {
        return scp_like(authority, path).map(|()| RepoSource::Remote);
    }
    refuse(
        field,
        "the repository must be an https://, ssh:// or git:// URL, user@host:path, or an absolute path",
    )
}

/// Decodes `%XX` escapes; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// Whether the authority of a URL (what follows `scheme://`) carries `user:password@`,
/// however it is spelled: the user information is percent-decoded first, so `u%3Apw@`
/// is a password too (git decodes it before it asks for one). User information that does
/// not decode is refused the same way: it can only be hiding something.
fn has_password(after_scheme: &str) -> bool {
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| percent_decode(userinfo).is_none_or(|decoded| decoded.contains(':')))
}

/// `<transport>::<address>` makes git run `git-remote-<transport>`; `ext::` runs any command.
fn has_remote_helper_prefix(value: &str) -> bool {
    value.split_once("::").is_some_and(|(transport, _)| {
        !transport.is_empty()
            && transport.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_'))
    })
}

fn has_dot_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(|segment| segment == "..")
}

fn local_path(path: &str) -> Result<&str, InputError> {
    let field = Field::Repo;
    if has_dot_dot_segment(path) {
        return refuse(field, "the repository path contains '..'");
    }
    let absolute = Path::new(path).components().next().is_some_and(|first| first == Component::RootDir);
    if !absolute {
        return refuse(field, "a local repository must be an absolute path");
    }
    Ok(path)
}

fn host_is_safe(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with('-')
        && host.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '.' | '-' | '_' | ':' | '[' | ']' | '@' | '%' | '~' | '+')
        })
}

fn remote_url(after_scheme: &str) -> Result<(), InputError> {
    let field = Field::Repo;
    let (authority, path) = after_scheme.split_once('/').unwrap_or((after_scheme, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if !host_is_safe(authority) || !host_is_safe(host) {
        return refuse(field, "the repository URL has no valid host");
    }
    if path.chars().any(char::is_whitespace) {
        return refuse(field, "the repository URL contains white space");
    }
    if has_dot_dot_segment(path) {
        return refuse(field, "the repository URL contains '..'");
    }
    Ok(())
}

fn scp_like(authority: &str, path: &str) -> Result<(), InputError> {
    let field = Field::Repo;
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if !host_is_safe(authority) || !host_is_safe(host) {
        return refuse(field, "the repository has no valid host before ':'");
    }
    if path.is_empty() || path.starts_with('-') || path.chars().any(char::is_whitespace) {
        return refuse(field, "the repository path after ':' is empty or not valid");
    }
    if has_dot_dot_segment(path) {
        return refuse(field, "the repository path contains '..'");
    }
    Ok(())
}

/// A branch name as `git check-ref-format --branch` would accept it, minus the rare
/// forms nobody needs, and never something git could read as an option.
pub fn branch(value: &str) -> Result<(), InputError> {
    let field = Field::Branch;
    if value.is_empty() {
        return refuse(field, "the branch is empty");
    }
    if value.len() > MAX_BRANCH_LEN {
        return refuse(field, format!("the branch is longer than {MAX_BRANCH_LEN} bytes"));
    }
    if value.starts_with('-') {
        return refuse(field, "the branch starts with '-', which git would read as an option");
    }
    let bad_char = value.chars().any(|c| {
        c.is_control() || c.is_whitespace() || matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\')
    });
    if bad_char
        || value.contains("..")
        || value.contains("@{")
        || value.contains("//")
        || value.starts_with('/')
        || value.ends_with('/')
        || value.ends_with('.')
        || value.ends_with(".lock")
        || value.split('/').any(|part| part.starts_with('.'))
        || value == "@"
    {
        return refuse(field, format!("'{value}' is not a valid branch name"));
    }
    Ok(())
}

/// Names of workspaces and users: 1 to 64 letters, digits, '.', '_' or '-', starting with
/// a letter or digit, so they read well in a URL, a terminal and a file listing.
pub fn name(value: &str) -> Result<(), InputError> {
    let field = Field::Name;
    if value.is_empty() {
        return refuse(field, "the name is empty");
    }
    if value.len() > MAX_NAME_LEN {
        return refuse(field, format!("the name is longer than {MAX_NAME_LEN} characters"));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return refuse(field, "the name must start with a letter or a digit");
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return refuse(field, "the name may hold only letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// A default workspace name from the repository's last path segment (`.../demo.git` →
/// `demo`), made to fit the name rules; `workspace` when nothing usable is left.
pub fn name_from_repo(repo: &str) -> String {
    let last = repo.trim_end_matches(['/', '\\']).rsplit(['/', ':', '\\']).next().unwrap_or_default();
    let last = last.strip_suffix(".git").unwrap_or(last);
    let cleaned: String = last
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(MAX_NAME_LEN - 4)
        .collect();
    if cleaned.is_empty() { "workspace".to_owned() } else { cleaned }
}

/// An agent command line: not empty, bounded, no control characters.
pub fn agent_command(value: &str) -> Result<(), InputError> {
    let field = Field::Agent;
    if value.trim().is_empty() {
        return refuse(field, "the agent command is empty");
    }
    if value.len() > MAX_AGENT_COMMAND_LEN {
        return refuse(field, format!("the agent command is longer than {MAX_AGENT_COMMAND_LEN} bytes"));
    }
    if value.chars().any(char::is_control) {
        return refuse(field, "the agent command contains control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkout_paths() {
        for (value, expected) in [
            ("", ""),
            ("/", ""),
            ("src/", "src"),
            ("src/main.rs", "src/main.rs"),
            ("a b/.gitignore", "a b/.gitignore"),
            ("tab\tand\nnewline", "tab\tand\nnewline"),
        ] {
            assert_eq!(checkout_path(value).map_err(|error| error.reason), Ok(expected), "{value:?}");
        }
        for value in ["..", "a/../../etc", "./a", "a//b", ".git", ".git/config", "a\0b", &"a".repeat(5000)] {
            assert_eq!(checkout_path(value).map_err(|error| error.field), Err(Field::FilePath), "{value:?}");
        }
    }

    #[test]
    fn accepted_repositories() {
        for (value, expected) in [
            ("https://github.com/o/r.git", RepoSource::Remote),
            ("http://127.0.0.1:8080/r", RepoSource::Remote),
            ("ssh://git@example.com:2222/o/r.git", RepoSource::Remote),
            ("git://example.com/r", RepoSource::Remote),
            ("git@github.com:o/r.git", RepoSource::Remote),
            ("/srv/repos/demo", RepoSource::LocalPath("/srv/repos/demo".into())),
            ("/srv/my repos/demo", RepoSource::LocalPath("/srv/my repos/demo".into())),
            ("file:///srv/repos/demo", RepoSource::LocalPath("/srv/repos/demo".into())),
            ("file:///srv/%72epos%2fdemo", RepoSource::LocalPath("/srv/repos/demo".into())),
            ("https://oauth2@example.com/o/r.git", RepoSource::Remote),
        ] {
            assert_eq!(repo(value), Ok(expected), "{value}");
        }
    }

    #[test]
    fn refused_repositories() {
        for value in [
            "",
            " https://x/y",
            "-uhttps://x",
            "--upload-pack=touch /tmp/pwned",
            "ext::sh -c touch% /tmp/pwned",
            "file::/srv/repo",
            "fd::17",
            "ftp://example.com/r",
            "javascript://x",
            "ssh://-oProxyCommand=touch /tmp/pwned/r",
            "-oProxyCommand=x:r",
            "host:-r",
            "relative/path",
            "./repo",
            "../repo",
            "/srv/../etc",
            "/srv/repos/..",
            "https://example.com/../x",
            "file://host/srv/r",
            "https:///path",
            "https://exa mple.com/r",
            "/srv/repo\n",
            "/srv/re\0po",
            "file:///srv/%2e%2e/etc",
            "file:///srv%2F..%2Fetc",
            "file:///srv/%zz",
            "file:///srv/%0a",
            "file:///srv/%ff",
        ] {
            let refusal = repo(value).expect_err(value);
            assert_eq!(refusal.field, Field::Repo);
            assert!(!refusal.reason.is_empty());
        }
        assert!(repo(&format!("/{}", "a".repeat(MAX_REPO_LEN))).is_err());
    }

    #[test]
    fn a_password_in_a_url_is_refused_with_a_code_of_its_own_and_not_repeated() {
        for value in [
            "https://me:s3cret@example.com/o/r.git",
            "http://x:y@127.0.0.1:8080/r",
            "ssh://git:pw@host/r",
            "https://u%3As3cret@example.com/x",
            "https://u%3as3cret@example.com/x",
            "https://u%3%41s3cret@example.com/x",
        ] {
            let refusal = repo(value).expect_err(value);
            assert_eq!(refusal.field.error_code(), "credentials_in_url");
            assert!(!refusal.reason.contains("s3cret") && !refusal.reason.contains(value));
        }
    }

    #[test]
    fn display_names_and_emails() {
        for good in ["", "Ada Lovelace", "Zoë O'Brien", "李雷"] {
            assert_eq!(display_name(good), Ok(()), "{good}");
        }
        for bad in ["Eve <eve@x>", "a\nb", " padded", &"x".repeat(101)] {
            assert!(display_name(bad).is_err(), "{bad:?}");
        }
        for good in ["", "ada@example.com", "a+b@sub.example.org"] {
            assert_eq!(email(good), Ok(()), "{good}");
        }
        for bad in ["ada", "@x", "a@", "a@@b", "a b@c", "a@b>", "a@.b", "a@b\n"] {
            assert_eq!(email(bad).map_err(|error| error.field.error_code()), Err("invalid_email"), "{bad:?}");
        }
    }

    #[test]
    fn branches() {
        for good in ["main", "feature/x", "release-1.2", "v1.0_rc"] {
            assert_eq!(branch(good), Ok(()), "{good}");
        }
        for bad in [
            "", "-b", "--orphan", "a..b", "a b", "a~1", "a^", "a:b", "/a", "a/", "a.lock", ".hidden", "a/.b",
            "@", "a@{1}", "a\\b", "x\n",
        ] {
            assert!(branch(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn names() {
        for good in ["demo", "my-app.v2", "A_1"] {
            assert_eq!(name(good), Ok(()), "{good}");
        }
        for bad in ["", "-x", ".x", "a/b", "..", "a b", "é", "x\0"] {
            assert!(name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(name(&"n".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(name(&"n".repeat(10 * 1024 * 1024)).is_err());
    }

    #[test]
    fn names_derived_from_repositories_follow_the_name_rules() {
        for (repo, expected) in [
            ("https://github.com/o/demo.git", "demo"),
            ("git@host:o/my app.git", "my-app"),
            ("/srv/repos/demo/", "demo"),
            ("/", "workspace"),
            ("/srv/---", "workspace"),
        ] {
            let derived = name_from_repo(repo);
            assert_eq!(derived, expected, "{repo}");
            assert_eq!(name(&derived), Ok(()));
        }
    }

    #[test]
    fn agent_commands() {
        assert_eq!(agent_command("berth agent"), Ok(()));
        assert!(agent_command("  ").is_err());
        assert!(agent_command("a\nb").is_err());
    }
}

#[cfg(test)]
mod secrets_and_credentials {
    use super::*;

    #[test]
    fn secret_names_are_environment_variables_not_berths() {
        for good in ["ANTHROPIC_API_KEY", "_X", "A1", &"A".repeat(64)] {
            assert!(secret_name(good).is_ok(), "{good}");
        }
        for bad in ["", "lower", "1A", "A-B", "A B", "BERTH_ADMIN_TOKEN", "É", &"A".repeat(65)] {
            assert_eq!(secret_name(bad).unwrap_err().field.error_code(), "invalid_secret_name", "{bad}");
        }
        assert!(secret_value("multi\nline ok").is_ok());
        assert!(secret_value("nul\0").is_err());
        assert!(secret_value(&"x".repeat(MAX_SECRET_LEN + 1)).is_err());
    }

    #[test]
    fn credential_hosts_and_parts() {
        for good in ["github.com", "127.0.0.1:8080", "git.example-host.org", "localhost:1"] {
            assert!(credential_host(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "GitHub.com",
            "https://github.com",
            "host:0",
            "host:99999",
            "host:",
            "a..b",
            "-a.com",
            "h/x",
            "h x",
            "@h",
        ] {
            assert_eq!(credential_host(bad).unwrap_err().field.error_code(), "invalid_host", "{bad}");
        }
        assert!(credential_part("secret", "ghp_abc").is_ok());
        for bad in ["", "a\nb", "a\rb", "\u{7f}"] {
            assert_eq!(
                credential_part("secret", bad).unwrap_err().field.error_code(),
                "invalid_credential",
                "{bad:?}"
            );
        }
    }
}
