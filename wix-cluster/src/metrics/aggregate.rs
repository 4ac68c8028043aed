//! The master's view of every process's metrics: the latest readings of each process
//! (by origin and generation), and the totals of processes that ended, so that a
//! cluster's counters and histograms never go backwards when a worker dies or is
//! replaced.
//!
//! A process that ended keeps its readings for [`SETTLE`] (its last batch may still be
//! on its way), then they are folded into the retired totals. Bounded: at most
//! [`MAX_SERIES_PER_PROCESS`] series a process, [`MAX_RETIRED_SERIES`] retired series;
//! past them readings are dropped and counted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::series::{Batch, Buckets, Reading, SeriesKey};
use super::{MAX_HELP_LEN, MAX_NAME_LEN, MAX_SERIES_PER_PROCESS, count_dropped};
use crate::WorkerId;

/// How long an ended process's readings wait for a late batch before they are folded.
const SETTLE: Duration = Duration::from_secs(2);
/// The most series the retired totals keep.
pub const MAX_RETIRED_SERIES: usize = 10_000;
/// How many folded processes are remembered (their late batches are ignored).
const FOLDED_KEPT: usize = 1024;

/// Which process a reading came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// The master process (plugins, the master's own instrumentation).
    Master,
    /// A worker slot (0 for the single process).
    Worker(WorkerId),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Master => f.write_str("master"),
            Origin::Worker(id) => write!(f, "{id}"),
        }
    }
}

/// A process: its origin and generation.
pub(crate) type ProcessKey = (Origin, u32);

/// A total that outlives its process: a counter's or a histogram's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Total {
    Counter(u64),
    Histogram(Buckets),
}

struct Process {
    series: HashMap<SeriesKey, Reading>,
    ended_at: Option<Instant>,
}

/// Everything the master knows about the cluster's metrics.
#[derive(Default)]
pub(crate) struct Aggregate {
    processes: HashMap<ProcessKey, Process>,
    retired: BTreeMap<SeriesKey, Total>,
    /// The latest totals of the master this one replaced (an upgrade).
    predecessor: BTreeMap<SeriesKey, Total>,
    folded: VecDeque<ProcessKey>,
    descriptions: BTreeMap<String, String>,
    /// The bucket bounds of each histogram series as first seen: readings with other
    /// bounds (a build with other `histogram_buckets`) are summed under the series with
    /// the label [`LAYOUT_LABEL`] added, so that no series ever mixes two layouts or
    /// changes layout (and so never goes backwards). At most [`MAX_RETIRED_SERIES`].
    layouts: HashMap<SeriesKey, Vec<f64>>,
}

/// The label that tells a histogram's other bucket layouts apart: its bounds, joined
/// by `,`.
pub const LAYOUT_LABEL: &str = "wix_cluster_buckets";

/// A copy of the cluster's metrics, as `/metrics` and the `Statsd` plugin show them.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Counters, summed over every process that ever reported them.
    pub counters: BTreeMap<SeriesKey, u64>,
    /// Histograms, merged bucket by bucket over every process.
    pub histograms: BTreeMap<SeriesKey, Buckets>,
    /// Gauges of the newest live process of each origin.
    pub gauges: BTreeMap<SeriesKey, BTreeMap<Origin, f64>>,
    /// Descriptions given with `describe_*!`, by metric name.
    pub descriptions: BTreeMap<String, String>,
}

impl View {
    /// Adds `value` to the counter `series`.
    fn add_counter(&mut self, series: &SeriesKey, value: u64) {
        let sum = self.counters.entry(series.clone()).or_default();
        *sum = sum.saturating_add(value);
    }

    /// Merges `buckets` into the histogram `series` (a histogram with other bounds is
    /// left out of the sum).
    fn add_histogram(&mut self, series: &SeriesKey, buckets: &Buckets) {
        match self.histograms.get_mut(series) {
            Some(sum) => {
                sum.merge(buckets);
            }
            None => {
                self.histograms.insert(series.clone(), buckets.clone());
            }
        }
    }
}

