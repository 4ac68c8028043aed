//! The master's view of every process's metrics: each process's segment (`layout.rs`)
//! and the series placed in it, read whenever the view is asked for; and the totals of
//! processes that ended, so that a cluster's counters and histograms never go
//! backwards when a worker dies or is replaced.
//!
//! A process that ended keeps its segment for [`SETTLE`] (a declaration may still be
//! on its way), then its last readings are folded into the retired totals and the
//! segment is unmapped. Bounded: at most [`MAX_SERIES_PER_PROCESS`] series a process,
//! [`MAX_RETIRED_SERIES`] retired series; past them declarations are dropped and
//! counted.
//!
//! Nothing read from a segment is trusted: a series is placed only inside the segment,
//! after the ones before it; a counter or a histogram bucket that reads lower than it
//! did (a worker that wrote over its cells) is frozen at its last good reading, with a
//! warning, so that no sum ever goes backwards.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::layout::{DROPPED_CELL, FIRST_SERIES_CELL, cells_of, read_onto};
use super::series::{Buckets, Declarations, Reading, SeriesKey};
use super::{DROPPED_TOTAL, MAX_HELP_LEN, MAX_NAME_LEN, MAX_SERIES_PER_PROCESS, count_dropped};
use crate::WorkerId;
use crate::shm::Segment;

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

/// A series of a process: where it lies in the segment, and its latest reading.
struct Series {
    /// Its key, shared with every other process's series of the same key.
    key: Arc<SeriesKey>,
    /// Its first cell; it takes [`cells_of`] its reading.
    at: u32,
    reading: Reading,
    /// Whether it is still read: `false` once it went backwards (frozen).
    read: bool,
}

struct Process {
    /// Where the process's values are; `None` once it could not be trusted at all.
    segment: Option<Arc<Segment>>,
    /// The process's count of dropped updates (in [`DROPPED_CELL`]).
    dropped: u64,
    /// The series placed in the segment, in the order placed (frozen ones included).
    series: Vec<Series>,
    /// The keys of `series`: a key is placed once.
    keys: HashSet<Arc<SeriesKey>>,
    /// The first cell the next series may use.
    next: usize,
    ended_at: Option<Instant>,
    /// Whether a series of it was frozen already (warned once per process).
    warned: bool,
}

impl Process {
    fn new(segment: Option<Arc<Segment>>) -> Process {
        Process {
            segment,
            dropped: 0,
            series: Vec::new(),
            keys: HashSet::new(),
            next: FIRST_SERIES_CELL,
            ended_at: None,
            warned: false,
        }
    }

    /// Reads every series from the segment; one that went backwards is frozen.
    fn refresh(&mut self, origin: Origin, generation: u32) {
        let Some(segment) = &self.segment else {
            return;
        };
        let cells = segment.cells();
        let mut scratch = Vec::new();
        let dropped = cells
            .get(DROPPED_CELL)
            .map_or(0, |cell| cell.load(std::sync::atomic::Ordering::Relaxed));
        self.dropped = self.dropped.max(dropped);
        for series in self.series.iter_mut().filter(|series| series.read) {
            let at = series.at as usize;
            let read = cells
                .get(at..at + cells_of(&series.reading))
                .is_some_and(|range| read_onto(range, &mut series.reading, &mut scratch));
            if read {
                continue;
            }
            series.read = false;
            count_dropped();
            if !std::mem::replace(&mut self.warned, true) {
                tracing::warn!(
                    "worker {origin} (generation {generation}) wrote over its metrics: the \
                     series {} went backwards, and is no longer read (nor any other that does)",
                    series.key.name
                );
            }
        }
    }
}

