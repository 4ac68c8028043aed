//! The `Statsd` plugin sends the cluster's and the workers' custom metrics to a UDP
//! socket the test binds (the `exchange_metrics` example).

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use wix_cluster_suite::{PATIENCE, Program, http_get, wait_until};

/// `name -> (value, type)` of the latest line for each name.
fn parse(datagram: &str) -> Vec<(String, f64, String)> {
    datagram
        .lines()
        .map(|line| {
            let (name, rest) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("no ':' in {line:?}"));
            let (value, kind) = rest
                .split_once('|')
                .unwrap_or_else(|| panic!("no '|' in {line:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            (name.to_owned(), value, kind.to_owned())
        })
        .collect()
}

#[test]
fn the_master_publishes_cluster_and_custom_worker_metrics_over_udp() {
    let statsd = UdpSocket::bind("127.0.0.1:0").expect("bind");
    statsd
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let target = statsd.local_addr().expect("addr").to_string();
    let env = [
        ("PORT", "0"),
        ("STATSD_ADDR", target.as_str()),
        ("STATSD_INTERVAL_MS", "200"),
        ("REPORT_MS", "200"),
    ];
    let program = Program::start("exchange_metrics", &env);
    let addr = program.listening_addr();
    for _ in 0..20 {
        assert_eq!(http_get(addr, "/").expect("served").body, "Hi there");
    }

    let mut seen: HashMap<String, (f64, String)> = HashMap::new();
    let mut served_total = 0.0;
    // The request metrics of `http::serve`, through the facade: the duration
    // histogram's observations since each send, as a StatsD counter.
    let histogram_count = "wix_cluster.http_server_request_duration_seconds.\
                           http_request_method.GET.http_response_status_class.2xx.count";
    let mut observed_total = 0.0;
    let deadline = Instant::now() + PATIENCE;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        let Ok(n) = statsd.recv(&mut buf) else {
            continue;
        };
        for (name, value, kind) in parse(&String::from_utf8_lossy(&buf[..n])) {
            if name == "wix_cluster.requests.served" && kind == "c" {
                served_total += value;
            }
            if name == histogram_count && kind == "c" {
                observed_total += value;
            }
            seen.insert(name, (value, kind));
        }
        if served_total >= 20.0
            && observed_total >= 20.0
            && seen
                .get("wix_cluster.workers.ready")
                .is_some_and(|(v, _)| *v == 2.0)
        {
            break;
        }
    }
    assert_eq!(
        served_total, 20.0,
        "the counter increments add up to the requests made: {seen:?}"
    );
    assert!(
        observed_total >= 20.0,
        "the request histogram's counts cover the requests made: {seen:?}"
    );
    let p99 = "wix_cluster.http_server_request_duration_seconds.\
               http_request_method.GET.http_response_status_class.2xx.p99";
    assert!(
        seen.iter()
            .any(|(name, (_, kind))| name == p99 && kind == "g"),
        "{seen:?}"
    );
    assert_eq!(
        seen.get("wix_cluster.workers.ready"),
        Some(&(2.0, "g".to_owned())),
        "{seen:?}"
    );
    assert_eq!(
        seen.get("wix_cluster.workers.desired"),
        Some(&(2.0, "g".to_owned())),
        "{seen:?}"
    );
    assert!(
        seen.get("wix_cluster.forked")
            .is_some_and(|(_, k)| k == "c"),
        "{seen:?}"
    );
    for id in [1, 2] {
        assert!(
            seen.contains_key(&format!("wix_cluster.worker.{id}.requests")),
            "{seen:?}"
        );
        assert!(
            seen.contains_key(&format!("wix_cluster.worker.{id}.req.per.second")),
            "{seen:?}"
        );
    }
    assert!(
        seen.get("wix_cluster.req.per.second")
            .is_some_and(|(_, k)| k == "g"),
        "{seen:?}"
    );
    // The example's own sum over the exchange (the master logs the cluster's rate)
    // works alongside.
    let summed = wait_until(PATIENCE, || {
        program.log().contains("cluster req.per.second:")
    });
    assert!(summed);
}
