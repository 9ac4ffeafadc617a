//! Where an outbound sandbox may connect. slirp4netns makes each connection from the
//! host, so without rules a sandbox reaches whatever the host reaches: its own services
//! on any of its addresses, loopback through the gateway, the cloud's metadata service,
//! the private network behind it. A packet filter in the sandbox's own network namespace
//! lets the internet through and refuses the host's own addresses, loopback, link-local
//! and private ranges — unless the installation allows a range (`sandbox.egress_allow`).
//! The rules are loaded from outside, by the server, before the agent starts; inside, the
//! agent has no capability over the namespace, so it cannot change them.

pub use ipnet::IpNet;
use std::net::IpAddr;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// slirp4netns's DNS forwarder inside every sandbox: name lookups go through it.
const SLIRP_DNS: &str = "10.0.2.3";

/// Ranges no sandbox reaches unless allowed: "this network", private (RFC 1918), carrier
/// NAT, loopback, link-local (cloud metadata), benchmarking, multicast and reserved.
const BLOCKED: [&str; 16] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/127",
    "::ffff:0:0/96",
    "64:ff9b:1::/48",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// Parses `sandbox.egress_allow`: CIDRs (a bare address is one host) separated by commas.
pub fn parse_allow_list(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| format!("'{part}' is not a CIDR such as 10.1.0.0/16 or fd00::/8"))
        })
        .collect()
}

/// The nftables ruleset of a sandbox's namespace: loopback and DNS through slirp, then
/// the allowed ranges, then the blocked ones and the host's own addresses refused, and
/// everything else (the internet) let through. One rule per range: ranges may overlap.
pub fn ruleset(allow: &[IpNet], host_addresses: &[IpAddr]) -> String {
    let family = |net: &IpNet| match net {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ip6",
    };
    let mut rules = vec![
        "oif \"lo\" accept".to_owned(),
        format!("ip daddr {SLIRP_DNS} meta l4proto {{ tcp, udp }} th dport 53 accept"),
    ];
    rules.extend(allow.iter().map(|net| format!("{} daddr {net} accept", family(net))));
    let blocked = BLOCKED.iter().filter_map(|text| text.parse::<IpNet>().ok());
    let own = host_addresses.iter().map(|address| IpNet::from(*address));
    for net in blocked.chain(own) {
        rules.push(format!("{} daddr {net} meta l4proto tcp reject with tcp reset", family(&net)));
        rules.push(format!("{} daddr {net} reject", family(&net)));
    }
    let body: String = rules.iter().map(|rule| format!("        {rule}\n")).collect();
    format!(
        "table inet berth_egress {{\n    chain output {{\n        type filter hook output priority filter; policy accept;\n{body}    }}\n}}\n"
    )
}

/// Every address of this host's interfaces.
pub fn host_addresses() -> Vec<IpAddr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut addresses: Vec<IpAddr> = interfaces
        .filter_map(|interface| {
            let address = interface.address?;
            if let Some(v4) = address.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

/// Loads `ruleset` into the network namespace of process `pid` (a sandbox whose agent has
/// not started yet), from outside it.
pub async fn apply(pid: i32, ruleset: &str) -> std::io::Result<()> {
    let mut command = tokio::process::Command::new("nsenter");
    command.arg(format!("--target={pid}"));
    // Root administers every namespace; another user enters the sandbox's own user
    // namespace first, where it holds the capabilities over the network.
    if !nix::unistd::geteuid().is_root() {
        command.args(["--user", "--preserve-credentials"]);
    }
    let mut child = command
        .args(["--net", "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(ruleset.as_bytes()).await?;
    }
    let output = child.wait_with_output().await?;
    if output.status.success() {
        Ok(())
    } else {
        let reason = String::from_utf8_lossy(&output.stderr);
        Err(std::io::Error::other(format!("the sandbox's egress rules were refused: {}", reason.trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_ranges_come_before_the_refused_ones() {
        let allow = parse_allow_list("10.77.0.0/24, 192.168.1.5").unwrap();
        let rules = ruleset(&allow, &["203.0.113.7".parse().unwrap(), "2001:db8::1".parse().unwrap()]);
        let at = |needle: &str| rules.find(needle).unwrap_or_else(|| panic!("{needle} missing in {rules}"));
        assert!(at("ip daddr 10.77.0.0/24 accept") < at("ip daddr 10.0.0.0/8 meta l4proto tcp reject"));
        assert!(at("ip daddr 192.168.1.5/32 accept") < at("ip daddr 192.168.0.0/16 reject"));
        at("ip daddr 203.0.113.7/32 reject");
        at("ip6 daddr 2001:db8::1/128 reject");
        at("ip daddr 169.254.0.0/16 reject");
        at("ip6 daddr fc00::/7 reject");
        assert!(at("ip daddr 10.0.2.3 meta l4proto { tcp, udp } th dport 53 accept") < at("10.0.0.0/8"));
        assert!(rules.contains("policy accept"), "the internet stays reachable");
    }

    #[test]
    fn allow_lists_are_cidrs_or_addresses() {
        assert_eq!(parse_allow_list("").unwrap(), Vec::<IpNet>::new());
        assert_eq!(parse_allow_list("10.1.2.3/16").unwrap(), ["10.1.0.0/16".parse::<IpNet>().unwrap()]);
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/8; drop", "1.2.3"] {
            assert!(parse_allow_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn this_host_has_addresses() {
        assert!(host_addresses().iter().any(IpAddr::is_loopback));
    }
}
