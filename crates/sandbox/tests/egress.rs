//! Egress of outbound sandboxes, against real bubblewrap, slirp4netns and nftables and a
//! test host of the test's own: a network namespace joined to this machine by a veth
//! pair, answering on a private address and on a public-looking one (TEST-NET-2 stands in
//! for the internet). A sandbox reaches the public address, never the private one unless
//! `egress_allow` lists it, never this machine's own addresses (where a service listens
//! on 0.0.0.0) nor its loopback through slirp's gateway — and cannot lift the rules.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use berth_core::{SessionId, WorkspaceId};
use berth_sandbox::{Isolation, LocalDriver, LocalOptions, Network, Resources, SandboxDriver, SandboxSpec};
use berth_testkit::{have_program, unique_marker};
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

const INSTALLER: &str = "scripts/test.sh";
const PUBLIC_HOST: &str = "198.51.100.2";
const PUBLIC_GATEWAY: &str = "198.51.100.1";

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(output.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// The test host: its namespace, the private subnet's third octet, its server.
struct TestHost {
    namespace: String,
    private_host: String,
    private_gateway: String,
    server: std::process::Child,
}

impl TestHost {
    fn start() -> TestHost {
        let marker = unique_marker();
        let octet = (std::process::id() % 200 + 20).to_string();
        let namespace = format!("berth-egress-{marker}");
        let (outside, inside) = (format!("be{}", &marker[marker.len() - 6..]), "eth0".to_owned());
        let private_gateway = format!("10.213.{octet}.1");
        let private_host = format!("10.213.{octet}.2");
        ip(&["netns", "add", &namespace]);
        ip(&[
            "link",
            "add",
            &outside,
            "type",
            "veth",
            "peer",
            "name",
            &format!("bp{}", &marker[marker.len() - 6..]),
        ]);
        ip(&[
            "link",
            "set",
            &format!("bp{}", &marker[marker.len() - 6..]),
            "netns",
            &namespace,
            "name",
            &inside,
        ]);
        for address in [format!("{private_gateway}/24"), format!("{PUBLIC_GATEWAY}/24")] {
            ip(&["addr", "add", &address, "dev", &outside]);
        }
        ip(&["link", "set", &outside, "up"]);
        for address in [format!("{private_host}/24"), format!("{PUBLIC_HOST}/24")] {
            ip(&["-n", &namespace, "addr", "add", &address, "dev", &inside]);
        }
        ip(&["-n", &namespace, "link", "set", &inside, "up"]);
        ip(&["-n", &namespace, "link", "set", "lo", "up"]);
        let server = Command::new("ip")
            .args(["netns", "exec", &namespace, "python3", "-c"])
            .arg(
                "import socket\ns = socket.create_server(('0.0.0.0', 8080))\nwhile True:\n    c, _ = s.accept()\n    c.sendall(b'test-host')\n    c.close()\n",
            )
            .spawn()
            .unwrap();
        let host = TestHost { namespace, private_host, private_gateway, server };
        // Up once this machine gets an answer through the veth.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(
            &format!("{PUBLIC_HOST}:8080").parse().unwrap(),
            Duration::from_secs(1),
        )
        .is_err()
        {
            assert!(std::time::Instant::now() < deadline, "the test host never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
        host
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip").args(["netns", "del", &self.namespace]).status();
    }
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
    let root = nix::unistd::geteuid().is_root();
    if !root {
        assert!(std::env::var("CI").is_err(), "the egress test makes network namespaces: run it as root");
        eprintln!("skipped: making network namespaces needs root");
    }
    programs && root
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
