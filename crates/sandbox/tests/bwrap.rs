//! The local driver with bubblewrap and cgroup limits, against the real programs: what
//! the agent can see, that power off leaves nothing behind, that a fork bomb and a memory
//! hog stay inside their sandbox and are reported, and that two sandboxes each have a
//! port 3000 of their own.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use berth_core::{SessionId, WorkspaceId};
use berth_sandbox::{
    AgentIo, Isolation, LocalDriver, LocalOptions, Network, Resources, SandboxDriver, SandboxNotice,
    SandboxSpec,
};
use berth_testkit::{have_program, processes_with, unique_marker};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INSTALLER: &str = "scripts/test.sh";

fn bwrap_ready() -> bool {
    have_program("bwrap", INSTALLER)
}

/// A data directory laid out as the server's: a database and two workspaces.
struct DataDir {
    dir: tempfile::TempDir,
}

impl DataDir {
    fn new() -> DataDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("berth.db"), "SECRET-DATABASE").unwrap();
        for name in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join("workspaces").join(name)).unwrap();
        }
        std::fs::write(dir.path().join("workspaces/b/notes.txt"), "SECRET-OF-B").unwrap();
        DataDir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn workspace(&self, name: &str) -> PathBuf {
        self.path().join("workspaces").join(name)
    }

    fn driver(&self, network: Network, resources: Resources) -> LocalDriver {
        let options = LocalOptions {
            isolation: Isolation::Bwrap,
            network,
            resources,
            stop_timeout: Duration::from_secs(3),
            hidden: vec![self.path().to_owned()],
            read_only: Vec::new(),
            egress_allow: Vec::new(),
        };
        LocalDriver::with_options(&self.path().join("sandboxes"), options).unwrap()
    }
}