impl Aggregate {
    /// Takes a batch from `origin`'s process of `generation` (as the channel it came
    /// on says). Every bound is checked again: what breaks one is dropped and counted.
    pub(crate) fn ingest(&mut self, origin: Origin, generation: u32, batch: Batch) {
        self.settle();
        let key = (origin, generation);
        if self.folded.contains(&key) {
            return;
        }
        for (name, help) in batch.descriptions {
            if name.len() > MAX_NAME_LEN {
                count_dropped();
                continue;
            }
            if self.descriptions.len() < MAX_SERIES_PER_PROCESS
                || self.descriptions.contains_key(&name)
            {
                let help = if help.chars().count() > MAX_HELP_LEN {
                    help.chars().take(MAX_HELP_LEN).collect()
                } else {
                    help
                };
                self.descriptions.insert(name, help);
            }
        }
        let process = self.processes.entry(key).or_insert_with(|| Process {
            series: HashMap::new(),
            ended_at: None,
        });
        for (series, reading) in batch.series {
            if !series.is_within_bounds() || !reading.is_within_bounds() {
                count_dropped();
                continue;
            }
            // The process's own count of drops is always kept (one more series).
            let full = process.series.len() >= MAX_SERIES_PER_PROCESS
                && series.name != super::DROPPED_TOTAL;
            if full && !process.series.contains_key(&series) {
                count_dropped();
                continue;
            }
            process.series.insert(series, reading);
        }
    }

    /// `origin`'s process of `generation` ended: its readings stay for [`SETTLE`],
    /// then join the retired totals.
    ///
    /// A process whose first batch has not come yet gets an empty entry that ended
    /// now: a batch arriving after its end (the channel's reader and the exit are
    /// handled apart) lands in it and is folded with it, rather than making an entry
    /// that never ends.
    pub(crate) fn ended(&mut self, origin: Origin, generation: u32) {
        let key = (origin, generation);
        if !self.folded.contains(&key) {
            let process = self.processes.entry(key).or_insert_with(|| Process {
                series: HashMap::new(),
                ended_at: None,
            });
            process.ended_at.get_or_insert_with(Instant::now);
        }
        self.settle();
    }

    /// Folds the processes that ended long enough ago.
    fn settle(&mut self) {
        let due: Vec<ProcessKey> = self
            .processes
            .iter()
            .filter(|(_, process)| process.ended_at.is_some_and(|at| at.elapsed() >= SETTLE))
            .map(|(key, _)| *key)
            .collect();
        for key in due {
            if let Some(process) = self.processes.remove(&key) {
                for (series, reading) in process.series {
                    self.retire(series, reading);
                }
            }
            if self.folded.len() >= FOLDED_KEPT {
                self.folded.pop_front();
            }
            self.folded.push_back(key);
        }
    }

    fn retire(&mut self, series: SeriesKey, reading: Reading) {
        let (series, total) = match reading {
            Reading::Counter(value) => (series, Total::Counter(value)),
            Reading::Histogram(buckets) => {
                (self.place(&series, &buckets), Total::Histogram(buckets))
            }
            Reading::Gauge(_) => return,
        };
        self.add_retired(series, total);
    }

    fn add_retired(&mut self, series: SeriesKey, total: Total) {
        if let Some(known) = self.retired.get_mut(&series) {
            match (known, total) {
                (Total::Counter(sum), Total::Counter(value)) => *sum = sum.saturating_add(value),
                (Total::Histogram(sum), Total::Histogram(buckets)) => {
                    if !sum.merge(&buckets) {
                        count_dropped();
                    }
                }
                _ => count_dropped(),
            }
        } else if self.retired.len() < MAX_RETIRED_SERIES {
            self.retired.insert(series, total);
        } else {
            count_dropped();
        }
    }

