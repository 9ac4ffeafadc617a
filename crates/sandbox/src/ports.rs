//! The listening TCP ports of a network namespace, from the kernel's own tables
//! (`/proc/<pid>/net/tcp` and `tcp6` of a process inside it): text the kernel writes, read
//! as numbers only.

use std::path::Path;

/// `st` of a listening socket in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// The ports in state LISTEN in one `/proc/net/tcp`-format table.
pub fn listening(table: &str) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            let port = local.rsplit_once(':')?.1;
            (state == LISTEN).then(|| u16::from_str_radix(port, 16).ok()).flatten()
        })
        .filter(|&port| port != 0)
        .collect()
}

/// The listening ports of the network namespace `pid` is in, sorted, once each.
pub fn of_process(pid: i32) -> std::io::Result<Vec<u16>> {
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("net").join(table)) {
            Ok(text) => ports.extend(listening(&text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listening_sockets_count() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                     \x20  0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
                     \x20  1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n\
                     \x20  2: garbage\n";
        assert_eq!(listening(table), vec![3000]);
        let table6 = "header\n   0: 00000000000000000000000000000000:1538 00000000000000000000000000000000:0000 0A rest\n";
        assert_eq!(listening(table6), vec![5432]);
    }

    #[test]
    fn this_process_sees_its_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(of_process(std::process::id() as i32).unwrap().contains(&port));
    }
}
