//! Resource limits for one sandbox through cgroups: v2 where the unified hierarchy is
//! mounted with its controllers, v1 (one hierarchy per controller) otherwise. Each
//! sandbox gets its own group, `berth/<installation>/<session id>`, under the server's own
//! group, so the sandboxes together stay inside whatever limit the server itself runs
//! under. `<installation>` tells apart servers with different data directories on one
//! host, so one never sweeps away another's sandboxes.
//!
//! A group also counts what its limits refused — processes the kernel killed for
//! memory, forks refused for the process count — which is how a session learns that its
//! sandbox hit a wall instead of hanging.

use crate::settings::Resources;
use berth_core::SessionId;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ROOT: &str = "/sys/fs/cgroup";
/// The period CPU quotas are written against (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// Where this host keeps cgroups, found once at start.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    version: Version,
    /// v2: the one `berth` directory. v1: `berth` under each controller we use, by name.
    bases: Vec<(&'static str, PathBuf)>,
}

/// The group of one sandbox.
#[derive(Debug, Clone)]
pub struct Cgroup {
    version: Version,
    dirs: Vec<(&'static str, PathBuf)>,
}

/// What a group's limits refused so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitHits {
    /// Processes the kernel killed because the group ran out of memory.
    pub oom_kills: u64,
    /// Forks refused because the group had as many processes as allowed.
    pub pids_refused: u64,
}