    /// The series under which `buckets` of `series` are summed: `series` itself when
    /// the bounds are the ones first seen for it (recorded now if none were), else
    /// `series` with [`LAYOUT_LABEL`] naming the bounds.
    fn place(&mut self, series: &SeriesKey, buckets: &Buckets) -> SeriesKey {
        if series.label(LAYOUT_LABEL).is_some() {
            return series.clone();
        }
        let room = self.layouts.len() < MAX_RETIRED_SERIES;
        let first = match self.layouts.get(series) {
            Some(bounds) => bounds,
            None if room => self
                .layouts
                .entry(series.clone())
                .or_insert_with(|| buckets.bounds.clone()),
            None => return with_layout(series, &buckets.bounds),
        };
        if *first == buckets.bounds {
            series.clone()
        } else {
            with_layout(series, &buckets.bounds)
        }
    }

    /// The cluster's metrics now.
    pub(crate) fn view(&mut self) -> View {
        self.settle();
        let mut view = View {
            descriptions: self.descriptions.clone(),
            ..View::default()
        };
        let handed: Vec<(SeriesKey, Total)> = self
            .retired
            .iter()
            .chain(&self.predecessor)
            .map(|(series, total)| (series.clone(), total.clone()))
            .collect();
        for (series, total) in handed {
            match total {
                Total::Counter(value) => view.add_counter(&series, value),
                Total::Histogram(buckets) => {
                    let series = self.place(&series, &buckets);
                    view.add_histogram(&series, &buckets);
                }
            }
        }
        let newest = self.newest_live();
        // In a fixed order (oldest process first), so that the first layout seen of a
        // series never depends on a map's order.
        let mut keys: Vec<ProcessKey> = self.processes.keys().copied().collect();
        keys.sort();
        for key in keys {
            let readings: Vec<(SeriesKey, Reading)> = match self.processes.get(&key) {
                Some(process) => process
                    .series
                    .iter()
                    .map(|(series, reading)| (series.clone(), reading.clone()))
                    .collect(),
                None => continue,
            };
            for (series, reading) in readings {
                match reading {
                    Reading::Counter(value) => view.add_counter(&series, value),
                    Reading::Histogram(buckets) => {
                        let series = self.place(&series, &buckets);
                        view.add_histogram(&series, &buckets);
                    }
                    Reading::Gauge(value) if newest.get(&key.0) == Some(&key.1) => {
                        view.gauges.entry(series).or_default().insert(key.0, value);
                    }
                    Reading::Gauge(_) => {}
                }
            }
        }
        view
    }

    /// The newest generation of each origin with a live process.
    fn newest_live(&self) -> HashMap<Origin, u32> {
        let mut newest: HashMap<Origin, u32> = HashMap::new();
        for ((origin, generation), process) in &self.processes {
            if process.ended_at.is_none() {
                let seen = newest.entry(*origin).or_insert(*generation);
                *seen = (*seen).max(*generation);
            }
        }
        newest
    }

    /// The histogram `name` of each process that reported it, its label sets merged:
    /// what the dashboard turns into requests per second and latency per worker.
    pub(crate) fn per_process(&self, name: &str) -> Vec<(ProcessKey, Buckets)> {
        let mut out = Vec::new();
        for (key, process) in &self.processes {
            let mut merged: Option<Buckets> = None;
            for (series, reading) in &process.series {
                let Reading::Histogram(buckets) = reading else {
                    continue;
                };
                if series.name != name {
                    continue;
                }
                match &mut merged {
                    Some(sum) => {
                        sum.merge(buckets);
                    }
                    None => merged = Some(buckets.clone()),
                }
            }
            if let Some(merged) = merged {
                out.push((*key, merged));
            }
        }
        out
    }

    /// Every total that outlives its process, as of now (for a new master).
    pub(crate) fn totals(&mut self) -> Vec<(SeriesKey, Total)> {
        let view = self.view();
        let counters = view
            .counters
            .into_iter()
            .map(|(series, value)| (series, Total::Counter(value)));
        let histograms = view
            .histograms
            .into_iter()
            .map(|(series, buckets)| (series, Total::Histogram(buckets)));
        counters.chain(histograms).collect()
    }

