//! The Prometheus text exposition format (0.0.4): families written one after another,
//! each name once, values and labels escaped, every name valid whatever the app called
//! its metrics: characters outside the format's become `_`, a leading `__` (reserved
//! for Prometheus) becomes `_`, two labels of one sample never share a name (the last
//! given wins: a histogram's own `le`, a gauge's own `worker`; a user's `le` on a
//! histogram is written `exported_le`), and a sample whose series was written already
//! is left out. Collisions are logged once per family.

use std::collections::HashSet;
use std::fmt::Write as _;

/// The `Content-Type` of the format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

/// The page being written.
#[derive(Default)]
pub(crate) struct Text {
    out: String,
    /// Every name taken so far (a histogram's `_bucket`, `_sum`, `_count` too).
    taken: HashSet<String>,
}

impl Text {
    /// Starts the family `name` (a valid metric name); `None` when a family before
    /// took the name.
    pub(crate) fn family(&mut self, name: &str, kind: Type, help: &str) -> Option<Family<'_>> {
        let mut names = vec![name.to_owned()];
        if kind == Type::Histogram {
            names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
        }
        if names.iter().any(|name| self.taken.contains(name)) {
            return None;
        }
        self.taken.extend(names);
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        Some(Family {
            text: self,
            name: name.to_owned(),
            kind,
            series: HashSet::new(),
            warned: false,
        })
    }

    /// The page.
    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// One family's samples.
pub(crate) struct Family<'a> {
    text: &'a mut Text,
    name: String,
    kind: Type,
    /// The label sets written, so that a series is never written twice.
    series: HashSet<String>,
    /// Whether a collision in this family was logged already.
    warned: bool,
}

impl Family<'_> {
    /// Writes the sample `<name><suffix>{labels} value`; a repeated series is skipped.
    /// Label names are made valid; of two that end up the same, the last given wins
    /// (the caller's own `le` or `worker` comes last). In a histogram, a label `le`
    /// other than a `_bucket` sample's last is written `exported_le`.
    pub(crate) fn sample<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        suffix: &str,
        labels: &[(K, V)],
        value: f64,
    ) {
        let mut names: Vec<(String, &str)> = Vec::with_capacity(labels.len());
        let last = labels.len().saturating_sub(1);
        let mut collided = None;
        for (i, (key, value)) in labels.iter().enumerate() {
            let mut name = label_name(key.as_ref());
            let own_le = self.kind == Type::Histogram && suffix == "_bucket" && i == last;
            if self.kind == Type::Histogram && name == "le" && !own_le {
                name = "exported_le".to_owned();
            }
            if let Some(known) = names.iter().position(|(known, _)| *known == name) {
                collided = Some(format!("two labels are named {name:?}"));
                names.remove(known);
            }
            names.push((name, value.as_ref()));
        }
        let mut set = String::new();
        for (i, (key, value)) in names.iter().enumerate() {
            if i > 0 {
                set.push(',');
            }
            let _ = write!(set, "{key}=\"{}\"", escape(value));
        }
        if !self.series.insert(format!("{suffix}{{{set}}}")) {
            self.warn(&format!(
                "two of its series are {{{set}}} once their names are made valid; one is left out"
            ));
            return;
        }
        if let Some(why) = collided {
            self.warn(&format!("{why} once made valid; the last is kept"));
        }
        let out = &mut self.text.out;
        out.push_str(&self.name);
        out.push_str(suffix);
        if !set.is_empty() {
            let _ = write!(out, "{{{set}}}");
        }
        let _ = writeln!(out, " {}", number(value));
    }

    /// Logs a collision in this family, once per family and page, and once per name
    /// for the process's life (at most [`WARNED_NAMES`] names remembered).
    fn warn(&mut self, what: &str) {
        if std::mem::replace(&mut self.warned, true) {
            return;
        }
        static WARNED: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());
        let mut warned = WARNED.lock();
        if warned.contains(&self.name) || warned.len() >= WARNED_NAMES {
            return;
        }
        warned.push(self.name.clone());
        tracing::warn!("in /metrics, family {}: {what}", self.name);
    }
}

/// How many family names [`Family::warn`] remembers.
const WARNED_NAMES: usize = 100;

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A number as the format writes it.
pub(crate) fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        value.to_string()
    }
}

/// A valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`, other characters as `_`.
pub(crate) fn metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// A valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`, other characters as `_`.
fn label_name(name: &str) -> String {
    sanitize(name, false)
}

fn sanitize(name: &str, colons: bool) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    // Names starting with `__` are reserved for Prometheus's own use.
    while out.starts_with("__") {
        out.remove(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_valid_metric_names() {
        assert_eq!(metric_name("queue_depth"), "queue_depth");
        assert_eq!(metric_name("req/s.p99"), "req_s_p99");
        assert_eq!(metric_name("5xx"), "_5xx");
        assert_eq!(metric_name(""), "_");
        assert_eq!(label_name("a:b"), "a_b");
        assert_eq!(metric_name("__name__"), "_name__");
        assert_eq!(label_name("___x"), "_x");
        assert_eq!(metric_name("-5"), "_5");
    }

    #[test]
    fn labels_of_one_sample_never_share_a_name() {
        let mut text = Text::default();
        let mut jobs = text.family("jobs_total", Type::Counter, "j").unwrap();
        jobs.sample("", &[("a-b", "1"), ("a_b", "2")], 1.0);
        let mut lat = text.family("lat", Type::Histogram, "h").unwrap();
        lat.sample("_bucket", &[("le", "mine"), ("le", "+Inf")], 1.0);
        lat.sample("_count", &[("le", "mine")], 1.0);
        assert_eq!(
            text.finish(),
            "# HELP jobs_total j\n# TYPE jobs_total counter\njobs_total{a_b=\"2\"} 1\n\
             # HELP lat h\n# TYPE lat histogram\n\
             lat_bucket{exported_le=\"mine\",le=\"+Inf\"} 1\nlat_count{exported_le=\"mine\"} 1\n"
        );
    }

    #[test]
    fn a_family_is_written_once_and_values_are_escaped() {
        let mut text = Text::default();
        let mut family = text
            .family("jobs_total", Type::Counter, "Jobs\ndone.")
            .unwrap();
        family.sample("", &[("kind", "a\"b")], 2.0);
        family.sample("", &[("kind", "a\"b")], 3.0);
        assert!(text.family("jobs_total", Type::Gauge, "again").is_none());
        let mut lat = text.family("lat", Type::Histogram, "h").unwrap();
        lat.sample("_bucket", &[("le", "+Inf")], f64::INFINITY);
        assert!(text.family("lat_count", Type::Gauge, "clash").is_none());
        assert_eq!(
            text.finish(),
            "# HELP jobs_total Jobs\\ndone.\n# TYPE jobs_total counter\n\
             jobs_total{kind=\"a\\\"b\"} 2\n# HELP lat h\n# TYPE lat histogram\n\
             lat_bucket{le=\"+Inf\"} +Inf\n"
        );
    }
}
