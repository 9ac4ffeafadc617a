//! The bubblewrap command line of a sandbox: what the agent sees of the machine. It
//! gets its own user, pid, ipc, uts, cgroup and (unless the network is `host`) network
//! namespaces; the system directories read-only; its workspace read-write at
//! [`WORKSPACE`]; a private `/tmp`, `/proc` and `/dev`; and nothing else — not the
//! server's data directory, its database, or any other workspace.

use crate::settings::Network;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where the workspace appears inside the sandbox.
pub const WORKSPACE: &str = "/workspace";

/// System directories shown read-only (those that exist on this host).
const SYSTEM_DIRS: [&str; 4] = ["/usr", "/etc", "/opt", "/srv"];
/// Top-level directories that are symlinks into `/usr` on merged-usr systems.
const TOP_LEVEL: [&str; 6] = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];
/// Files of the host's accounts that are no business of an agent.
const SECRETS: [&str; 3] = ["/etc/shadow", "/etc/gshadow", "/etc/sudoers"];

/// Everything the command line depends on.
#[derive(Debug, Clone)]
pub struct Layout {
    pub workspace_dir: PathBuf,
    pub network: Network,
    /// Host paths to show in the sandbox read-only at the same path (the `berth` binary,
    /// so the built-in agent can run).
    pub extra_read_only: Vec<PathBuf>,
    /// Host paths to hide even when they sit inside a system directory shown (the
    /// server's data directory and configuration file).
    pub hidden: Vec<PathBuf>,
    /// Hold the agent until a byte arrives on descriptor 3 (the network is being set up).
    pub wait_on_fd_3: bool,
    /// `Some`: the whole environment inside (a job); `None`: bubblewrap's own (the
    /// agent's, which the driver sets from the spec), with `HOME` in
    /// the workspace (an agent).
    pub env: Option<Vec<(String, String)>>,
    /// A private environment file ([`crate::secret_env`]) bound read-only inside and
    /// exported before the program runs.
    pub env_file: Option<PathBuf>,
    /// berth's git configuration for the workspace's repository (a job's): shown read-only
    /// over `.git/config` of the workspace by a second bubblewrap *inside* the sandbox, so
    /// the checkout's paths are resolved in the sandbox's own root — the outer one would
    /// follow a link the agent planted there to the host before its root is pivoted.
    pub repository_config: Option<PathBuf>,
}

/// Where a job finds berth's git configuration before it is put over the checkout's.
pub const REPOSITORY_CONFIG: &str = "/run/berth/gitconfig";
/// The user a job with [`Layout::repository_config`] runs as inside: not root, which a
/// nested user namespace refuses to map.
const JOB_UID: &str = "1000";

/// The arguments of `bwrap` that run `program` (with its arguments) in the sandbox.
pub fn arguments(layout: &Layout, program: &[OsString]) -> Vec<OsString> {
    let mut args = namespaces(layout);
    args.extend(host_view(layout));
    args.extend(workspace_and_environment(layout));
    args.extend(program_line(layout, program));
    args
}

/// The namespaces the sandbox gets, its user, and how it ends.
fn namespaces(layout: &Layout) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]);
    if layout.repository_config.is_some() {
        push(&["--uid", JOB_UID, "--gid", JOB_UID]);
    }
    if layout.network != Network::Host {
        push(&["--unshare-net"]);
    }
    // The sandbox dies with the server: nothing of it can outlive a crash.
    push(&["--die-with-parent", "--cap-drop", "ALL", "--hostname", "berth"]);
    if layout.wait_on_fd_3 {
        push(&["--block-fd", "3"]);
    }
    args
}