    /// Takes the latest totals of the master this one replaces, in place of the ones
    /// it sent before (at most [`MAX_RETIRED_SERIES`] series).
    pub(crate) fn set_predecessor(&mut self, totals: Vec<(SeriesKey, Total)>) {
        self.predecessor = totals.into_iter().take(MAX_RETIRED_SERIES).collect();
        // The old master's layouts are the series' history: they stay first.
        for (series, total) in &self.predecessor {
            if let Total::Histogram(buckets) = total {
                if series.label(LAYOUT_LABEL).is_none()
                    && (self.layouts.len() < MAX_RETIRED_SERIES
                        || self.layouts.contains_key(series))
                {
                    self.layouts.insert(series.clone(), buckets.bounds.clone());
                }
            }
        }
    }
}

/// `series` with [`LAYOUT_LABEL`] naming `bounds`.
fn with_layout(series: &SeriesKey, bounds: &[f64]) -> SeriesKey {
    let layout = bounds
        .iter()
        .map(|bound| bound.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut labels = series.labels.clone();
    labels.push((LAYOUT_LABEL.to_owned(), layout));
    SeriesKey::new(series.name.clone(), labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(generation: u32, series: Vec<(SeriesKey, Reading)>) -> Batch {
        Batch {
            generation,
            series,
            descriptions: Vec::new(),
        }
    }

    #[test]
    fn a_dead_processs_counts_stay_in_the_sums_and_its_gauges_go() {
        let mut all = Aggregate::default();
        let jobs = SeriesKey::new("jobs", vec![]);
        let depth = SeriesKey::new("depth", vec![]);
        let one = Origin::Worker(WorkerId(1));
        all.ingest(
            one,
            0,
            batch(
                0,
                vec![
                    (jobs.clone(), Reading::Counter(5)),
                    (depth.clone(), Reading::Gauge(3.0)),
                ],
            ),
        );
        all.ingest(
            Origin::Worker(WorkerId(2)),
            0,
            batch(0, vec![(jobs.clone(), Reading::Counter(2))]),
        );
        assert_eq!(all.view().counters[&jobs], 7);
        all.ended(one, 0);
        all.ingest(one, 1, batch(1, vec![(jobs.clone(), Reading::Counter(1))]));
        let view = all.view();
        assert_eq!(view.counters[&jobs], 8);
        assert!(!view.gauges.contains_key(&depth));
        // Folded after the settle time, the sum is the same.
        if let Some(process) = all.processes.get_mut(&(one, 0)) {
            process.ended_at = Some(Instant::now() - SETTLE);
        }
        assert_eq!(all.view().counters[&jobs], 8);
        assert!(!all.processes.contains_key(&(one, 0)));
        // A late batch of the folded process is ignored.
        all.ingest(one, 0, batch(0, vec![(jobs.clone(), Reading::Counter(50))]));
        assert_eq!(all.view().counters[&jobs], 8);
    }

    #[test]
    fn a_batch_that_comes_after_its_processs_end_is_folded_with_it() {
        let mut all = Aggregate::default();
        let jobs = SeriesKey::new("jobs", vec![]);
        let depth = SeriesKey::new("depth", vec![]);
        let one = Origin::Worker(WorkerId(1));
        // The exit is handled before the process's only batch is read.
        all.ended(one, 3);
        all.ingest(
            one,
            3,
            batch(
                3,
                vec![
                    (jobs.clone(), Reading::Counter(2)),
                    (depth.clone(), Reading::Gauge(1.0)),
                ],
            ),
        );
        let view = all.view();
        assert_eq!(view.counters[&jobs], 2);
        // Not live: its gauges are not shown.
        assert!(!view.gauges.contains_key(&depth));
        assert!(all.newest_live().is_empty());
        // And it is freed after the settle time, its count kept.
        if let Some(process) = all.processes.get_mut(&(one, 3)) {
            process.ended_at = Some(Instant::now() - SETTLE);
        }
        assert_eq!(all.view().counters[&jobs], 2);
        assert!(all.processes.is_empty());
    }

    fn histogram(bounds: &[f64], counts: Vec<u64>) -> Reading {
        Reading::Histogram(Buckets {
            bounds: bounds.to_vec(),
            counts,
            sum: 1.0,
        })
    }

    #[test]
    fn histograms_of_another_layout_are_summed_apart_and_nothing_goes_backwards() {
        let mut all = Aggregate::default();
        let lat = SeriesKey::new("lat", vec![]);
        let (one, two) = (Origin::Worker(WorkerId(1)), Origin::Worker(WorkerId(2)));
        let old = [0.1, 1.0];
        let new = [0.5, 5.0];
        // Slot 2 runs the new build before slot 1 is rolled.
        all.ingest(
            one,
            0,
            batch(0, vec![(lat.clone(), histogram(&old, vec![1, 1, 1]))]),
        );
        all.ingest(
            two,
            1,
            batch(1, vec![(lat.clone(), histogram(&new, vec![2, 0, 0]))]),
        );
        let other = with_layout(&lat, &new);
        let view = all.view();
        assert_eq!(view.histograms[&lat].count(), 3);
        assert_eq!(view.histograms[&other].count(), 2);
        assert_eq!(other.label(LAYOUT_LABEL), Some("0.5,5"));
        // Slot 2's process ends first: retired, its layout still apart.
        all.ended(two, 1);
        if let Some(process) = all.processes.get_mut(&(two, 1)) {
            process.ended_at = Some(Instant::now() - SETTLE);
        }
        all.ingest(
            two,
            2,
            batch(2, vec![(lat.clone(), histogram(&new, vec![1, 0, 0]))]),
        );
        let view = all.view();
        assert_eq!(view.histograms[&lat].count(), 3);
        assert_eq!(view.histograms[&other].count(), 3);
        // Slot 1 rolled too: its old-layout total stays where it was.
        all.ended(one, 0);
        if let Some(process) = all.processes.get_mut(&(one, 0)) {
            process.ended_at = Some(Instant::now() - SETTLE);
        }
        all.ingest(
            one,
            3,
            batch(3, vec![(lat.clone(), histogram(&new, vec![4, 0, 0]))]),
        );
        let view = all.view();
        assert_eq!(view.histograms[&lat].count(), 3);
        assert_eq!(view.histograms[&other].count(), 7);
        // A new master goes on from the same series.
        let mut next = Aggregate::default();
        next.set_predecessor(all.totals());
        next.ingest(
            one,
            0,
            batch(0, vec![(lat.clone(), histogram(&new, vec![1, 0, 0]))]),
        );
        let view = next.view();
        assert_eq!(view.histograms[&lat].count(), 3);
        assert_eq!(view.histograms[&other].count(), 8);
    }

    #[test]
    fn handed_totals_add_to_the_new_masters_and_the_latest_replaces_the_last() {
        let mut old = Aggregate::default();
        let jobs = SeriesKey::new("jobs", vec![]);
        let one = Origin::Worker(WorkerId(1));
        old.ingest(one, 0, batch(0, vec![(jobs.clone(), Reading::Counter(4))]));
        let mut new = Aggregate::default();
        new.set_predecessor(old.totals());
        new.ingest(one, 0, batch(0, vec![(jobs.clone(), Reading::Counter(1))]));
        assert_eq!(new.view().counters[&jobs], 5);
        // The old workers went on counting until they drained.
        old.ingest(one, 0, batch(0, vec![(jobs.clone(), Reading::Counter(9))]));
        new.set_predecessor(old.totals());
        assert_eq!(new.view().counters[&jobs], 10);
    }
}
