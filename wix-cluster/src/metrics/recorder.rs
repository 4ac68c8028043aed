//! The `metrics` facade's recorder every process of a cluster installs: `counter!`,
//! `gauge!` and `histogram!` (from the app or any library it uses) update atomics here;
//! [`Registry::take_changes`] reads what changed since the last call (a series just
//! registered counts as changed, so that it shows at 0), for a batch to the master.
//!
//! Bounded: at most [`MAX_SERIES_PER_PROCESS`] series (a name with one set of labels),
//! names of at most [`MAX_NAME_LEN`] bytes, [`MAX_LABELS`] labels of at most
//! [`MAX_LABEL_LEN`] bytes each; past them a handle does nothing and the attempt is
//! counted ([`super::dropped_updates`]).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

use super::series::{Buckets, Reading, SeriesKey};
use super::{
    MAX_HELP_LEN, MAX_LABEL_LEN, MAX_LABELS, MAX_NAME_LEN, MAX_SERIES_PER_PROCESS, count_dropped,
};

/// One process's series.
pub(crate) struct Registry {
    bounds: Vec<f64>,
    cells: Mutex<Cells>,
}

#[derive(Default)]
struct Cells {
    counters: HashMap<Key, Arc<CounterCell>>,
    gauges: HashMap<Key, Arc<GaugeCell>>,
    histograms: HashMap<Key, Arc<HistogramCell>>,
    /// Descriptions not sent yet, and how many were taken in all (bounded like series).
    new_descriptions: Vec<(String, String)>,
    descriptions: usize,
}

impl Cells {
    fn len(&self) -> usize {
        self.counters.len() + self.gauges.len() + self.histograms.len()
    }
}

impl Registry {
    /// A registry whose histograms have these bucket bounds (increasing).
    pub(crate) fn new(bounds: Vec<f64>) -> Registry {
        Registry {
            bounds,
            cells: Mutex::default(),
        }
    }

    fn cells(&self) -> parking_lot::MutexGuard<'_, Cells> {
        self.cells.lock()
    }

    /// The cell of `key` in `map`, made on first use; `None` when the key breaks a
    /// bound (then counted as dropped).
    fn cell<T>(
        &self,
        key: &Key,
        pick: impl FnOnce(&mut Cells) -> (&mut HashMap<Key, Arc<T>>, usize),
        make: impl FnOnce(SeriesKey) -> T,
    ) -> Option<Arc<T>> {
        let mut cells = self.cells();
        let (map, len) = pick(&mut cells);
        if let Some(cell) = map.get(key) {
            return Some(cell.clone());
        }
        let Some(series) = series_key(key) else {
            count_dropped();
            return None;
        };
        if len >= MAX_SERIES_PER_PROCESS {
            count_dropped();
            return None;
        }
        let cell = Arc::new(make(series));
        map.insert(key.clone(), cell.clone());
        Some(cell)
    }

    fn describe(&self, name: KeyName, description: SharedString) {
        let mut cells = self.cells();
        if cells.descriptions >= MAX_SERIES_PER_PROCESS || name.as_str().len() > MAX_NAME_LEN {
            return;
        }
        cells.descriptions += 1;
        let help: String = description.chars().take(MAX_HELP_LEN).collect();
        cells
            .new_descriptions
            .push((name.as_str().to_owned(), help));
    }

    /// Every series that changed since the last call, with its value now, and the
    /// descriptions given since.
    pub(crate) fn take_changes(&self) -> Changes {
        self.take(false)
    }

    /// Every series with its value now, changed or not (and the new descriptions).
    pub(crate) fn take_all(&self) -> Changes {
        self.take(true)
    }

    fn take(&self, all: bool) -> Changes {
        let mut cells = self.cells();
        let mut changed = Vec::new();
        for cell in cells.counters.values() {
            if cell.dirty.swap(false, Ordering::AcqRel) || all {
                let value = cell.value.load(Ordering::Relaxed);
                changed.push((cell.key.clone(), Reading::Counter(value)));
            }
        }
        for cell in cells.gauges.values() {
            if cell.dirty.swap(false, Ordering::AcqRel) || all {
                let value = f64::from_bits(cell.bits.load(Ordering::Relaxed));
                changed.push((cell.key.clone(), Reading::Gauge(value)));
            }
        }
        for cell in cells.histograms.values() {
            if cell.dirty.swap(false, Ordering::AcqRel) || all {
                changed.push((cell.key.clone(), Reading::Histogram(cell.read())));
            }
        }
        (changed, std::mem::take(&mut cells.new_descriptions))
    }
}

/// Series that changed with their value now, and new `(name, description)` pairs.
pub(crate) type Changes = (Vec<(SeriesKey, Reading)>, Vec<(String, String)>);

/// The series key of a facade key, or `None` when it breaks a bound.
fn series_key(key: &Key) -> Option<SeriesKey> {
    if key.name().len() > MAX_NAME_LEN || key.labels().len() > MAX_LABELS {
        return None;
    }
    let mut labels = Vec::with_capacity(key.labels().len());
    for label in key.labels() {
        if label.key().len() > MAX_LABEL_LEN || label.value().len() > MAX_LABEL_LEN {
            return None;
        }
        labels.push((label.key().to_owned(), label.value().to_owned()));
    }
    Some(SeriesKey::new(key.name(), labels))
}

