//! A person's SSH key for `ssh://` and `user@host:path` repositories, handed to ssh inside
//! a sandbox through its private environment (never a file of the checkout, never a
//! command line), with the installation's record of the server's host key: recorded at
//! first use (`ssh-keyscan`, in a sandbox job), checked strictly afterwards, so a changed
//! key is refused. Never the server's own keys or SSH agent.

use crate::GitError;
use berth_core::WorkspaceId;
use berth_sandbox::{Job, JobNetwork, SandboxDriver};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// The `GIT_SSH_COMMAND` of a job with a key: writes the key and the known hosts from
/// the private environment to a directory of the sandbox's own `/tmp`, then runs ssh with
/// nothing else — no configuration file, no agent, no other identity, strict host keys.
const SSH_WRAPPER: &str = r#"sh -c 'umask 077; d=$(mktemp -d) || exit 1; printf "%s\n" "$BERTH_SSH_KEY" > "$d/key"; printf "%s\n" "$BERTH_SSH_KNOWN_HOSTS" > "$d/known_hosts"; exec ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null -o UserKnownHostsFile="$d/known_hosts" -i "$d/key" "$@"' berth-ssh"#;

/// Where an SSH repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
}

impl SshTarget {
    /// The name `known_hosts` files use: `host`, or `[host]:port` off port 22.
    pub fn known_hosts_name(&self) -> String {
        if self.port == 22 { self.host.clone() } else { format!("[{}]:{}", self.host, self.port) }
    }
}

/// The host and port of an `ssh://[user@]host[:port]/path` or `[user@]host:path`
/// repository; `None` for anything else or a host that is not a plain name or address.
pub fn ssh_target(repo: &str) -> Option<SshTarget> {
    let (authority, default_port) = if let Some(rest) = repo.strip_prefix("ssh://") {
        (rest.split('/').next()?, true)
    } else if !repo.contains("://") && !repo.starts_with('/') {
        let (authority, _) = repo.split_once(':')?;
        if authority.contains('/') {
            return None;
        }
        (authority, false)
    } else {
        return None;
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if default_port => (host, port.parse::<u16>().ok().filter(|&port| port != 0)?),
        Some(_) => return None,
        None => (host_port, 22),
    };
    let plain = !host.is_empty()
        && !host.starts_with('-')
        && host.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'-');
    plain.then(|| SshTarget { host: host.to_ascii_lowercase(), port })
}

#[derive(Clone, PartialEq, Eq)]
pub struct SshCredential {
    /// The private key, OpenSSH format.
    pub private_key: String,
    /// `known_hosts` lines for the repository's server (empty: nothing is trusted).
    pub known_hosts: String,
}

impl fmt::Debug for SshCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshCredential").field("known_hosts", &self.known_hosts).finish_non_exhaustive()
    }
}

impl SshCredential {
    /// The command git runs for ssh: nothing secret in it.
    pub fn ssh_command() -> &'static str {
        SSH_WRAPPER
    }

    pub fn private_environment(&self) -> Vec<(String, String)> {
        vec![
            ("BERTH_SSH_KEY".to_owned(), self.private_key.trim_end().to_owned()),
            ("BERTH_SSH_KNOWN_HOSTS".to_owned(), self.known_hosts.clone()),
        ]
    }

    /// Everything an agent's sandbox needs so that its git uses the key.
    pub fn agent_environment(&self) -> Vec<(String, String)> {
        let mut env = vec![("GIT_SSH_COMMAND".to_owned(), SSH_WRAPPER.to_owned())];
        env.extend(self.private_environment());
        env
    }
}

/// Key types accepted from a server.
const HOST_KEY_TYPES: [&str; 6] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "ssh-rsa",
];

/// The host keys `target` offers, as `known_hosts` lines, asked by `ssh-keyscan` in a job
/// of the workspace (with the host's network). Its output is the network's: only lines of
/// a known key type with a base64 key are kept, re-written under `target`'s name.
pub async fn keyscan(
    driver: &dyn SandboxDriver,
    workspace_id: &WorkspaceId,
    dir: &Path,
    target: &SshTarget,
    timeout: Duration,
) -> Result<String, GitError> {
    let job = Job {
        stdin: Vec::new(),
        workspace_id: workspace_id.clone(),
        workspace_dir: dir.to_owned(),
        argv: ["ssh-keyscan", "-T", "10", "-p", &target.port.to_string(), "--", &target.host]
            .map(str::to_owned)
            .to_vec(),
        env: vec![
            ("PATH".to_owned(), crate::PATH.to_owned()),
            ("HOME".to_owned(), "/nonexistent".to_owned()),
        ],
        secret_env: Vec::new(),
        network: JobNetwork::Host,
        repository_config: None,
        read_only: Vec::new(),
        timeout,
        max_stdout: 64 * 1024,
        stderr_to: None,
        cancel: tokio_util::sync::CancellationToken::new(),
    };
    let output = driver.run_job(job).await.map_err(|source| GitError::Sandbox { source })?;
    let name = target.known_hosts_name();
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, kind, key) = (fields.next()?, fields.next()?, fields.next()?);
            let base64 =
                key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
            (HOST_KEY_TYPES.contains(&kind) && base64 && key.len() <= 4096)
                .then(|| format!("{name} {kind} {key}"))
        })
        .collect();
    if lines.is_empty() {
        return Err(GitError::Failed {
            action: "ssh-keyscan",
            exit: output.exit,
            stderr: format!("error: {} offered no host key berth can record", target.host),
        });
    }
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_repositories_name_their_server() {
        let target = |host: &str, port| Some(SshTarget { host: host.into(), port });
        assert_eq!(ssh_target("ssh://git@github.com/me/x.git"), target("github.com", 22));
        assert_eq!(ssh_target("ssh://root@127.0.0.1:2222/srv/x.git"), target("127.0.0.1", 2222));
        assert_eq!(ssh_target("git@GitHub.com:me/x.git"), target("github.com", 22));
        for other in
            ["https://github.com/x", "/srv/repo", "ssh://-oProxyCommand=x/y", "ssh://host:0/x", "dir/sub:x"]
        {
            assert_eq!(ssh_target(other), None, "{other}");
        }
        assert_eq!(target("h", 2222).unwrap().known_hosts_name(), "[h]:2222");
        assert_eq!(target("h", 22).unwrap().known_hosts_name(), "h");
    }

    #[test]
    fn the_key_stays_out_of_what_is_printed_and_of_the_command() {
        let credential = SshCredential {
            private_key: "-----BEGIN KEY-----\nsecret\n".into(),
            known_hosts: "h ssh-ed25519 AAAA".into(),
        };
        assert!(!format!("{credential:?}").contains("secret"));
        assert!(!SshCredential::ssh_command().contains("secret"));
        assert!(credential.agent_environment().iter().any(|(name, _)| name == "GIT_SSH_COMMAND"));
    }
}
