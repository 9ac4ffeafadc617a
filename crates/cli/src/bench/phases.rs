//! Where open → agent ready goes, beside the physical floor: the same agent (`berth
//! agent`) in the same sandbox with no control plane — a bare process, `bwrap
//! --unshare-all …` or `docker run` of the same image — then ACP `initialize` and
//! `session/new` over its stdio with the client berth uses. berth's phases are the means of its `berth_open_phase_seconds` and
//! `berth_sandbox_phase_seconds` histograms over the measured rounds (read from
//! `/metrics` before and after); the floor's are measured here, a round of it before each
//! of berth's.

use berth_agent::client::{AgentEvent, Handshake, WorkspaceRoots};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One open of the floor: the process spawned, then the handshake.
pub struct FloorRound {
    pub spawn: Duration,
    pub handshake: Handshake,
}

impl FloorRound {
    pub fn total(&self) -> Duration {
        self.spawn + self.handshake.initialize + self.handshake.session
    }
}

/// Where the floor's agent runs.
#[derive(Debug, Clone)]
pub enum Floor {
    /// A process of this machine.
    Bare,
    /// A bubblewrap sandbox with every namespace of its own and the system read-only.
    Bwrap,
    /// `docker run` of the image (no network), the workspace and berth bind-mounted.
    Docker { image: String },
}

/// Starts `berth agent` in `checkout` as `floor` says and runs the ACP handshake.
pub async fn floor_round(berth: &Path, checkout: &Path, floor: &Floor) -> anyhow::Result<FloorRound> {
    let started = Instant::now();
    let mut command = if let Floor::Docker { image } = floor {
        let mut command = tokio::process::Command::new("docker");
        command.args(["run", "--rm", "-i", "--network", "none", "-w", "/workspace", "-v"]);
        command.arg(format!("{0}:{0}:ro", berth.display()));
        command.arg("-v").arg(format!("{}:/workspace", checkout.display()));
        command.arg(image).arg(berth).arg("agent");
        command
    } else if matches!(floor, Floor::Bwrap) {
        let mut command = tokio::process::Command::new("bwrap");
        command.args(["--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]);
        for link in ["bin", "lib", "lib64", "sbin"] {
            if let Ok(target) = std::fs::read_link(Path::new("/").join(link)) {
                command.arg("--symlink").arg(target).arg(format!("/{link}"));
            }
        }
        command.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
        command.arg("--ro-bind").arg(berth).arg(berth);
        command.arg("--bind").arg(checkout).arg("/workspace").args(["--chdir", "/workspace"]);
        command.arg(berth).arg("agent");
        command
    } else {
        let mut command = tokio::process::Command::new(berth);
        command.arg("agent").current_dir(checkout);
        command
    };
    if let Floor::Docker { .. } = floor {
        // The docker client finds its engine as berth does.
        if let Some(host) = std::env::var_os("DOCKER_HOST") {
            command.env_clear().env("DOCKER_HOST", host);
        } else {
            command.env_clear();
        }
    } else {
        command.env_clear();
    }
    let mut child = command
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let spawn = started.elapsed();
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        anyhow::bail!("the floor's agent has no standard streams");
    };
    let agent_root = match floor {
        Floor::Bare => checkout.to_owned(),
        Floor::Bwrap | Floor::Docker { .. } => Path::new("/workspace").to_owned(),
    };
    let roots = WorkspaceRoots { host: checkout.to_owned(), agent: agent_root };
    let (_connection, mut events) = berth_agent::client::connect(stdin, stdout, roots, None);
    let handshake = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await? {
            Some(AgentEvent::Ready { handshake, .. }) => break handshake,
            Some(AgentEvent::Closed { error }) => anyhow::bail!("the floor's agent closed: {error:?}"),
            Some(_) => {}
            None => anyhow::bail!("the floor's agent went away"),
        }
    };
    let _ = child.kill().await;
    let _ = child.wait().await;
    Ok(FloorRound { spawn, handshake })
}

/// The sums and counts of the phase histograms in a `/metrics` text, by `metric/phase`.
pub type Scrape = BTreeMap<String, (f64, f64)>;