struct CounterCell {
    key: SeriesKey,
    value: AtomicU64,
    dirty: AtomicBool,
}

impl metrics::CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.value.fetch_add(value, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
    }

    fn absolute(&self, value: u64) {
        self.value.fetch_max(value, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
    }
}

struct GaugeCell {
    key: SeriesKey,
    bits: AtomicU64,
    dirty: AtomicBool,
}

impl GaugeCell {
    fn update(&self, change: impl Fn(f64) -> f64) {
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(change(f64::from_bits(bits)).to_bits())
            });
        self.dirty.store(true, Ordering::Release);
    }
}

impl metrics::GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|now| now + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|now| now - value);
    }

    fn set(&self, value: f64) {
        self.bits.store(value.to_bits(), Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
    }
}

struct HistogramCell {
    key: SeriesKey,
    bounds: Vec<f64>,
    /// `bounds.len() + 1` counts, the last for observations above every bound.
    counts: Vec<AtomicU64>,
    sum_bits: AtomicU64,
    dirty: AtomicBool,
}

impl HistogramCell {
    fn new(key: SeriesKey, bounds: &[f64]) -> HistogramCell {
        HistogramCell {
            key,
            bounds: bounds.to_vec(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
            dirty: AtomicBool::new(true),
        }
    }

    fn read(&self) -> Buckets {
        Buckets {
            bounds: self.bounds.clone(),
            counts: self
                .counts
                .iter()
                .map(|count| count.load(Ordering::Relaxed))
                .collect(),
            sum: f64::from_bits(self.sum_bits.load(Ordering::Relaxed)),
        }
    }
}

impl metrics::HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        self.record_many(value, 1);
    }

    fn record_many(&self, value: f64, count: usize) {
        if value.is_nan() {
            return;
        }
        // The first bound at or above the value (Prometheus' `le`).
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        if let Some(slot) = self.counts.get(bucket) {
            slot.fetch_add(count as u64, Ordering::Relaxed);
        }
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value * count as f64).to_bits())
            });
        self.dirty.store(true, Ordering::Release);
    }
}

/// The facade's recorder over a shared [`Registry`].
pub(crate) struct Recorder(pub(crate) Arc<Registry>);

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.0.describe(key, description);
    }

    fn describe_gauge(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.0.describe(key, description);
    }

    fn describe_histogram(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.0.describe(key, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        let cell = self.0.cell(
            key,
            |cells| {
                let len = cells.len();
                (&mut cells.counters, len)
            },
            |key| CounterCell {
                key,
                value: AtomicU64::new(0),
                dirty: AtomicBool::new(true),
            },
        );
        cell.map_or_else(Counter::noop, Counter::from_arc)
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        let cell = self.0.cell(
            key,
            |cells| {
                let len = cells.len();
                (&mut cells.gauges, len)
            },
            |key| GaugeCell {
                key,
                bits: AtomicU64::new(0f64.to_bits()),
                dirty: AtomicBool::new(true),
            },
        );
        cell.map_or_else(Gauge::noop, Gauge::from_arc)
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        let bounds = self.0.bounds.clone();
        let cell = self.0.cell(
            key,
            |cells| {
                let len = cells.len();
                (&mut cells.histograms, len)
            },
            |key| HistogramCell::new(key, &bounds),
        );
        cell.map_or_else(Histogram::noop, Histogram::from_arc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::Recorder as _;

    fn recorder() -> Recorder {
        Recorder(Arc::new(Registry::new(vec![0.1, 1.0])))
    }

    fn meta() -> Metadata<'static> {
        Metadata::new("test", metrics::Level::INFO, None)
    }

    #[test]
    fn only_what_changed_is_taken_and_values_are_totals() {
        let recorder = recorder();
        let key = Key::from_parts("jobs", vec![metrics::Label::new("kind", "a")]);
        let counter = recorder.register_counter(&key, &meta());
        counter.increment(2);
        counter.increment(3);
        let histogram = recorder.register_histogram(&Key::from_name("lat"), &meta());
        histogram.record(0.05);
        histogram.record(0.5);
        histogram.record(5.0);
        let (changed, _) = recorder.0.take_changes();
        assert_eq!(changed.len(), 2);
        let jobs = SeriesKey::new("jobs", vec![("kind".into(), "a".into())]);
        assert!(changed.contains(&(jobs.clone(), Reading::Counter(5))));
        let lat = changed.iter().find(|(key, _)| key.name == "lat");
        match lat {
            Some((_, Reading::Histogram(buckets))) => assert_eq!(buckets.counts, vec![1, 1, 1]),
            other => panic!("{other:?}"),
        }
        assert!(recorder.0.take_changes().0.is_empty());
        assert_eq!(recorder.0.take_all().0.len(), 2);
        counter.increment(1);
        assert_eq!(
            recorder.0.take_changes().0,
            vec![(jobs, Reading::Counter(6))]
        );
    }

    #[test]
    fn series_past_the_bounds_are_dropped() {
        let recorder = recorder();
        for i in 0..MAX_SERIES_PER_PROCESS + 10 {
            recorder
                .register_counter(&Key::from_name(format!("c{i}")), &meta())
                .increment(1);
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        recorder
            .register_gauge(&Key::from_name(long), &meta())
            .set(1.0);
        assert_eq!(recorder.0.take_changes().0.len(), MAX_SERIES_PER_PROCESS);
    }
}
