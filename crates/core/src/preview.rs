//! Which ports of a sandbox the live preview may reach: a port is a number from 1 to
//! 65535 and must be in the installation's allow-list (`preview.ports`, such as
//! `3000,5173,8000-8999`; every port by default) — and on which host name a workspace's
//! preview is served: one of its own, `<workspace id>.<preview domain>`, never berth's.

use crate::WorkspaceId;
use std::ops::RangeInclusive;

/// The ports the preview proxy may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortAllowList {
    ranges: Vec<RangeInclusive<u16>>,
}

impl Default for PortAllowList {
    fn default() -> PortAllowList {
        PortAllowList { ranges: vec![1..=65535] }
    }
}

impl PortAllowList {
    /// Reads `3000,8000-8999`: ports and inclusive ranges, separated by commas.
    pub fn parse(text: &str) -> Result<PortAllowList, String> {
        let mut ranges = Vec::new();
        for item in text.split(',').map(str::trim) {
            let (low, high) = item.split_once('-').unwrap_or((item, item));
            let (Some(low), Some(high)) = (port(low.trim()), port(high.trim())) else {
                return Err(format!(
                    "'{item}' is not a port (1-65535) or a range of ports such as 8000-8999"
                ));
            };
            if low > high {
                return Err(format!("'{item}' runs backwards"));
            }
            ranges.push(low..=high);
        }
        Ok(PortAllowList { ranges })
    }

    pub fn allows(&self, port: u16) -> bool {
        self.ranges.iter().any(|range| range.contains(&port))
    }
}

/// The port of a preview address, as written in its path: decimal digits only, 1-65535.
pub fn port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|&port| port != 0)
}

/// Where previews are served: each workspace on a host name of its own,
/// `<scheme>://<workspace id>.<domain>[:port]`. A previewed page runs whatever the
/// workspace serves; on a host of its own the browser keeps it from berth's cookie and
/// from every other workspace's preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewHosts {
    https: bool,
    domain: String,
    port: Option<u16>,
}

impl PreviewHosts {
    /// The default: `http://<id>.preview.localhost:<port>` — browsers resolve every
    /// `*.localhost` name to the loopback address.
    pub fn localhost(port: u16) -> PreviewHosts {
        PreviewHosts { https: false, domain: "preview.localhost".into(), port: Some(port) }
    }

    /// A configured wildcard such as `https://*.preview.example.com` (a port may follow).
    pub fn wildcard(url: &str) -> Result<PreviewHosts, String> {
        let expected = "expected a wildcard address such as https://*.preview.example.com";
        let url = url.trim_end_matches('/');
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(expected.into());
        };
        let rest = rest.strip_prefix("*.").ok_or(expected)?;
        let (domain, port) = match rest.rsplit_once(':') {
            Some((domain, port)) => {
                (domain, Some(port.parse::<u16>().ok().filter(|&port| port != 0).ok_or(expected)?))
            }
            None => (rest, None),
        };
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if domain.is_empty() || domain.len() > 200 || !domain.split('.').all(label_ok) {
            return Err(expected.into());
        }
        Ok(PreviewHosts { https, domain: domain.to_ascii_lowercase(), port })
    }

    /// The origin of `workspace`'s previews, such as `http://w_….preview.localhost:7071`.
    pub fn url_for(&self, workspace: &WorkspaceId) -> String {
        format!("{}://{workspace}.{}{}", self.scheme(), self.domain, self.port_suffix())
    }

    /// The workspace a request's `Host` header names, if it is one of the preview hosts
    /// (the port is not compared: a proxy in front may use another one).
    pub fn workspace_of(&self, host: &str) -> Option<WorkspaceId> {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let label = name.strip_suffix(&self.domain)?.strip_suffix('.')?;
        WorkspaceId::parse(label)
    }

    /// Every preview host, as a Content-Security-Policy source (`frame-src`).
    pub fn frame_source(&self) -> String {
        format!("{}://*.{}{}", self.scheme(), self.domain, self.port_suffix())
    }

    /// Whether browsers treat the preview hosts as secure contexts (https, or a name
    /// under `localhost`), so their cookies may be `Secure` and `SameSite=None`.
    pub fn secure_context(&self) -> bool {
        self.https || self.domain == "localhost" || self.domain.ends_with(".localhost")
    }

    fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    fn port_suffix(&self) -> String {
        self.port.map(|port| format!(":{port}")).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_workspace_has_a_preview_host_of_its_own() {
        let hosts = PreviewHosts::localhost(7071);
        let (a, b) = (WorkspaceId::generate(), WorkspaceId::generate());
        assert_eq!(hosts.url_for(&a), format!("http://{a}.preview.localhost:7071"));
        assert_ne!(hosts.url_for(&a), hosts.url_for(&b));
        assert_eq!(hosts.workspace_of(&format!("{a}.preview.localhost:7071")), Some(a.clone()));
        assert_eq!(
            hosts.workspace_of(&format!("{}.PREVIEW.localhost", a.as_str().to_uppercase())),
            Some(a.clone())
        );
        for foreign in [
            "127.0.0.1:7071".to_owned(),
            "localhost:7071".into(),
            "preview.localhost:7071".into(),
            format!("{a}.evil.localhost:7071"),
            format!("x.{a}.preview.localhost:7071"),
            format!("{a}preview.localhost"),
            "w_short.preview.localhost".into(),
        ] {
            assert_eq!(hosts.workspace_of(&foreign), None, "{foreign}");
        }
        assert_eq!(hosts.frame_source(), "http://*.preview.localhost:7071");
        assert!(hosts.secure_context());
    }

    #[test]
    fn a_configured_preview_address_is_a_wildcard() {
        let hosts = PreviewHosts::wildcard("https://*.preview.example.com/").unwrap();
        let id = WorkspaceId::generate();
        assert_eq!(hosts.url_for(&id), format!("https://{id}.preview.example.com"));
        assert_eq!(hosts.workspace_of(&format!("{id}.preview.example.com")), Some(id.clone()));
        assert_eq!(hosts.frame_source(), "https://*.preview.example.com");
        assert!(hosts.secure_context());
        let plain = PreviewHosts::wildcard("http://*.p.lan:8080").unwrap();
        assert_eq!(plain.url_for(&id), format!("http://{id}.p.lan:8080"));
        assert!(!plain.secure_context());
        for bad in [
            "https://preview.example.com",
            "ftp://*.example.com",
            "https://*.",
            "https://*.exa mple.com",
            "https://*.example.com:0",
            "https://*.example.com:x",
            "https://*.*.example.com",
            "https://*.example.com/path",
            "https://*.-bad.com",
        ] {
            assert!(PreviewHosts::wildcard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_are_plain_numbers_in_range() {
        assert_eq!(port("3000"), Some(3000));
        assert_eq!(port("65535"), Some(65535));
        for bad in ["0", "65536", "-1", "+80", "80a", "", " 80", "0x50", "000080", "99999999999"] {
            assert_eq!(port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_allow_list_holds_ports_and_ranges() {
        let list = PortAllowList::parse("3000, 8000-8999").unwrap();
        assert!(list.allows(3000) && list.allows(8000) && list.allows(8999));
        assert!(!list.allows(22) && !list.allows(9000));
        assert!(PortAllowList::default().allows(1) && PortAllowList::default().allows(65535));
        for bad in ["", "0", "70000", "9000-8000", "http", "1-2-3"] {
            assert!(PortAllowList::parse(bad).is_err(), "{bad}");
        }
    }
}
