//! Egress of outbound sandboxes, against real bubblewrap, slirp4netns and nftables and a
//! test host of the test's own: a network namespace joined to this machine by a veth
//! pair, answering on a private address and on a public-looking one (TEST-NET-2 stands in
//! for the internet). A sandbox reaches the public address, never the private one unless
//! `egress_allow` lists it, never this machine's own addresses (where a service listens
//! on 0.0.0.0) nor its loopback through slirp's gateway — and cannot lift the rules.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use berth_core::{SessionId, WorkspaceId};
use berth_sandbox::{Isolation, LocalDriver, LocalOptions, Network, Resources, SandboxDriver, SandboxSpec};
use berth_testkit::{PUBLIC_GATEWAY, PUBLIC_HOST, TestHost, have_program};
use std::io::{Read, Write};
use std::time::Duration;

const INSTALLER: &str = "scripts/test.sh";

/// The test host's answer on its port 8080, on every address of its own.
fn serve_test_host(host: &TestHost) -> std::thread::JoinHandle<()> {
    let listener = host.listen("0.0.0.0", 8080);
    let serving = std::thread::spawn(move || {
        for mut connection in listener.incoming().flatten() {
            let _ = connection.write_all(b"test-host");
        }
    });
    TestHost::until_reachable(&format!("{PUBLIC_HOST}:8080"));
    serving
}

/// What a sandbox's probe saw: `name=answer` lines.
const PROBE: &str = r#"
import socket, subprocess, sys
def probe(host, port):
    try:
        c = socket.create_connection((host, port), timeout=3)
        return c.recv(100).decode() or "empty"
    except OSError as error:
        return "refused:" + type(error).__name__
targets = dict(arg.split("=", 1) for arg in sys.argv[1:])
def report():
    for name, target in targets.items():
        host, port = target.rsplit(":", 1)
        print(f"{name}={probe(host, int(port))}")
report()
flush = subprocess.run(["nft", "flush", "ruleset"], capture_output=True)
print(f"flush={flush.returncode}")
print("after-flush:")
report()
"#;

async fn probe_with(allow: &str, host: &TestHost, service_port: u16) -> String {
    let data = tempfile::tempdir().unwrap();
    let workspace = data.path().join("workspace");
    std::fs::create_dir(&workspace).unwrap();
    std::fs::write(workspace.join("probe.py"), PROBE).unwrap();
    let options = LocalOptions {
        isolation: Isolation::Bwrap,
        network: Network::Outbound,
        resources: Resources::default(),
        stop_timeout: Duration::from_secs(3),
        hidden: vec![data.path().join("sandboxes")],
        read_only: Vec::new(),
        egress_allow: berth_sandbox::egress::parse_allow_list(allow).unwrap(),
    };
    let driver = LocalDriver::with_options(&data.path().join("sandboxes"), options).unwrap();
    let command = format!(
        "python3 probe.py public={PUBLIC_HOST}:8080 private={}:8080 own-private={}:{service_port} \
         own-public={PUBLIC_GATEWAY}:{service_port} loopback=10.0.2.2:{service_port} > probe.txt 2>&1; \
         touch probe.done; exec sleep 600",
        host.private_host, host.private_gateway
    );
    let spec = SandboxSpec {
        session_id: SessionId::generate(),
        workspace_id: WorkspaceId::generate(),
        workspace_dir: workspace.clone(),
        agent_command: command,
        env: std::env::vars().filter(|(name, _)| name == "PATH").collect(),
        secret_env: Vec::new(),
    };
    let _io = driver.power_on(spec.clone()).await.unwrap();
    let done = workspace.join("probe.done");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done.exists() {
        assert!(tokio::time::Instant::now() < deadline, "the probe never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    driver.power_off(&spec.session_id).await.unwrap();
    std::fs::read_to_string(workspace.join("probe.txt")).unwrap()
}

fn ready() -> bool {
    let programs =
        ["bwrap", "slirp4netns", "nft", "ip", "python3"].iter().all(|p| have_program(p, INSTALLER));
    programs && berth_testkit::can_make_namespaces()
}

/// A service of this machine on every address, answering "this-machine".
fn machine_service() -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = std::thread::spawn(move || {
        for mut connection in listener.incoming().flatten() {
            let mut first = [0u8; 1];
            connection.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
            let _ = connection.read(&mut first);
            if connection.write_all(b"this-machine").is_err() {
                break;
            }
        }
    });
    (port, serving)
}

#[tokio::test]
async fn an_outbound_sandbox_reaches_the_internet_but_no_private_or_host_address() {
    if !ready() {
        return;
    }
    let host = TestHost::start();
    let _serving = serve_test_host(&host);
    let (service_port, _serving) = machine_service();
    let line = |report: &str, name: &str| {
        report.lines().find(|line| line.starts_with(&format!("{name}="))).unwrap_or_default().to_owned()
    };

    let report = probe_with("", &host, service_port).await;
    let (before, after) = report.split_once("after-flush:").unwrap_or((&report, ""));
    assert_eq!(line(before, "public"), "public=test-host", "{report}");
    for refused in ["private", "own-private", "own-public", "loopback"] {
        assert!(line(before, refused).starts_with(&format!("{refused}=refused")), "{refused}: {report}");
        assert!(
            line(after, refused).starts_with(&format!("{refused}=refused")),
            "{refused} after flush: {report}"
        );
    }
    assert_ne!(line(before, "flush"), "flush=0", "the agent changed its rules: {report}");

    // Allowing the test host's address lets exactly it through.
    let report = probe_with(&format!("{}/32", host.private_host), &host, service_port).await;
    assert_eq!(line(&report, "private"), "private=test-host", "{report}");
    assert_eq!(line(&report, "public"), "public=test-host", "{report}");
    for refused in ["own-private", "own-public", "loopback"] {
        assert!(line(&report, refused).starts_with(&format!("{refused}=refused")), "{refused}: {report}");
    }
}