impl Hierarchy {
    /// The hierarchy of this host for the installation keeping its state in `state_dir`,
    /// or why limits cannot be applied here.
    pub fn detect(state_dir: &Path) -> Result<Hierarchy, String> {
        let installation = installation_name(state_dir);
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|error| error.to_string())?;
        let root = Path::new(ROOT);
        if root.join("cgroup.controllers").exists() {
            // v2: the server's own group cannot hold both processes and child groups,
            // so the sandboxes live in `berth` at the top, which the root may hold.
            let base = root.join("berth").join(&installation);
            std::fs::create_dir_all(&base).map_err(|error| format!("{}: {error}", base.display()))?;
            let enable = "+memory +pids +cpu";
            for dir in [root, root.join("berth").as_path(), base.as_path()] {
                let control = dir.join("cgroup.subtree_control");
                std::fs::write(&control, enable)
                    .map_err(|error| format!("{}: {error}", control.display()))?;
            }
            return Ok(Hierarchy { version: Version::V2, bases: vec![("unified", base)] });
        }
        let mut bases = Vec::new();
        for controller in ["memory", "pids", "cpu"] {
            let mount = root.join(controller);
            if !mount.join("cgroup.procs").exists() {
                continue;
            }
            // The line `N:memory:/path` (or `N:cpu,cpuacct:/path`) names our own group.
            let own_path = own
                .lines()
                .filter_map(|line| {
                    let mut fields = line.splitn(3, ':').skip(1);
                    fields.next().zip(fields.next())
                })
                .find(|(controllers, _)| controllers.split(',').any(|name| name == controller))
                .map_or("/", |(_, path)| path);
            let base = mount.join(own_path.trim_start_matches('/')).join("berth").join(&installation);
            std::fs::create_dir_all(&base).map_err(|error| format!("{}: {error}", base.display()))?;
            bases.push((controller, base));
        }
        if bases.is_empty() {
            return Err("no cgroup controllers are mounted under /sys/fs/cgroup".into());
        }
        Ok(Hierarchy { version: Version::V1, bases })
    }

    /// Removes this installation's directories if no group is left in them (a server
    /// stopping; the next one makes them again).
    pub fn remove_if_empty(&self) {
        for (_, base) in &self.bases {
            let _ = std::fs::remove_dir(base);
        }
    }

    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.bases.iter().map(|(name, _)| *name).collect();
        match self.version {
            Version::V2 => "cgroup v2".to_owned(),
            Version::V1 => format!("cgroup v1 ({})", names.join(", ")),
        }
    }

    fn group(&self, name: &str) -> Cgroup {
        let dirs = self.bases.iter().map(|(controller, base)| (*controller, base.join(name))).collect();
        Cgroup { version: self.version, dirs }
    }

    /// The group of `session_id`, whether or not it exists.
    pub fn group_of(&self, session_id: &SessionId) -> Cgroup {
        self.group(session_id.as_str())
    }

    /// Makes the group of `session_id` and writes its limits.
    pub fn create(&self, session_id: &SessionId, resources: &Resources) -> std::io::Result<Cgroup> {
        let group = self.group(session_id.as_str());
        for (_, dir) in &group.dirs {
            std::fs::create_dir_all(dir)?;
        }
        if let Err(error) = group.write_limits(resources) {
            group.remove();
            return Err(error);
        }
        Ok(group)
    }

    /// Groups of sessions other than `live`, left by an earlier server: their processes
    /// are killed and the groups removed.
    pub fn sweep(&self, live: &[SessionId]) {
        let mut names = std::collections::BTreeSet::new();
        for (_, base) in &self.bases {
            let Ok(entries) = std::fs::read_dir(base) else { continue };
            for entry in entries.flatten() {
                if entry.path().is_dir() {
                    names.insert(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        for name in names {
            if live.iter().any(|session| session.as_str() == name) || SessionId::parse(&name).is_none() {
                continue;
            }
            let group = self.group(&name);
            group.kill_all();
            group.remove();
        }
    }
}

/// A short stable name for the installation whose state is in `state_dir` (FNV-1a of
/// its path).
pub(crate) fn installation_name(state_dir: &Path) -> String {
    let path = state_dir.canonicalize().unwrap_or_else(|_| state_dir.to_owned());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.as_os_str().as_encoded_bytes() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("i{hash:016x}")
}

impl Cgroup {
    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(name, _)| *name == controller || *name == "unified")
            .map(|(_, dir)| dir.as_path())
    }

    fn write_limits(&self, resources: &Resources) -> std::io::Result<()> {
        match self.version {
            Version::V2 => {
                let Some(dir) = self.dir("unified") else { return Ok(()) };
                if let Some(bytes) = resources.memory_bytes {
                    std::fs::write(dir.join("memory.max"), bytes.to_string())?;
                    // No swap to escape to: the limit is the limit.
                    let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                }
                if let Some(pids) = resources.pids {
                    std::fs::write(dir.join("pids.max"), pids.to_string())?;
                }
                if let Some(cpus) = resources.cpus {
                    let quota = (cpus * CPU_PERIOD_US as f64).round() as u64;
                    std::fs::write(dir.join("cpu.max"), format!("{quota} {CPU_PERIOD_US}"))?;
                }
            }
            Version::V1 => {
                if let (Some(bytes), Some(dir)) = (resources.memory_bytes, self.dir("memory")) {
                    std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string())?;
                    let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                }
                if let (Some(pids), Some(dir)) = (resources.pids, self.dir("pids")) {
                    std::fs::write(dir.join("pids.max"), pids.to_string())?;
                }
                if let (Some(cpus), Some(dir)) = (resources.cpus, self.dir("cpu")) {
                    let quota = (cpus * CPU_PERIOD_US as f64).round() as u64;
                    std::fs::write(dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
                    std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process writes `0` to in order to join the group.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, dir)| dir.join("cgroup.procs")).collect()
    }

    /// Every process in the group (every controller's group holds the same ones: a
    /// sandbox joins them all at once).
    pub fn pids(&self) -> Vec<i32> {
        let Some((_, dir)) = self.dirs.first() else { return Vec::new() };
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|text| text.lines().filter_map(|line| line.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether any process is in the group, read from a counter where there is one
    /// (listing `cgroup.procs` on v1 costs the kernel far more).
    pub fn populated(&self) -> bool {
        let counter = match self.version {
            Version::V2 => self.dir("unified").map(|dir| (dir.join("cgroup.events"), "populated ")),
            Version::V1 => self.dir("pids").map(|dir| (dir.join("pids.current"), "")),
        };
        if let Some((file, key)) = counter
            && let Ok(text) = std::fs::read_to_string(file)
            && let Some(value) = text.lines().find_map(|line| line.strip_prefix(key))
        {
            return value.trim() != "0";
        }
        !self.pids().is_empty()
    }

    pub fn hits(&self) -> LimitHits {
        let counter = |file: Option<PathBuf>, key: &str| -> u64 {
            file.and_then(|file| std::fs::read_to_string(file).ok())
                .and_then(|text| {
                    text.lines().find_map(|line| {
                        let (name, value) = line.split_once(' ')?;
                        (name == key).then(|| value.trim().parse().ok()).flatten()
                    })
                })
                .unwrap_or(0)
        };
        let memory_file = match self.version {
            Version::V2 => self.dir("unified").map(|dir| dir.join("memory.events")),
            Version::V1 => self.dir("memory").map(|dir| dir.join("memory.oom_control")),
        };
        let pids_file = self.dir("pids").map(|dir| dir.join("pids.events"));
        LimitHits { oom_kills: counter(memory_file, "oom_kill"), pids_refused: counter(pids_file, "max") }
    }

    /// Kills every process in the group (a backstop: the pid namespace normally does it).
    pub fn kill_all(&self) {
        if let (Version::V2, Some(dir)) = (self.version, self.dir("unified"))
            && std::fs::write(dir.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        // A fork bomb may add processes while we kill: go round until none are left.
        for _ in 0..100 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Removes the group's directories; the kernel refuses while processes remain, so a
    /// few tries give dying processes time to be reaped.
    pub fn remove(&self) {
        for (_, dir) in &self.dirs {
            for _ in 0..50 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        }
    }
}
