//! The reliability drills and the bench, short versions of the commands operators run:
//! each runs the real `berth` binary and must succeed.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::process::Command;

fn berth(args: &[&str]) -> (bool, String) {
    berth_with(&[], args)
}

fn berth_with(env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let output =
        Command::new(env!("CARGO_BIN_EXE_berth")).envs(env.iter().copied()).args(args).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn the_crash_drill_loses_nothing_and_leaves_no_orphan() {
    let (ok, output) = berth(&["drill", "crash", "--sessions", "8", "--running", "3"]);
    assert!(ok, "{output}");
    assert!(
        output.contains("no orphan, no lost event, every session server_restart, every file on disk"),
        "{output}"
    );
}

#[test]
fn the_crash_drill_without_isolation_leaves_no_orphan_either() {
    // No pid namespace to die with the server: the next server's reconciliation kills them.
    let (ok, output) =
        berth_with(&[("BERTH_ISOLATION", "none")], &["drill", "crash", "--sessions", "6", "--running", "3"]);
    assert!(ok, "{output}");
    assert!(output.contains("no orphan, no lost event"), "{output}");
}

#[test]
fn the_fault_drill_keeps_every_invariant() {
    let (ok, output) = berth(&["drill", "faults", "--seconds", "4", "--fail-rate", "0.25"]);
    assert!(ok, "{output}");
    assert!(output.contains("invariants held after every step"), "{output}");
    // Faults were really injected, and both kinds of partial failure were seen.
    assert!(!output.contains("injected 0 power-on and 0 power-off failures"), "{output}");
}

#[test]
fn the_load_drill_reaches_every_connection() {
    let (ok, output) = berth(&["drill", "load", "--connections", "200", "--sessions", "4", "--rounds", "3"]);
    assert!(ok, "{output}");
    assert!(output.contains("prompt → agent message at every connection of its session"), "{output}");
}

#[test]
fn the_bench_prints_every_figure_of_the_design_against_its_target() {
    let (ok, output) =
        berth(&["bench", "--rounds", "5", "--docker-rounds", "2", "--hold", "30", "--sandboxes", "none"]);
    assert!(ok, "{output}");
    for figure in [
        "open idle workspace → agent ready, ACP initialised (isolation none)",
        "close one session (isolation none)",
        "close-all of 10 sessions",
        "close-all of 100 sessions",
        "reconnect + replay of ≥ 1,000 history events",
        "prompt round trip",
        "API read throughput",
        "server memory per live session",
        "sessions held open",
    ] {
        assert!(output.contains(figure), "no '{figure}' in\n{output}");
    }
}

#[test]
fn the_replicas_drill_ends_a_killed_replicas_sessions_on_the_other_and_loses_nothing() {
    // Its database comes from BERTH_TEST_POSTGRES_URL (scripts/test.sh starts a server).
    if std::env::var_os("BERTH_TEST_POSTGRES_URL").is_none() {
        assert!(std::env::var_os("CI").is_none(), "BERTH_TEST_POSTGRES_URL is not set: run scripts/test.sh");
        eprintln!(
            "skipping: BERTH_TEST_POSTGRES_URL is not set (scripts/test.sh starts a PostgreSQL server)"
        );
        return;
    }
    let (ok, output) = berth(&["drill", "replicas", "--sessions", "6", "--lease", "2s"]);
    assert!(ok, "{output}");
    assert!(
        output.contains("ended replica_lost within") && output.contains("no event lost, none left live"),
        "{output}"
    );
}