pub async fn scrape(http: &reqwest::Client, base: &str) -> anyhow::Result<Scrape> {
    let text = http.get(format!("{base}/metrics")).send().await?.error_for_status()?.text().await?;
    let mut scrape = Scrape::new();
    for line in text.lines() {
        for metric in ["berth_open_phase_seconds", "berth_sandbox_phase_seconds"] {
            let Some(rest) = line.strip_prefix(metric) else { continue };
            let (is_sum, rest) = match (rest.strip_prefix("_sum{"), rest.strip_prefix("_count{")) {
                (Some(rest), _) => (true, rest),
                (_, Some(rest)) => (false, rest),
                _ => continue,
            };
            let Some((labels, value)) = rest.split_once("} ") else { continue };
            let Some(phase) = labels.split(',').find_map(|label| label.strip_prefix("phase=\"")) else {
                continue;
            };
            let name =
                format!("{}/{}", metric.trim_end_matches("_phase_seconds"), phase.trim_end_matches('"'));
            let entry = scrape.entry(name).or_default();
            let value: f64 = value.trim().parse().unwrap_or(0.0);
            if is_sum {
                entry.0 = value;
            } else {
                entry.1 = value;
            }
        }
    }
    Ok(scrape)
}

/// Each phase's mean, in milliseconds, over what happened between two scrapes, in the
/// order an open goes through them.
pub fn means(before: &Scrape, after: &Scrape) -> Vec<(String, f64)> {
    let order = |name: &str| {
        let (metric, phase) = name.split_once('/').unwrap_or((name, ""));
        let engine = berth_engine::phases::Phase::ALL.iter().position(|known| known.as_str() == phase);
        // The driver's steps are inside the engine's `sandbox` phase.
        let sandbox = ["prepare", "spawn", "network"].iter().position(|step| *step == phase);
        match (metric, engine, sandbox) {
            ("berth_open", Some(at), _) => at * 10,
            ("berth_sandbox", _, Some(at)) => 30 + at + 1,
            _ => usize::MAX,
        }
    };
    let mut means: Vec<(String, f64)> = after
        .iter()
        .filter_map(|(name, (sum, count))| {
            let (sum_before, count_before) = before.get(name).copied().unwrap_or_default();
            let count = count - count_before;
            (count > 0.0).then(|| (name.clone(), (sum - sum_before) / count * 1000.0))
        })
        .collect();
    means.sort_by_key(|(name, _)| order(name));
    means
}

/// The floor's phases, means in milliseconds.
pub fn floor_means(rounds: &[FloorRound]) -> Vec<(String, f64)> {
    let mean = |part: &dyn Fn(&FloorRound) -> Duration| {
        rounds.iter().map(|round| part(round).as_secs_f64()).sum::<f64>() / rounds.len().max(1) as f64
            * 1000.0
    };
    vec![
        ("floor/spawn".to_owned(), mean(&|round| round.spawn)),
        ("floor/agent_initialize".to_owned(), mean(&|round| round.handshake.initialize)),
        ("floor/agent_session".to_owned(), mean(&|round| round.handshake.session)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_means_come_from_the_histograms_between_two_scrapes() {
        let scrape = |text: &str| {
            let mut scrape = Scrape::new();
            for line in text.lines() {
                let (name, sum, count) = {
                    let mut words = line.split(' ');
                    (words.next().unwrap(), words.next().unwrap(), words.next().unwrap())
                };
                scrape.insert(name.to_owned(), (sum.parse().unwrap(), count.parse().unwrap()));
            }
            scrape
        };
        let before = scrape("berth_open/made_live 0.010 5\nberth_sandbox/spawn 0.004 5");
        let after = scrape(
            "berth_open/made_live 0.030 15\nberth_sandbox/spawn 0.014 15\nberth_open/checks 0.002 2\nberth_open/x 1 1",
        );
        let means = means(&before, &after);
        let names: Vec<&str> = means.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            ["berth_open/checks", "berth_sandbox/spawn", "berth_open/made_live", "berth_open/x"]
        );
        assert!((means[2].1 - 2.0).abs() < 1e-9, "{means:?}");
        assert!((means[1].1 - 1.0).abs() < 1e-9, "{means:?}");
    }
}
