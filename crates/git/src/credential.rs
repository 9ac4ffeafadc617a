//! A person's git credential for one host, handed to git inside a sandbox through a
//! credential helper that reads it from the sandbox's private environment: never written
//! into the checkout, never on a command line, and offered to that host only — a
//! checkout whose remote the agent pointed elsewhere gets nothing.

use std::fmt;

/// The private variables the helper reads.
const USERNAME_VARIABLE: &str = "BERTH_GIT_USERNAME";
const SECRET_VARIABLE: &str = "BERTH_GIT_PASSWORD";

/// Answers git's `get` with the username and secret from the environment, and nothing
/// else (`store` and `erase` are no business of berth's).
const HELPER: &str = r#"!f() { test "$1" = get || return 0; printf 'username=%s\npassword=%s\n' "$BERTH_GIT_USERNAME" "$BERTH_GIT_PASSWORD"; }; f"#;

#[derive(Clone, PartialEq, Eq)]
pub struct GitCredential {
    /// `https://host[:port]` (or `http://`): where the credential is offered.
    pub origin: String,
    pub username: String,
    pub secret: String,
}

impl fmt::Debug for GitCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitCredential")
            .field("origin", &self.origin)
            .field("username", &self.username)
            .field("secret", &"<hidden>")
            .finish()
    }
}

impl GitCredential {
    /// The configuration (`credential.<origin>.helper`, as a `GIT_CONFIG_KEY_n` /
    /// `GIT_CONFIG_VALUE_n` pair at `index`) that names the helper: nothing secret.
    pub fn helper_config(&self, index: usize) -> [(String, String); 2] {
        [
            (format!("GIT_CONFIG_KEY_{index}"), format!("credential.{}.helper", self.origin)),
            (format!("GIT_CONFIG_VALUE_{index}"), HELPER.to_owned()),
        ]
    }

    /// The private part: the variables the helper reads.
    pub fn private_environment(&self) -> Vec<(String, String)> {
        vec![
            (USERNAME_VARIABLE.to_owned(), self.username.clone()),
            (SECRET_VARIABLE.to_owned(), self.secret.clone()),
        ]
    }

    /// Everything an agent's sandbox needs so that any git in it (the agent's) uses the
    /// credential for its host: the helper as the whole of git's command-line
    /// configuration, and the variables it reads. All of it is handed over privately.
    pub fn agent_environment(&self) -> Vec<(String, String)> {
        let mut env = vec![("GIT_CONFIG_COUNT".to_owned(), "1".to_owned())];
        env.extend(self.helper_config(0));
        env.extend(self.private_environment());
        env
    }

    /// `text` with the secret replaced, for a message that may echo what git printed.
    pub fn redact(&self, text: &str) -> String {
        if self.secret.is_empty() { text.to_owned() } else { text.replace(&self.secret, "<hidden>") }
    }
}

/// Where an `http://` or `https://` repository lives: its scheme and its host (with the
/// port), lowercased, without user information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOrigin {
    scheme: String,
    /// `github.com`, `127.0.0.1:8080`: what a credential is stored for.
    pub host: String,
}

impl HttpOrigin {
    /// `scheme://host[:port]`: what a credential helper is configured for.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }
}

/// The origin of an `http://` or `https://` repository URL; `None` for anything else.
pub fn http_origin(url: &str) -> Option<HttpOrigin> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    (!host.is_empty()).then(|| HttpOrigin { scheme, host: host.to_ascii_lowercase() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_http_repositories() {
        let url = |repo: &str| http_origin(repo).map(|origin| origin.url());
        assert_eq!(url("https://GitHub.com/me/x.git").as_deref(), Some("https://github.com"));
        assert_eq!(url("http://127.0.0.1:8080/x").as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(http_origin("https://me@host/x").map(|origin| origin.host).as_deref(), Some("host"));
        for other in
            ["git@github.com:me/x.git", "ssh://host/x", "/srv/repo", "file:///srv/repo", "https:///x"]
        {
            assert_eq!(http_origin(other), None, "{other}");
        }
    }

    #[test]
    fn the_secret_is_never_printed() {
        let credential = GitCredential {
            origin: "https://host".into(),
            username: "me".into(),
            secret: "s3cret-value".into(),
        };
        assert!(!format!("{credential:?}").contains("s3cret"));
        assert_eq!(credential.redact("fatal: s3cret-value rejected"), "fatal: <hidden> rejected");
        let [(_, key), (_, helper)] = credential.helper_config(8);
        assert_eq!(key, "credential.https://host.helper");
        assert!(!helper.contains("s3cret"));
    }
}
