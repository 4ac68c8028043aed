//! `Statsd`: the master publishes the cluster's metrics and the workers' custom metrics
//! to a StatsD server over UDP, every interval.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{ClusterCounters, Master, Plugin, PluginError, WorkerState};

/// Sends, every `interval` (default 10 s), to `addr` (default `127.0.0.1:8125`) with
/// names under `prefix` (default `wix_cluster`):
///
/// - gauges `<prefix>.workers.desired`, `.workers.ready`, `.workers.live`;
/// - counters (increments since the last send) `<prefix>.forked`, `.respawned`,
///   `.died`, `.failing`, `.recycled`, `.stalled`;
/// - per worker: gauge `<prefix>.worker.<id>.requests`, and every custom metric as
///   `<prefix>.worker.<id>.<name>` (a gauge; counters as their running total);
/// - every custom metric summed over the workers: counters as `<prefix>.<name>` with
///   `|c` (increments since the last send), gauges as `<prefix>.<name>` with `|g`.
///
/// Lines are packed into datagrams of at most 1,400 bytes.
#[derive(Debug, Clone)]
pub struct Statsd {
    addr: String,
    interval: Duration,
    prefix: String,
}

impl Default for Statsd {
    fn default() -> Self {
        Statsd {
            addr: "127.0.0.1:8125".to_owned(),
            interval: Duration::from_secs(10),
            prefix: "wix_cluster".to_owned(),
        }
    }
}

/// The largest datagram sent: safe under common MTUs.
const DATAGRAM: usize = 1400;

impl Statsd {
    /// The StatsD server's UDP address. Default `127.0.0.1:8125`.
    pub fn addr(mut self, addr: impl Into<String>) -> Self {
        self.addr = addr.into();
        self
    }

    /// How often to send. Default 10 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// What every metric name starts with. Default `wix_cluster`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

impl Plugin for Statsd {
    fn name(&self) -> &str {
        "Statsd"
    }

    async fn on_master(&self, master: &Master) -> Result<(), PluginError> {
        let target: SocketAddr = tokio::net::lookup_host(&self.addr)
            .await
            .map_err(|e| format!("Statsd: cannot resolve {:?}: {e}", self.addr))?
            .next()
            .ok_or_else(|| format!("Statsd: {:?} resolves to nothing", self.addr))?;
        if self.interval.is_zero() {
            return Err("Statsd: interval must be more than 0".into());
        }
        let local: SocketAddr = if target.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = tokio::net::UdpSocket::bind(local).await?;
        socket.connect(target).await?;
        tracing::info!(
            "Statsd: sending metrics to {target} every {:?}",
            self.interval
        );
        let publisher = Publisher {
            prefix: self.prefix.clone(),
            master: master.clone(),
            last: ClusterCounters::default(),
            last_counters: BTreeMap::new(),
            last_histograms: BTreeMap::new(),
        };
        tokio::spawn(publisher.run(socket, self.interval));
        Ok(())
    }
}

struct Publisher {
    prefix: String,
    master: Master,
    last: ClusterCounters,
    /// Facade counters as last sent, by flattened name.
    last_counters: BTreeMap<String, u64>,
    /// Facade histograms as last sent, by flattened name.
    last_histograms: BTreeMap<String, crate::metrics::Buckets>,
}

impl Publisher {
    async fn run(mut self, socket: tokio::net::UdpSocket, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let lines = self.lines().await;
            for datagram in pack(&lines) {
                if let Err(e) = socket.send(datagram.as_bytes()).await {
                    tracing::debug!("Statsd: cannot send: {e}");
                }
            }
        }
    }

