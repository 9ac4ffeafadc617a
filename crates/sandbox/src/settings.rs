//! What an installation says about its sandboxes: how isolated, which network, how
//! much of the machine each may use. Plain values, read once from the configuration.

use std::fmt;

/// How the `local` driver contains an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// bubblewrap: own user, pid, mount, ipc, uts (and network) namespaces.
    Bwrap,
    /// A plain child process, for trusted single-user setups.
    None,
}

/// What a sandbox can reach on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The host's own network stack (no namespace): ports are shared with the host.
    Host,
    /// Its own network namespace with only loopback: nothing outside is reachable.
    Isolated,
    /// Its own network namespace with user-mode networking (slirp4netns) for outbound
    /// connections, so the agent reaches its model provider; nothing reaches in.
    Outbound,
}

impl Network {
    pub fn parse(text: &str) -> Option<Network> {
        match text {
            "host" => Some(Network::Host),
            "isolated" => Some(Network::Isolated),
            "outbound" => Some(Network::Outbound),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Network::Host => "host",
            Network::Isolated => "isolated",
            Network::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The share of the machine one sandbox may use. `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Resources {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u32>,
    /// CPU time as a number of cores (1.5 = one and a half cores' worth).
    pub cpus: Option<f64>,
}

impl Resources {
    pub fn is_unlimited(&self) -> bool {
        self.memory_bytes.is_none() && self.pids.is_none() && self.cpus.is_none()
    }
}

/// Reads a size such as `512m`, `2g`, `1.5G` or a plain number of bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    let bytes = number * multiplier as f64;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_their_units() {
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("4096"), Some(4096));
        for bad in ["", "m", "-1g", "12 parsecs", "1e9", "0"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn network_names_round_trip() {
        for network in [Network::Host, Network::Isolated, Network::Outbound] {
            assert_eq!(Network::parse(network.as_str()), Some(network));
        }
        assert_eq!(Network::parse("bridge"), None);
    }
}
