//! A series, its readings, and what a process's recorder tells the master about its
//! series.

use serde::{Deserialize, Serialize};

use super::layout::Placed;
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
        self.counts
            .iter()
            .fold(0u64, |sum, count| sum.saturating_add(*count))
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
            let upto = below.saturating_add(*count);
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

/// What a process's recorder tells the master: the series it placed in its segment
/// since it last told (each once), and descriptions given with `describe_*!`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Declarations {
    /// Series registered since the last declarations.
    pub(crate) series: Vec<Placed>,
    /// Descriptions, each sent once: `(name, help)`.
    pub(crate) descriptions: Vec<(String, String)>,
}

impl Declarations {
    /// Whether there is nothing to tell.
    pub(crate) fn is_empty(&self) -> bool {
        self.series.is_empty() && self.descriptions.is_empty()
    }
}

impl Exchange for Declarations {
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
