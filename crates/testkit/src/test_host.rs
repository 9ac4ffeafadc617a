//! A test host of a test's own: a network namespace joined to this machine by a veth
//! pair, with a private address and a public-looking one (TEST-NET-2 stands in for the
//! internet). Servers of the test listen inside it ([`TestHost::listen`]), where an
//! outbound sandbox reaches them only as `egress_allow` says. Making one needs root.

use std::process::Command;
use std::time::Duration;

/// The test host's public-looking address, and this machine's side of it.
pub const PUBLIC_HOST: &str = "198.51.100.2";
pub const PUBLIC_GATEWAY: &str = "198.51.100.1";

/// A network namespace with its veth pair; deleted (with the pair) when dropped.
pub struct TestHost {
    pub namespace: String,
    /// The test host's private address, and this machine's side of that subnet.
    pub private_host: String,
    pub private_gateway: String,
    /// This machine's end of the veth pair.
    outside: String,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("ip runs");
    assert!(output.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

impl TestHost {
    pub fn start() -> TestHost {
        let marker = crate::unique_marker();
        let tail = &marker[marker.len() - 6..];
        let octet = (std::process::id() % 200 + 20).to_string();
        let namespace = format!("berth-host-{marker}");
        let (outside, inside) = (format!("be{tail}"), format!("bp{tail}"));
        let private_gateway = format!("10.213.{octet}.1");
        let private_host = format!("10.213.{octet}.2");
        ip(&["netns", "add", &namespace]);
        let host = TestHost { namespace, private_host, private_gateway, outside: outside.clone() };
        ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside]);
        ip(&["link", "set", &inside, "netns", &host.namespace, "name", "eth0"]);
        for address in [format!("{}/24", host.private_gateway), format!("{PUBLIC_GATEWAY}/24")] {
            ip(&["addr", "add", &address, "dev", &outside]);
        }
        ip(&["link", "set", &outside, "up"]);
        for address in [format!("{}/24", host.private_host), format!("{PUBLIC_HOST}/24")] {
            ip(&["-n", &host.namespace, "addr", "add", &address, "dev", "eth0"]);
        }
        ip(&["-n", &host.namespace, "link", "set", "eth0", "up"]);
        ip(&["-n", &host.namespace, "link", "set", "lo", "up"]);
        host
    }

    /// A listener on `address:port` inside the test host (port 0: any free one). The
    /// socket is made in the namespace by a thread that joins it, and stays there.
    pub fn listen(&self, address: &str, port: u16) -> std::net::TcpListener {
        let namespace = std::fs::File::open(format!("/run/netns/{}", self.namespace)).expect("the namespace");
        let address = format!("{address}:{port}");
        std::thread::spawn(move || {
            nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET).expect("joins the namespace");
            std::net::TcpListener::bind(&address).expect("a port in the test host")
        })
        .join()
        .expect("the listening thread")
    }

    /// Waits (bounded) until this machine reaches `address` through the veth.
    pub fn until_reachable(address: &str) {
        let address = address.parse().expect("an address and port");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the test host never answered at {address}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // The pair goes with either end, even while a socket keeps the namespace alive.
        let _ = Command::new("ip").args(["link", "del", &self.outside]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.namespace]).status();
    }
}

/// Whether this process may make network namespaces (root); when not, fails in CI and
/// says why locally.
pub fn can_make_namespaces() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        assert!(std::env::var("CI").is_err(), "the test makes network namespaces: run it as root");
        eprintln!("skipped: making network namespaces needs root");
    }
    root
}
