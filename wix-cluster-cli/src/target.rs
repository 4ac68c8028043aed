//! Which cluster a command acts on: `--addr` (or `WIX_CLUSTER_MANAGEMENT_ADDR`), else
//! `-c NAME|PID` among the discovery files, else the only cluster running.

use std::net::SocketAddr;

use wix_cluster::discovery::{self, Entry};

use crate::failure::Failure;

/// Where a command goes: the management app's address and mount point.
#[derive(Debug, Clone)]
pub(crate) struct Chosen {
    pub(crate) addr: SocketAddr,
    pub(crate) prefix: String,
}

/// Chooses the cluster from `addr` (the option), `cluster` (a name or pid) and the
/// environment.
pub(crate) fn choose(addr: Option<&str>, cluster: Option<&str>) -> Result<Chosen, Failure> {
    if let Some(addr) = addr {
        return by_addr(addr);
    }
    let entries = discovery::list();
    if let Some(wanted) = cluster {
        return by_name_or_pid(&entries, wanted);
    }
    if let Some(addr) = std::env::var("WIX_CLUSTER_MANAGEMENT_ADDR")
        .ok()
        .filter(|a| !a.trim().is_empty())
    {
        return by_addr(&addr);
    }
    match entries.as_slice() {
        [] => Err(Failure::Unreachable(format!(
            "no cluster is running for this user (no discovery file in {}); pass --addr",
            dirs()
        ))),
        [only] => Ok(from_entry(only)),
        many => Err(Failure::Usage(format!(
            "{} clusters are running; choose one with -c NAME|PID: {}",
            many.len(),
            many.iter()
                .map(|e| format!("{} (pid {})", e.name, e.pid))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn dirs() -> String {
    discovery::dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn from_entry(entry: &Entry) -> Chosen {
    Chosen {
        addr: entry.management_addr,
        prefix: entry.mount_point.clone(),
    }
}

/// `ip:port` or `ip:port/mount-point`; the mount point of a discovery file with the same
/// address when none is given.
fn by_addr(text: &str) -> Result<Chosen, Failure> {
    let text = text.trim();
    let text = text.strip_prefix("http://").unwrap_or(text);
    let (addr, prefix) = match text.find('/') {
        Some(at) => (&text[..at], text[at..].trim_end_matches('/')),
        None => (text, ""),
    };
    let addr: SocketAddr = addr.parse().map_err(|_| {
        Failure::Usage(format!(
            "{text:?} is not an address: expected ip:port or ip:port/mount-point"
        ))
    })?;
    let entry = discovery::list()
        .into_iter()
        .find(|e| e.management_addr == addr);
    let prefix = match (&entry, prefix) {
        (Some(entry), "") => entry.mount_point.clone(),
        _ => prefix.to_owned(),
    };
    Ok(Chosen { addr, prefix })
}

fn by_name_or_pid(entries: &[Entry], wanted: &str) -> Result<Chosen, Failure> {
    if let Ok(pid) = wanted.parse::<u32>() {
        if let Some(entry) = entries.iter().find(|e| e.pid == pid) {
            return Ok(from_entry(entry));
        }
    }
    let named: Vec<&Entry> = entries.iter().filter(|e| e.name == wanted).collect();
    match named.as_slice() {
        [] => Err(Failure::Unreachable(format!(
            "no running cluster is named or has the pid {wanted:?} (see `wix-cluster ls`)"
        ))),
        [only] => Ok(from_entry(only)),
        many => Err(Failure::Usage(format!(
            "{} clusters are named {wanted}; choose one by pid: {}",
            many.len(),
            many.iter()
                .map(|e| e.pid.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