    async fn lines(&mut self) -> Vec<String> {
        let p = &self.prefix;
        let workers = self.master.workers().await;
        let ready = workers
            .iter()
            .filter(|w| w.state == WorkerState::Ready)
            .count();
        let mut lines = vec![
            format!("{p}.workers.desired:{}|g", self.master.desired_workers()),
            format!("{p}.workers.ready:{ready}|g"),
            format!("{p}.workers.live:{}|g", workers.len()),
        ];
        let now = self.master.counters();
        let last = std::mem::replace(&mut self.last, now);
        for (name, now, before) in [
            ("forked", now.forked, last.forked),
            ("respawned", now.respawned, last.respawned),
            ("died", now.died, last.died),
            ("failing", now.failing, last.failing),
            ("recycled", now.recycled, last.recycled),
            ("stalled", now.stalled, last.stalled),
        ] {
            lines.push(format!("{p}.{name}:{}|c", now.saturating_sub(before)));
        }
        for info in &workers {
            lines.push(format!(
                "{p}.worker.{}.requests:{}|g",
                info.worker.id, info.requests
            ));
        }
        self.facade_lines(&mut lines);
        lines
    }

    /// What was recorded through the `metrics` facade: counters as increments since the
    /// last send (`c`), summed over label sets' flattened names; gauges per worker and
    /// summed (`g`); histograms as the count and sum of the observations since the last
    /// send (`c`) and their p50 and p99 (`g`).
    fn facade_lines(&mut self, lines: &mut Vec<String>) {
        let p = &self.prefix;
        let view = self.master.metrics();
        let mut counters = BTreeMap::new();
        for (key, total) in &view.counters {
            let name = flat_name(key);
            let before = self.last_counters.get(&name).copied().unwrap_or(0);
            lines.push(format!("{p}.{name}:{}|c", total.saturating_sub(before)));
            counters.insert(name, *total);
        }
        self.last_counters = counters;
        for (key, by_origin) in &view.gauges {
            let name = flat_name(key);
            for (origin, value) in by_origin {
                lines.push(format!("{p}.worker.{origin}.{name}:{value}|g"));
            }
            lines.push(format!("{p}.{name}:{}|g", by_origin.values().sum::<f64>()));
        }
        let mut histograms = BTreeMap::new();
        for (key, buckets) in view.histograms {
            let name = flat_name(&key);
            let recent = match self.last_histograms.get(&name) {
                Some(before) => buckets.since(before).unwrap_or_else(|| buckets.clone()),
                None => buckets.clone(),
            };
            lines.push(format!("{p}.{name}.count:{}|c", recent.count()));
            lines.push(format!("{p}.{name}.sum:{}|c", recent.sum));
            for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
                if let Some(value) = recent.quantile(q) {
                    lines.push(format!("{p}.{name}.{label}:{value}|g"));
                }
            }
            histograms.insert(name, buckets);
        }
        self.last_histograms = histograms;
    }
}

/// A series as one StatsD name: `name`, then `.label.value` for each label.
fn flat_name(key: &crate::metrics::SeriesKey) -> String {
    let mut name = sanitize(&key.name);
    for (label, value) in &key.labels {
        name.push('.');
        name.push_str(&sanitize(label));
        name.push('.');
        name.push_str(&sanitize(value));
    }
    name
}

/// StatsD names may not hold `:`, `|`, `@` or whitespace.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == ':' || c == '|' || c == '@' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Packs lines into newline-separated datagrams of at most [`DATAGRAM`] bytes.
fn pack(lines: &[String]) -> Vec<String> {
    let mut datagrams = Vec::new();
    let mut current = String::new();
    for line in lines {
        if !current.is_empty() && current.len() + 1 + line.len() > DATAGRAM {
            datagrams.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        let _ = write!(current, "{line}");
    }
    if !current.is_empty() {
        datagrams.push(current);
    }
    datagrams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_packed_into_small_datagrams_without_splitting_a_line() {
        let lines: Vec<String> = (0..200)
            .map(|i| format!("wix_cluster.worker.{i}.requests:{i}|g"))
            .collect();
        let datagrams = pack(&lines);
        assert!(datagrams.len() > 1);
        assert!(datagrams.iter().all(|d| d.len() <= DATAGRAM));
        let rejoined: Vec<&str> = datagrams.iter().flat_map(|d| d.split('\n')).collect();
        assert_eq!(
            rejoined,
            lines.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }

    #[test]
    fn names_lose_the_characters_statsd_reserves() {
        assert_eq!(sanitize("req per:sec|x@y"), "req_per_sec_x_y");
    }
}