/// What the sandbox sees of the host: the system directories read-only, the host's
/// secrets covered, a private `/tmp`, `/proc` and `/dev`, the agent programs read-only,
/// and what must stay hidden (the data directory) covered.
fn host_view(layout: &Layout) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    for dir in TOP_LEVEL {
        let path = Path::new(dir);
        match std::fs::read_link(path) {
            Ok(target) => {
                args.extend(["--symlink".into(), target.into_os_string(), OsString::from(dir)]);
            }
            Err(_) if path.is_dir() => args.extend(["--ro-bind".into(), dir.into(), dir.into()]),
            Err(_) => {}
        }
    }
    for dir in SYSTEM_DIRS {
        if Path::new(dir).is_dir() {
            args.extend(["--ro-bind".into(), dir.into(), dir.into()]);
        }
    }
    for file in SECRETS {
        if Path::new(file).exists() {
            args.extend(["--ro-bind".into(), "/dev/null".into(), file.into()]);
        }
    }
    // Private /tmp, /proc and /dev before the binds below, which may lie under /tmp.
    args.extend([
        "--tmpfs".into(),
        "/tmp".into(),
        "--proc".into(),
        "/proc".into(),
        "--dev".into(),
        "/dev".into(),
    ]);
    for path in &layout.extra_read_only {
        if !SYSTEM_DIRS.iter().any(|dir| path.starts_with(dir)) {
            args.extend(["--ro-bind".into(), path.clone().into_os_string(), path.clone().into_os_string()]);
        }
    }
    for path in &layout.hidden {
        // Only what a directory shown would show needs covering; the rest is not there.
        let shown = SYSTEM_DIRS.iter().any(|dir| path.starts_with(dir))
            || layout.extra_read_only.iter().any(|dir| path.starts_with(dir));
        if shown && path.exists() {
            let path = path.clone().into_os_string();
            if Path::new(&path).is_dir() {
                args.extend(["--tmpfs".into(), path]);
            } else {
                args.extend(["--ro-bind".into(), "/dev/null".into(), path]);
            }
        }
    }
    args
}

/// The workspace, read-write at [`WORKSPACE`] and the working directory, and the
/// environment.
fn workspace_and_environment(layout: &Layout) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    args.extend([
        "--bind".into(),
        layout.workspace_dir.clone().into_os_string(),
        WORKSPACE.into(),
        "--chdir".into(),
        WORKSPACE.into(),
    ]);
    match &layout.env {
        Some(env) => {
            args.push("--clearenv".into());
            for (name, value) in env {
                args.extend(["--setenv".into(), name.into(), value.into()]);
            }
        }
        None => args.extend(["--setenv".into(), "HOME".into(), format!("{WORKSPACE}/.berth/home").into()]),
    }
    args
}

/// The program, inside the wrappers that show berth's git configuration and read the
/// private environment.
fn program_line(layout: &Layout, program: &[OsString]) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut program = program.to_vec();
    if let Some(config) = &layout.repository_config {
        args.extend(["--ro-bind".into(), config.clone().into_os_string(), REPOSITORY_CONFIG.into()]);
        program = with_repository_config(&program);
    }
    match &layout.env_file {
        Some(file) => {
            args.extend([
                "--ro-bind".into(),
                file.clone().into_os_string(),
                crate::secret_env::INSIDE.into(),
            ]);
            args.extend(crate::secret_env::wrap(&program));
        }
        None => args.extend(program),
    }
    args
}

