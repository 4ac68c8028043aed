//! What a process's recorder sends the master: its series and their readings, batched.

use serde::{Deserialize, Serialize};

use crate::exchange::Exchange;

/// A series: a metric name and its labels, sorted by label name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The metric's name, as the app gave it.
    pub name: String,
    /// `(name, value)` pairs, sorted by name.
    pub labels: Vec<(String, String)>,
}

impl SeriesKey {
    /// A key from a name and labels in any order.
    pub fn new(name: impl Into<String>, mut labels: Vec<(String, String)>) -> SeriesKey {
        labels.sort();
        SeriesKey {
            name: name.into(),
            labels,
        }
    }

    /// Whether the key keeps every bound: a name of at most [`super::MAX_NAME_LEN`]
    /// bytes, at most [`super::MAX_LABELS`] labels of at most [`super::MAX_LABEL_LEN`]
    /// bytes (name and value), sorted, each name once.
    pub(crate) fn is_within_bounds(&self) -> bool {
        self.name.len() <= super::MAX_NAME_LEN
            && self.labels.len() <= super::MAX_LABELS
            && self.labels.iter().all(|(key, value)| {
                key.len() <= super::MAX_LABEL_LEN && value.len() <= super::MAX_LABEL_LEN
            })
            && self.labels.windows(2).all(|pair| pair[0].0 < pair[1].0)
    }

    /// The value of label `name`, if the series has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl std::fmt::Display for SeriesKey {
    /// `name`, or `name{a="1",b="2"}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if self.labels.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (key, value)) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{key}={value:?}")?;
        }
        f.write_str("}")
    }
}

/// A series' value at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reading {
    /// A counter's total since the process started.
    Counter(u64),
    /// A gauge's current value.
    Gauge(f64),
    /// A histogram's buckets since the process started.
    Histogram(Buckets),
}

/// A histogram: how many observations fell at or below each bound (not cumulative:
/// `counts[i]` is the observations in `(bounds[i-1], bounds[i]]`, and the last count,
/// one past the bounds, the observations above the last bound), their sum and count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Buckets {
    /// Upper bounds, increasing.
    pub bounds: Vec<f64>,
    /// `bounds.len() + 1` counts.
    pub counts: Vec<u64>,
    /// The sum of every observation.
    pub sum: f64,
}

impl Buckets {
    /// Empty buckets with these bounds.
    pub(crate) fn empty(bounds: &[f64]) -> Buckets {
        Buckets {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// How many observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other`'s observations; `false` (and nothing added) when the bounds differ.
    pub(crate) fn merge(&mut self, other: &Buckets) -> bool {
        if self.bounds != other.bounds || other.counts.len() != self.counts.len() {
            return false;
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
        self.sum += other.sum;
        true
    }

    /// The observations in `self` that are not in `earlier` (the same histogram read
    /// before); `None` when the bounds differ.
    pub(crate) fn since(&self, earlier: &Buckets) -> Option<Buckets> {
        if self.bounds != earlier.bounds || self.counts.len() != earlier.counts.len() {
            return None;
        }
        Some(Buckets {
            bounds: self.bounds.clone(),
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(now, before)| now.saturating_sub(*before))
                .collect(),
            sum: self.sum - earlier.sum,
        })
    }

    /// The value below which a fraction `q` (0..=1) of the observations fall, estimated
    /// by linear interpolation inside the bucket (as PromQL's `histogram_quantile`);
    /// `None` without observations. Above the last bound it answers the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, count) in self.counts.iter().enumerate() {
            let upto = below + count;
            if (upto as f64) >= rank && *count > 0 {
                let Some(&upper) = self.bounds.get(i) else {
                    return self.bounds.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let within = (rank - below as f64) / *count as f64;
                return Some(lower + (upper - lower) * within);
            }
            below = upto;
        }
        self.bounds.last().copied()
    }
}

impl Reading {
    /// Whether a histogram's layout is one wix-cluster makes: at most
    /// [`super::MAX_BUCKETS`] finite, increasing bounds and one count more than
    /// bounds. Counters and gauges always are.
    pub(crate) fn is_within_bounds(&self) -> bool {
        match self {
            Reading::Histogram(buckets) => {
                buckets.bounds.len() <= super::MAX_BUCKETS
                    && buckets.counts.len() == buckets.bounds.len() + 1
                    && buckets.bounds.iter().all(|bound| bound.is_finite())
                    && buckets.bounds.windows(2).all(|pair| pair[0] < pair[1])
            }
            Reading::Counter(_) | Reading::Gauge(_) => true,
        }
    }
}

/// A process's changes since its last batch: sent every [`super::FLUSH_INTERVAL`] by
/// each worker (nothing when nothing changed), and once more as it exits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Batch {
    /// The sending process's generation in its slot. The master does not trust it: it
    /// takes slot and generation from the channel the batch arrived on.
    pub(crate) generation: u32,
    /// Series whose value changed, with their new value.
    pub(crate) series: Vec<(SeriesKey, Reading)>,
    /// Descriptions given with `describe_*!`, each sent once: `(name, help)`.
    pub(crate) descriptions: Vec<(String, String)>,
}

impl Exchange for Batch {
    const TOPIC: &'static str = "wix_cluster.metrics";
    type Response = ();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let buckets = Buckets {
            bounds: vec![0.1, 0.2, 0.4],
            counts: vec![0, 10, 10, 0],
            sum: 0.0,
        };
        assert_eq!(buckets.quantile(0.5), Some(0.2));
        let p25 = buckets.quantile(0.25).unwrap_or_default();
        assert!((p25 - 0.15).abs() < 1e-9, "{p25}");
        assert_eq!(Buckets::empty(&[1.0]).quantile(0.5), None);
    }

    #[test]
    fn merging_adds_bucket_by_bucket_and_refuses_other_bounds() {
        let mut a = Buckets {
            bounds: vec![1.0],
            counts: vec![1, 2],
            sum: 3.0,
        };
        let b = a.clone();
        assert!(a.merge(&b));
        assert_eq!(a.counts, vec![2, 4]);
        assert_eq!(a.count(), 6);
        assert!(!a.merge(&Buckets::empty(&[2.0])));
        assert_eq!(a.since(&b).map(|d| d.counts), Some(vec![1, 2]));
    }
}