fn spec(workspace_dir: &Path, agent_command: String) -> SandboxSpec {
    SandboxSpec {
        session_id: SessionId::generate(),
        workspace_id: WorkspaceId::generate(),
        workspace_dir: workspace_dir.to_owned(),
        agent_command,
        env: std::env::vars().filter(|(name, _)| name == "PATH").collect(),
        secret_env: Vec::new(),
    }
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn file_text(path: &Path) -> String {
    eventually(&format!("{} to be written", path.display()), || path.exists()).await;
    // Written by one shell redirection that the agent closes before it creates `done`.
    eventually("the probe to finish", || path.with_extension("done").exists()).await;
    std::fs::read_to_string(path).unwrap()
}

async fn next_notice(io: &mut AgentIo) -> SandboxNotice {
    tokio::time::timeout(Duration::from_secs(30), io.notices.recv()).await.unwrap().unwrap()
}

#[tokio::test]
async fn the_agent_sees_its_workspace_and_nothing_of_the_server() {
    if !bwrap_ready() {
        return;
    }
    let data = DataDir::new();
    let driver = data.driver(Network::Isolated, Resources::default());
    let root = data.path().display();
    let probe = format!(
        "{{ cat {root}/berth.db; echo \"database=$?\"; cat {root}/workspaces/b/notes.txt; echo \"other=$?\"; \
         ls {root}; echo \"data=$?\"; touch /usr/berth-was-here; echo \"system=$?\"; echo mine > mine.txt; \
         echo \"cwd=$(pwd)\"; }} > probe.txt 2>&1; touch probe.done; exec sleep 600"
    );
    let spec = spec(&data.workspace("a"), probe);
    let io = driver.power_on(spec.clone()).await.unwrap();
    assert_eq!(io.workspace_path, Path::new("/workspace"));
    let report = file_text(&data.workspace("a").join("probe.txt")).await;
    assert!(report.contains("database=1"), "the database must not be readable:\n{report}");
    assert!(report.contains("other=1"), "another workspace must not be readable:\n{report}");
    assert!(report.contains("data=2"), "the data directory must not exist inside:\n{report}");
    assert!(!report.contains("SECRET"), "{report}");
    assert!(report.contains("system=1"), "the system is read-only:\n{report}");
    assert!(report.contains("cwd=/workspace"), "{report}");
    assert_eq!(std::fs::read_to_string(data.workspace("a").join("mine.txt")).unwrap(), "mine\n");
    assert!(!Path::new("/usr/berth-was-here").exists());
    driver.power_off(&spec.session_id).await.unwrap();
}

#[tokio::test]
async fn a_plain_agent_command_whose_home_is_there_runs_without_a_shell_in_front_of_it() {
    if !bwrap_ready() {
        return;
    }
    let data = DataDir::new();
    let driver = data.driver(Network::Isolated, Resources::default());
    let agent = "'/bin/sh' '-c' 'echo $PPID $PWD $HOME > parent.txt; touch parent.done; exec sleep 600'";
    // The first open makes the agent's home (a shell does, inside); the next finds it.
    for parent in ["2", "1"] {
        let _ = std::fs::remove_file(data.workspace("a").join("parent.done"));
        let spec = spec(&data.workspace("a"), agent.into());
        let _io = driver.power_on(spec.clone()).await.unwrap();
        let said = file_text(&data.workspace("a").join("parent.txt")).await;
        // bubblewrap's own init is process 1 of the sandbox, the agent's parent when
        // nothing stands between them.
        assert_eq!(said, format!("{parent} /workspace /workspace/.berth/home\n"));
        assert!(data.workspace("a").join(".berth/home").is_dir());
        driver.power_off(&spec.session_id).await.unwrap();
    }
}

#[tokio::test]
async fn power_off_leaves_no_process_of_the_sandbox_behind() {
    if !bwrap_ready() {
        return;
    }
    let data = DataDir::new();
    let driver = data.driver(Network::Isolated, Resources { pids: Some(64), ..Resources::default() });
    let marker = unique_marker();
    // A child in the agent's group, one that left it with setsid, one double-forked away.
    let agent = format!(
        "sleep {marker} & setsid sleep {marker} & (sleep {marker} &); touch started; exec sleep {marker}"
    );
    let spec = spec(&data.workspace("a"), agent);
    let io = driver.power_on(spec.clone()).await.unwrap();
    // Four sleepers, and bubblewrap itself (its command line holds the marker too).
    eventually("four sleepers", || processes_with(&format!("sleep {marker}")).len() >= 4).await;

    driver.power_off(&spec.session_id).await.unwrap();
    assert!(io.exited.borrow().is_some());
    eventually("every process of the sandbox to be gone", || processes_with(&marker).is_empty()).await;
    assert!(driver.running().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_fork_bomb_is_held_by_the_process_limit_and_reported() {
    if !bwrap_ready() {
        return;
    }
    let data = DataDir::new();
    let driver = data.driver(Network::Isolated, Resources { pids: Some(32), ..Resources::default() });
    let marker = unique_marker();
    let bomb = format!("bomb() {{ bomb | bomb & }}; bomb; exec sleep {marker}");
    let spec = spec(&data.workspace("a"), bomb);
    let mut io = driver.power_on(spec.clone()).await.unwrap();

    assert!(matches!(next_notice(&mut io).await, SandboxNotice::ProcessLimit { .. }));
    assert!(processes_with(&marker).len() <= 32, "the limit holds");
    // The machine still forks: the bomb is inside its sandbox only.
    assert!(std::process::Command::new("true").status().unwrap().success());

    driver.power_off(&spec.session_id).await.unwrap();
    eventually("the bomb to be gone", || processes_with(&marker).is_empty()).await;
}

#[tokio::test]
async fn a_memory_hog_is_killed_and_reported() {
    if !bwrap_ready() {
        return;
    }
    let data = DataDir::new();
    let driver =
        data.driver(Network::Isolated, Resources { memory_bytes: Some(64 << 20), ..Resources::default() });
    let hog = "awk 'BEGIN { s = \"x\"; while (1) s = s s }'; echo \"hog=$?\" > after.txt; touch after.done; \
               exec sleep 600";
    let spec = spec(&data.workspace("a"), hog.to_owned());
    let mut io = driver.power_on(spec.clone()).await.unwrap();

    assert!(matches!(next_notice(&mut io).await, SandboxNotice::MemoryLimit { killed } if killed >= 1));
    let after = file_text(&data.workspace("a").join("after.txt")).await;
    assert_eq!(after.trim(), "hog=137", "the hog was killed by SIGKILL; the agent lives on");
    assert!(io.exited.borrow().is_none());
    driver.power_off(&spec.session_id).await.unwrap();
}

/// Serves `body` on port 3000 of the sandbox's own loopback.
fn web_server(body: &str) -> String {
    format!("echo {body} > index.html; exec python3 -m http.server 3000 --bind 127.0.0.1 >/dev/null 2>&1")
}

async fn get_through(driver: &LocalDriver, session: &SessionId) -> Option<String> {
    let mut stream = driver.connect(session, 3000).await.ok()?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: preview\r\n\r\n").await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    Some(response)
}

#[tokio::test]
async fn two_sandboxes_both_serve_port_3000_and_each_connection_reaches_its_own() {
    if !bwrap_ready() || !have_program("python3", INSTALLER) {
        return;
    }
    let data = DataDir::new();
    let driver = data.driver(Network::Isolated, Resources::default());
    let first = spec(&data.workspace("a"), web_server("from-a"));
    let second = spec(&data.workspace("b"), web_server("from-b"));
    let _first_io = driver.power_on(first.clone()).await.unwrap();
    let _second_io = driver.power_on(second.clone()).await.unwrap();

    for (spec, expected) in [(&first, "from-a"), (&second, "from-b")] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let response = loop {
            if let Some(response) = get_through(&driver, &spec.session_id).await {
                break response;
            }
            assert!(tokio::time::Instant::now() < deadline, "the server in the sandbox never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(response.trim_end().ends_with(expected), "{response}");
    }
    // Nothing listens on the host's own port 3000 for them.
    driver.power_off(&first.session_id).await.unwrap();
    assert!(matches!(
        driver.connect(&first.session_id, 3000).await,
        Err(berth_sandbox::SandboxError::NotRunning { .. })
    ));
    driver.power_off(&second.session_id).await.unwrap();
}

#[tokio::test]
async fn outbound_networking_gives_the_sandbox_an_interface_of_its_own() {
    if !bwrap_ready() || !have_program("slirp4netns", INSTALLER) {
        return;
    }
    let data = DataDir::new();
    let driver = data.driver(Network::Outbound, Resources::default());
    let probe = "cat /proc/net/dev > interfaces.txt; touch interfaces.done; exec sleep 600";
    let spec = spec(&data.workspace("a"), probe.to_owned());
    let _io = driver.power_on(spec.clone()).await.unwrap();
    let interfaces = file_text(&data.workspace("a").join("interfaces.txt")).await;
    assert!(interfaces.contains("tap0"), "slirp4netns's interface is there:\n{interfaces}");
    driver.power_off(&spec.session_id).await.unwrap();

    let isolated = data.driver(Network::Isolated, Resources::default());
    let spec = self::spec(&data.workspace("b"), probe.to_owned());
    let _io = isolated.power_on(spec.clone()).await.unwrap();
    let interfaces = file_text(&data.workspace("b").join("interfaces.txt")).await;
    assert!(!interfaces.contains("tap0") && !interfaces.contains("eth0"), "only loopback:\n{interfaces}");
    isolated.power_off(&spec.session_id).await.unwrap();
}