/// `program` run by a bubblewrap inside the sandbox that shows [`REPOSITORY_CONFIG`] read
/// only over the workspace's `.git/config` and changes nothing else. A link there
/// resolves inside the sandbox (which holds nothing of the host's to harm), and when
/// `.git` or its `config` is something else the bind fails, and so does the job.
fn with_repository_config(program: &[OsString]) -> Vec<OsString> {
    let mut line: Vec<OsString> = [
        "bwrap",
        "--unshare-user",
        "--die-with-parent",
        // Devices stay devices (a plain bind would mount them `nodev`).
        "--dev-bind",
        "/",
        "/",
        "--ro-bind",
        REPOSITORY_CONFIG,
        &format!("{WORKSPACE}/.git/config"),
        "--",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    line.extend(program.iter().cloned());
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(network: Network) -> Layout {
        Layout {
            workspace_dir: PathBuf::from("/srv/berth/workspaces/w1"),
            network,
            extra_read_only: vec![PathBuf::from("/home/me/berth")],
            hidden: vec![PathBuf::from("/srv/berth"), PathBuf::from("/home/me/.local/share/berth")],
            wait_on_fd_3: false,
            env: None,
            env_file: None,
            repository_config: None,
        }
    }

    fn shell(command: &str) -> Vec<OsString> {
        vec!["/bin/sh".into(), "-c".into(), command.into()]
    }

    fn text(args: &[OsString]) -> String {
        args.iter().map(|arg| arg.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn the_workspace_is_the_only_writable_host_directory() {
        let args = text(&arguments(&layout(Network::Isolated), &shell("berth agent")));
        assert_eq!(args.matches("--bind ").count(), 1, "{args}");
        assert!(args.contains("--bind /srv/berth/workspaces/w1 /workspace --chdir /workspace"));
        assert!(args.contains("--ro-bind /home/me/berth /home/me/berth"), "{args}");
        assert!(args.ends_with("/bin/sh -c berth agent"));
        assert!(args.contains("--die-with-parent"));
        let tmp = args.find("--tmpfs /tmp").unwrap();
        assert!(tmp < args.find("--ro-bind /home/me/berth").unwrap(), "a binary under /tmp stays visible");
        assert!(args.contains("--unshare-pid"));
        assert!(args.contains("--unshare-net"));
    }

    #[test]
    fn host_network_keeps_the_host_stack() {
        let args = text(&arguments(&layout(Network::Host), &shell("agent")));
        assert!(!args.contains("--unshare-net"));
    }

    #[test]
    fn a_data_directory_inside_a_shown_system_directory_is_covered() {
        let args = text(&arguments(&layout(Network::Outbound), &shell("agent")));
        if Path::new("/srv/berth").is_dir() {
            assert!(args.contains("--tmpfs /srv/berth"), "{args}");
        }
        // Outside the directories shown there is nothing to cover: it is not mounted.
        assert!(!args.contains(".local/share/berth"));
    }

    #[test]
    fn a_data_directory_inside_a_directory_shown_to_a_job_is_covered() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let mut layout = layout(Network::Host);
        layout.extra_read_only = vec![dir.path().to_owned()];
        layout.hidden = vec![data.clone()];
        let args = text(&arguments(&layout, &shell("git clone")));
        let shown = args.find(&format!("--ro-bind {0} {0}", dir.path().display())).unwrap();
        let covered = args.find(&format!("--tmpfs {}", data.display())).expect(&args);
        assert!(shown < covered, "the cover goes over the bind: {args}");
    }

    #[test]
    fn berths_git_configuration_is_put_over_the_checkouts_from_inside() {
        let mut layout = layout(Network::Isolated);
        layout.repository_config = Some(PathBuf::from("/var/lib/berth/state/job-1.gitconfig"));
        let args = text(&arguments(&layout, &shell("git status")));
        assert!(
            args.contains("--ro-bind /var/lib/berth/state/job-1.gitconfig /run/berth/gitconfig"),
            "{args}"
        );
        assert!(args.contains("--uid 1000 --gid 1000"), "{args}");
        // The outer bubblewrap never names a path inside the checkout as a destination.
        let (outer, inner) = args.split_once(" bwrap ").expect(&args);
        assert!(!outer.contains("/workspace/.git"), "{outer}");
        assert!(
            inner.starts_with("--unshare-user --die-with-parent --dev-bind / / --ro-bind /run/berth/gitconfig /workspace/.git/config -- /bin/sh -c git status"),
            "{inner}"
        );
    }

    #[test]
    fn a_job_gets_only_the_environment_it_names() {
        let mut layout = layout(Network::Isolated);
        layout.env = Some(vec![("GIT_DIR".into(), "/workspace/.git".into())]);
        let args = text(&arguments(&layout, &[OsString::from("git"), OsString::from("status")]));
        assert!(args.contains("--clearenv --setenv GIT_DIR /workspace/.git git status"), "{args}");
        assert!(!args.contains("HOME"), "{args}");
    }
}
