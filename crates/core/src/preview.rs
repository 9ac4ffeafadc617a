//! Which ports of a sandbox the live preview may reach: a port is a number from 1 to
//! 65535 and must be in the installation's allow-list (`preview.ports`, such as
//! `3000,5173,8000-8999`; every port by default).

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

#[cfg(test)]
mod tests {
    use super::*;

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
