//! Numbers for a person: durations, sizes, rates, latencies, times of day.

/// `42s`, `12m05s`, `3h04m`, `2d03h`.
pub(crate) fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `512K`, `12.3M`, `1.2G`.
pub(crate) fn bytes(n: f64) -> String {
    const K: f64 = 1024.0;
    if n < K * K {
        format!("{:.0}K", n / K)
    } else if n < K * K * K {
        format!("{:.1}M", n / K / K)
    } else {
        format!("{:.1}G", n / K / K / K)
    }
}

/// `850`, `12.3k`, `1.2M` (per second).
pub(crate) fn rate(n: f64) -> String {
    if n < 1000.0 {
        format!("{n:.0}")
    } else if n < 1_000_000.0 {
        format!("{:.1}k", n / 1000.0)
    } else {
        format!("{:.1}M", n / 1_000_000.0)
    }
}

/// A latency in seconds: `850µs`, `12.3ms`, `1.20s`.
pub(crate) fn latency(seconds: f64) -> String {
    if seconds < 0.001 {
        format!("{:.0}µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1}ms", seconds * 1e3)
    } else {
        format!("{seconds:.2}s")
    }
}

/// The local-agnostic time of day of a Unix time, UTC: `14:03:07`.
pub(crate) fn clock(unix: f64) -> String {
    let s = unix.max(0.0) as u64 % 86400;
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
}

/// `-` for a missing value, else `f` of it.
pub(crate) fn or_dash(value: Option<f64>, f: fn(f64) -> String) -> String {
    value.map_or_else(|| "-".to_owned(), f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_short() {
        assert_eq!(duration(42.9), "42s");
        assert_eq!(duration(725.0), "12m05s");
        assert_eq!(duration(3.0 * 86400.0 + 7200.0), "3d02h");
        assert_eq!(bytes(12.3 * 1024.0 * 1024.0), "12.3M");
        assert_eq!(rate(12345.0), "12.3k");
        assert_eq!(latency(0.0123), "12.3ms");
        assert_eq!(latency(0.000_85), "850µs");
        assert_eq!(clock(3661.0), "01:01:01");
    }
}
