//! Reading and signalling processes through /proc and kill(2), for the local driver.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The start time of process `pid` (clock ticks since boot, field 22 of
/// /proc/PID/stat), which together with the pid names one process unambiguously: a
/// recycled pid has another start time.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process is still there and is not a zombie waiting to be reaped.
pub fn is_alive(pid: i32, expected_start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let Some(after_name) = stat.rfind(')').map(|at| &stat[at + 1..]) else { return false };
    let mut fields = after_name.split_whitespace();
    let state = fields.next();
    let started = fields.nth(18).and_then(|field| field.parse::<u64>().ok());
    state != Some("Z") && started == Some(expected_start)
}

/// Sends `signal` to every process of the group `pgid`. A group that no longer exists
/// is not an error.
pub fn signal_group(pgid: i32, signal: Signal) -> Result<(), nix::Error> {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Whether any process of the group `pgid` is still there.
pub fn group_exists(pgid: i32) -> bool {
    // Signal 0 checks for existence without delivering anything.
    !matches!(nix::sys::signal::killpg(Pid::from_raw(pgid), None), Err(nix::Error::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_start_time_and_is_alive() {
        let pid = std::process::id() as i32;
        let started = start_time(pid).expect("a start time");
        assert!(is_alive(pid, started));
        assert!(!is_alive(pid, started + 1), "another start time is another process");
        assert_eq!(start_time(i32::MAX), None);
    }
}