/// The series of a process's count of dropped updates.
fn dropped_key() -> SeriesKey {
    SeriesKey::new(DROPPED_TOTAL, Vec::new())
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
    /// Every key a live process's series has, once: the processes share them (a
    /// cluster's workers mostly have the same series).
    interned: HashSet<Arc<SeriesKey>>,
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
        match self.counters.get_mut(series) {
            Some(sum) => *sum = sum.saturating_add(value),
            None => {
                self.counters.insert(series.clone(), value);
            }
        }
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
    /// `origin`'s process of `generation` writes its values into `segment` (a worker
    /// about to start, or this process's own recorder).
    pub(crate) fn attach(&mut self, origin: Origin, generation: u32, segment: Arc<Segment>) {
        self.settle();
        let key = (origin, generation);
        if !self.folded.contains(&key) {
            self.processes.insert(key, Process::new(Some(segment)));
        }
    }

    /// Takes what `origin`'s process of `generation` declares (as the channel it came
    /// on says). Every bound is checked again: what breaks one is dropped and counted.
    pub(crate) fn declare(&mut self, origin: Origin, generation: u32, declared: Declarations) {
        self.settle();
        let key = (origin, generation);
        if self.folded.contains(&key) {
            return;
        }
        for (name, help) in declared.descriptions {
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
        // A process without a segment (none was attached) has nothing to read.
        let Some(process) = self.processes.get_mut(&key) else {
            for _ in &declared.series {
                count_dropped();
            }
            return;
        };
        let cells = process
            .segment
            .as_ref()
            .map_or(0, |segment| segment.cells().len());
        for placed in declared.series {
            let at = placed.at as usize;
            let end = at.saturating_add(placed.kind.cells());
            let fits = at >= process.next && end <= cells;
            let full = process.series.len() >= MAX_SERIES_PER_PROCESS;
            if !fits
                || full
                || !placed.key.is_within_bounds()
                || !placed.kind.is_within_bounds()
                || placed.key.name == DROPPED_TOTAL
                || process.keys.contains(&placed.key)
            {
                count_dropped();
                continue;
            }
            let key = match self.interned.get(&placed.key) {
                Some(key) => key.clone(),
                None => {
                    let key = Arc::new(placed.key);
                    self.interned.insert(key.clone());
                    key
                }
            };
            process.next = end;
            process.keys.insert(key.clone());
            process.series.push(Series {
                key,
                at: placed.at,
                reading: placed.kind.zero(),
                read: true,
            });
        }
        process.refresh(origin, generation);
    }

    /// Reads every live process's segment.
    fn refresh(&mut self) {
        for ((origin, generation), process) in &mut self.processes {
            process.refresh(*origin, *generation);
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
            let process = self
                .processes
                .entry(key)
                .or_insert_with(|| Process::new(None));
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
        if due.is_empty() {
            return;
        }
        for key in due {
            if let Some(mut process) = self.processes.remove(&key) {
                // Its last values, then the segment goes.
                process.refresh(key.0, key.1);
                self.add_retired(&dropped_key(), Total::Counter(process.dropped));
                for series in process.series {
                    self.retire(&series.key, series.reading);
                }
            }
            if self.folded.len() >= FOLDED_KEPT {
                self.folded.pop_front();
            }
            self.folded.push_back(key);
        }
        // Keys no live process has any more (each process's list and key set hold one).
        self.interned.retain(|key| Arc::strong_count(key) > 1);
    }

    fn retire(&mut self, series: &SeriesKey, reading: Reading) {
        match reading {
            Reading::Counter(value) => self.add_retired(series, Total::Counter(value)),
            Reading::Histogram(buckets) => {
                let series = place(&mut self.layouts, series, &buckets).into_owned();
                self.add_retired(&series, Total::Histogram(buckets));
            }
            Reading::Gauge(_) => {}
        }
    }

    fn add_retired(&mut self, series: &SeriesKey, total: Total) {
        if let Some(known) = self.retired.get_mut(series) {
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
            self.retired.insert(series.clone(), total);
        } else {
            count_dropped();
        }
    }

    /// The cluster's metrics now.
    pub(crate) fn view(&mut self) -> View {
        self.settle();
        self.refresh();
        let mut view = View {
            descriptions: self.descriptions.clone(),
            ..View::default()
        };
        for (series, total) in self.retired.iter().chain(&self.predecessor) {
            match total {
                Total::Counter(value) => view.add_counter(series, *value),
                Total::Histogram(buckets) => {
                    view.add_histogram(&place(&mut self.layouts, series, buckets), buckets);
                }
            }
        }
        let newest = self.newest_live();
        // In a fixed order (oldest process first), so that the first layout seen of a
        // series never depends on a map's order.
        let mut keys: Vec<&ProcessKey> = self.processes.keys().collect();
        keys.sort();
        let dropped = dropped_key();
        for key in keys {
            let process = &self.processes[key];
            view.add_counter(&dropped, process.dropped);
            for series in &process.series {
                match &series.reading {
                    Reading::Counter(value) => view.add_counter(&series.key, *value),
                    Reading::Histogram(buckets) => {
                        view.add_histogram(
                            &place(&mut self.layouts, &series.key, buckets),
                            buckets,
                        );
                    }
                    Reading::Gauge(value) if newest.get(&key.0) == Some(&key.1) => {
                        view.gauges
                            .entry(SeriesKey::clone(&series.key))
                            .or_default()
                            .insert(key.0, *value);
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
    pub(crate) fn per_process(&mut self, name: &str) -> Vec<(ProcessKey, Buckets)> {
        self.refresh();
        let mut out = Vec::new();
        for (key, process) in &self.processes {
            let mut merged: Option<Buckets> = None;
            for series in &process.series {
                let Reading::Histogram(buckets) = &series.reading else {
                    continue;
                };
                if series.key.name != name {
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

/// The series under which `buckets` of `series` are summed: `series` itself when the
/// bounds are the ones first seen for it (recorded now in `layouts` if none were), else
/// `series` with [`LAYOUT_LABEL`] naming the bounds.
fn place<'a>(
    layouts: &mut HashMap<SeriesKey, Vec<f64>>,
    series: &'a SeriesKey,
    buckets: &Buckets,
) -> Cow<'a, SeriesKey> {
    if series.label(LAYOUT_LABEL).is_some() {
        return Cow::Borrowed(series);
    }
    let room = layouts.len() < MAX_RETIRED_SERIES;
    let first = match layouts.get(series) {
        Some(bounds) => bounds,
        None if room => layouts
            .entry(series.clone())
            .or_insert_with(|| buckets.bounds.clone()),
        None => return Cow::Owned(with_layout(series, &buckets.bounds)),
    };
    if *first == buckets.bounds {
        Cow::Borrowed(series)
    } else {
        Cow::Owned(with_layout(series, &buckets.bounds))
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
    use crate::metrics::layout::{Kind, Placed, SEGMENT_CELLS};
    use std::sync::atomic::Ordering;

    /// A process as the master sees it: its segment, attached, and where the next
    /// series goes.
    struct Fake {
        origin: Origin,
        generation: u32,
        segment: Arc<Segment>,
        next: usize,
    }

    impl Fake {
        fn attach(all: &mut Aggregate, origin: Origin, generation: u32) -> Fake {
            let segment = Arc::new(Segment::local(SEGMENT_CELLS).unwrap());
            all.attach(origin, generation, segment.clone());
            Fake {
                origin,
                generation,
                segment,
                next: FIRST_SERIES_CELL,
            }
        }

        /// Places and declares a series; its first cell.
        fn place(&mut self, all: &mut Aggregate, key: &SeriesKey, kind: Kind) -> usize {
            let at = self.next;
            self.next += kind.cells();
            all.declare(
                self.origin,
                self.generation,
                Declarations {
                    series: vec![Placed {
                        key: key.clone(),
                        kind,
                        at: at as u32,
                    }],
                    descriptions: Vec::new(),
                },
            );
            at
        }

        fn set(&self, at: usize, value: u64) {
            self.segment.cells()[at].store(value, Ordering::Relaxed);
        }

        fn counter(&mut self, all: &mut Aggregate, key: &SeriesKey, value: u64) -> usize {
            let at = self.place(all, key, Kind::Counter);
            self.set(at, value);
            at
        }

        fn histogram(
            &mut self,
            all: &mut Aggregate,
            key: &SeriesKey,
            bounds: &[f64],
            counts: &[u64],
        ) {
            let at = self.place(
                all,
                key,
                Kind::Histogram {
                    bounds: bounds.to_vec(),
                },
            );
            for (i, count) in counts.iter().enumerate() {
                self.set(at + i, *count);
            }
            self.set(at + bounds.len() + 1, 1f64.to_bits());
        }
    }

    fn fold_now(all: &mut Aggregate, key: ProcessKey) {
        if let Some(process) = all.processes.get_mut(&key) {
            process.ended_at = Some(Instant::now() - SETTLE);
        }
    }

    #[test]
    fn values_are_read_from_the_segment_and_a_dead_processs_stay_in_the_sums() {
        let mut all = Aggregate::default();
        let jobs = SeriesKey::new("jobs", vec![]);
        let depth = SeriesKey::new("depth", vec![]);
        let one = Origin::Worker(WorkerId(1));
        let mut first = Fake::attach(&mut all, one, 0);
        let at = first.counter(&mut all, &jobs, 5);
        let gauge = first.place(&mut all, &depth, Kind::Gauge);
        first.set(gauge, 3f64.to_bits());
        Fake::attach(&mut all, Origin::Worker(WorkerId(2)), 0).counter(&mut all, &jobs, 2);
        assert_eq!(all.view().counters[&jobs], 7);
        assert_eq!(all.view().gauges[&depth][&one], 3.0);
        // Current at once: no flush between a write and a read.
        first.set(at, 6);
        assert_eq!(all.view().counters[&jobs], 8);
        // It is killed: what it wrote last still counts, also once folded.
        first.set(at, 9);
        all.ended(one, 0);
        Fake::attach(&mut all, one, 1).counter(&mut all, &jobs, 1);
        let view = all.view();
        assert_eq!(view.counters[&jobs], 12);
        assert!(!view.gauges.contains_key(&depth));
        fold_now(&mut all, (one, 0));
        assert_eq!(all.view().counters[&jobs], 12);
        assert!(!all.processes.contains_key(&(one, 0)));
        // A late declaration of the folded process is ignored.
        first.counter(&mut all, &SeriesKey::new("late", vec![]), 50);
        assert!(
            !all.view()
                .counters
                .contains_key(&SeriesKey::new("late", vec![]))
        );
    }

    #[test]
    fn processes_share_a_key_and_it_goes_with_the_last_of_them() {
        let mut all = Aggregate::default();
        let jobs = SeriesKey::new("jobs", vec![("kind".into(), "a".into())]);
        let (one, two) = (Origin::Worker(WorkerId(1)), Origin::Worker(WorkerId(2)));
        Fake::attach(&mut all, one, 0).counter(&mut all, &jobs, 1);
        Fake::attach(&mut all, two, 0).counter(&mut all, &jobs, 2);
        assert_eq!(all.interned.len(), 1);
        let shared: Vec<&Arc<SeriesKey>> = all
            .processes
            .values()
            .flat_map(|process| process.series.iter().map(|series| &series.key))
            .collect();
        assert!(Arc::ptr_eq(shared[0], shared[1]));
        all.ended(one, 0);
        fold_now(&mut all, (one, 0));
        assert_eq!(all.view().counters[&jobs], 3);
        assert_eq!(all.interned.len(), 1);
        all.ended(two, 0);
        fold_now(&mut all, (two, 0));
        assert_eq!(all.view().counters[&jobs], 3);
        assert!(all.interned.is_empty(), "no live process has the key");
    }

    #[test]
    fn a_declaration_that_comes_after_its_processs_end_is_read_and_folded_with_it() {
        let mut all = Aggregate::default();
        let jobs = SeriesKey::new("jobs", vec![]);
        let one = Origin::Worker(WorkerId(1));
        let mut fake = Fake::attach(&mut all, one, 3);
        // Killed before the master read its declaration.
        all.ended(one, 3);
        fake.counter(&mut all, &jobs, 2);
        assert_eq!(all.view().counters[&jobs], 2);
        assert!(all.newest_live().is_empty());
        fold_now(&mut all, (one, 3));
        assert_eq!(all.view().counters[&jobs], 2);
        assert!(all.processes.is_empty());
    }

    #[test]
    fn series_outside_the_segment_or_overlapping_are_refused() {
        let mut all = Aggregate::default();
        let one = Origin::Worker(WorkerId(1));
        let fake = Fake::attach(&mut all, one, 0);
        let placed = |name: &str, at: usize| Placed {
            key: SeriesKey::new(name, vec![]),
            kind: Kind::Histogram {
                bounds: vec![1.0, 2.0],
            },
            at: at as u32,
        };
        all.declare(
            one,
            0,
            Declarations {
                series: vec![
                    placed("past_the_end", SEGMENT_CELLS - 2),
                    placed("in_the_header", 0),
                    placed("fine", FIRST_SERIES_CELL),
                    placed("overlapping", FIRST_SERIES_CELL + 1),
                    placed("fine", FIRST_SERIES_CELL + 10),
                ],
                descriptions: Vec::new(),
            },
        );
        fake.set(FIRST_SERIES_CELL, 4);
        let view = all.view();
        let names: Vec<&str> = view.histograms.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["fine"]);
        assert_eq!(view.histograms[&SeriesKey::new("fine", vec![])].count(), 4);
        assert_eq!(view.counters[&SeriesKey::new(DROPPED_TOTAL, vec![])], 0);
    }

    #[test]
    fn a_series_that_goes_backwards_is_frozen_and_no_sum_does() {
        let mut all = Aggregate::default();
        let jobs = SeriesKey::new("jobs", vec![]);
        let lat = SeriesKey::new("lat", vec![]);
        let one = Origin::Worker(WorkerId(1));
        let mut fake = Fake::attach(&mut all, one, 0);
        let at = fake.counter(&mut all, &jobs, 10);
        fake.histogram(&mut all, &lat, &[1.0], &[3, 4]);
        assert_eq!(all.view().counters[&jobs], 10);
        // Garbage over every cell: lower values, and a count past a u64.
        fake.set(at, 1);
        fake.set(at + 1, u64::MAX);
        fake.set(at + 2, u64::MAX);
        let view = all.view();
        assert_eq!(view.counters[&jobs], 10);
        assert_eq!(view.histograms[&lat].count(), 7);
        // Frozen for good, even once the cells read higher again.
        fake.set(at, 1000);
        assert_eq!(all.view().counters[&jobs], 10);
        assert!(
            all.processes[&(one, 0)]
                .series
                .iter()
                .all(|series| !series.read)
        );
    }

    #[test]
    fn histograms_of_another_layout_are_summed_apart_and_nothing_goes_backwards() {
        let mut all = Aggregate::default();
        let lat = SeriesKey::new("lat", vec![]);
        let (one, two) = (Origin::Worker(WorkerId(1)), Origin::Worker(WorkerId(2)));
        let old = [0.1, 1.0];
        let new = [0.5, 5.0];
        // Slot 2 runs the new build before slot 1 is rolled.
        Fake::attach(&mut all, one, 0).histogram(&mut all, &lat, &old, &[1, 1, 1]);
        Fake::attach(&mut all, two, 1).histogram(&mut all, &lat, &new, &[2, 0, 0]);
        let other = with_layout(&lat, &new);
        let view = all.view();
        assert_eq!(view.histograms[&lat].count(), 3);
        assert_eq!(view.histograms[&other].count(), 2);
        assert_eq!(other.label(LAYOUT_LABEL), Some("0.5,5"));
        // Slot 2's process ends first: retired, its layout still apart.
        all.ended(two, 1);
        fold_now(&mut all, (two, 1));
        Fake::attach(&mut all, two, 2).histogram(&mut all, &lat, &new, &[1, 0, 0]);
        let view = all.view();
        assert_eq!(view.histograms[&lat].count(), 3);
        assert_eq!(view.histograms[&other].count(), 3);
        // Slot 1 rolled too: its old-layout total stays where it was.
        all.ended(one, 0);
        fold_now(&mut all, (one, 0));
        Fake::attach(&mut all, one, 3).histogram(&mut all, &lat, &new, &[4, 0, 0]);
        let view = all.view();
        assert_eq!(view.histograms[&lat].count(), 3);
        assert_eq!(view.histograms[&other].count(), 7);
        // A new master goes on from the same series.
        let mut next = Aggregate::default();
        next.set_predecessor(all.totals());
        Fake::attach(&mut next, one, 0).histogram(&mut next, &lat, &new, &[1, 0, 0]);
        let view = next.view();
        assert_eq!(view.histograms[&lat].count(), 3);
        assert_eq!(view.histograms[&other].count(), 8);
    }

    #[test]
    fn handed_totals_add_to_the_new_masters_and_the_latest_replaces_the_last() {
        let mut old = Aggregate::default();
        let jobs = SeriesKey::new("jobs", vec![]);
        let one = Origin::Worker(WorkerId(1));
        let mut worker = Fake::attach(&mut old, one, 0);
        let at = worker.counter(&mut old, &jobs, 4);
        let mut new = Aggregate::default();
        new.set_predecessor(old.totals());
        Fake::attach(&mut new, one, 0).counter(&mut new, &jobs, 1);
        assert_eq!(new.view().counters[&jobs], 5);
        // The old workers went on counting until they drained.
        worker.set(at, 9);
        new.set_predecessor(old.totals());
        assert_eq!(new.view().counters[&jobs], 10);
    }
}
