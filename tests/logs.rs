//! Logs from the master and the workers: JSON on request, every line whole.

use std::collections::HashSet;

use nix::sys::signal::Signal;
use serde_json::Value;
use wix_cluster_suite::{PATIENCE, Program, wait_until};

fn parse_all(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}"))
        })
        .collect()
}

#[test]
fn json_logs_are_one_object_per_line_with_worker_id_generation_and_pid() {
    let env = [
        ("WIX_CLUSTER_LOG_FORMAT", "json"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("WIX_CLUSTER_WORKERS", "2"),
    ];
    let mut program = Program::start("hello", &env);
    program.wait_for_log("\"message\":\"listening on ");
    let workers: HashSet<u64> = program
        .wait_for_workers(2)
        .into_iter()
        .map(u64::from)
        .collect();
    program.signal(Signal::SIGTERM);
    program.assert_exits_with(0);

    let lines = parse_all(&program.log());
    let master_pid = u64::from(program.pid());
    let mut workers_seen = HashSet::new();
    for line in &lines {
        assert!(line["fields"]["message"].is_string(), "{line}");
        match line["role"].as_str() {
            Some("master") => assert_eq!(line["pid"].as_u64(), Some(master_pid), "{line}"),
            Some("worker") => {
                let pid = line["pid"].as_u64().expect("pid");
                assert!(workers.contains(&pid), "{line}");
                assert!(
                    line["worker"]
                        .as_u64()
                        .is_some_and(|id| (1..=2).contains(&id)),
                    "{line}"
                );
                assert_eq!(line["generation"].as_u64(), Some(0), "{line}");
                workers_seen.insert(pid);
            }
            _ => panic!("no role: {line}"),
        }
    }
    assert_eq!(workers_seen, workers, "every worker logged");
}

#[test]
fn lines_stay_whole_when_many_processes_write_at_once() {
    let env = [("WIX_CLUSTER_LOG_FORMAT", "json"), ("LINES", "500")];
    let program = Program::start_fixture("chatty", &env);
    // 4 workers x 500 tracing lines + 500 stdout lines each, written concurrently.
    // Wait for every line of both kinds (the master logs lines of its own too).
    let all = wait_until(PATIENCE, || {
        let log = program.log();
        log.matches("\"app\":\"chatty\"").count() >= 2000
            && log.matches("chatty worker").count() >= 2000
    });
    assert!(all, "only {} lines", program.log().lines().count());
    let lines = parse_all(&program.log());
    let app_lines = lines.iter().filter(|l| l["app"] == "chatty").count();
    let worker_lines = lines
        .iter()
        .filter(|l| l["role"] == "worker" && l["fields"]["line"].is_u64())
        .count();
    assert_eq!(app_lines, 2000);
    assert_eq!(worker_lines, 2000);
}

#[test]
fn an_unknown_log_format_exits_2_before_anything_starts() {
    let mut program = Program::start("hello", &[("WIX_CLUSTER_LOG_FORMAT", "yaml")]);
    program.assert_exits_with(2);
    let log = program.log();
    assert!(log.contains("invalid WIX_CLUSTER_LOG_FORMAT=\"yaml\": expected text or json"));
    assert!(!log.contains("[worker="));
}
