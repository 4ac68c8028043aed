//! The `metrics` facade's recorder every process of a cluster installs: `counter!`,
//! `gauge!` and `histogram!` (from the app or any library it uses) update atomic cells
//! of the process's segment (`layout.rs`), which the master reads directly. A series is
//! placed in the segment when it is registered; where it lies is queued as a
//! [`Placed`] for the master ([`Registry::take_declarations`]), once.
//!
//! Bounded: at most [`MAX_SERIES_PER_PROCESS`] series (a name with one set of labels),
//! names of at most [`MAX_NAME_LEN`] bytes, [`MAX_LABELS`] labels of at most
//! [`MAX_LABEL_LEN`] bytes each, and the segment's [`SEGMENT_CELLS`]; past them a
//! handle does nothing and the attempt is counted ([`super::dropped_updates`]).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

use super::layout::{FIRST_SERIES_CELL, Kind, Placed, SEGMENT_CELLS};
use super::series::{Declarations, SeriesKey};
use super::{
    MAX_HELP_LEN, MAX_LABEL_LEN, MAX_LABELS, MAX_NAME_LEN, MAX_SERIES_PER_PROCESS, count_dropped,
};
use crate::shm::Segment;

/// One process's series, in its segment.
pub(crate) struct Registry {
    bounds: Vec<f64>,
    segment: Arc<Segment>,
    state: Mutex<State>,
    /// Woken when there is something to declare.
    pub(crate) declared: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    counters: HashMap<Key, Counter>,
    gauges: HashMap<Key, Gauge>,
    histograms: HashMap<Key, Histogram>,
    /// The next free cell.
    next: usize,
    /// Declarations not taken yet, and how many descriptions were taken in all
    /// (bounded like series).
    pending: Declarations,
    descriptions: usize,
}

impl State {
    fn len(&self) -> usize {
        self.counters.len() + self.gauges.len() + self.histograms.len()
    }
}

impl Registry {
    /// A registry over `segment` (at least [`SEGMENT_CELLS`] cells) whose histograms
    /// have these bucket bounds (increasing).
    pub(crate) fn new(bounds: Vec<f64>, segment: Arc<Segment>) -> Registry {
        Registry {
            bounds,
            segment,
            state: Mutex::new(State {
                next: FIRST_SERIES_CELL,
                ..State::default()
            }),
            declared: tokio::sync::Notify::new(),
        }
    }

    /// The segment the series live in.
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// The series placed and the descriptions given since the last call.
    pub(crate) fn take_declarations(&self) -> Declarations {
        std::mem::take(&mut self.state.lock().pending)
    }

    /// Declarations that could not be sent: they go first next time.
    pub(crate) fn put_back(&self, mut declarations: Declarations) {
        let mut state = self.state.lock();
        declarations
            .series
            .append(&mut std::mem::take(&mut state.pending.series));
        declarations
            .descriptions
            .append(&mut std::mem::take(&mut state.pending.descriptions));
        state.pending = declarations;
    }

    /// The handle of `key` in the map `pick` chooses, placed on first use; `None`
    /// when the key or the segment breaks a bound (then counted as dropped).
    fn handle<H: Clone>(
        &self,
        key: &Key,
        kind: Kind,
        pick: impl Fn(&mut State) -> &mut HashMap<Key, H>,
        make: impl FnOnce(Cells) -> H,
    ) -> Option<H> {
        let mut state = self.state.lock();
        if let Some(handle) = pick(&mut state).get(key) {
            return Some(handle.clone());
        }
        let Some(series) = series_key(key) else {
            count_dropped();
            return None;
        };
        let at = state.next;
        let end = at + kind.cells();
        if state.len() >= MAX_SERIES_PER_PROCESS || end > SEGMENT_CELLS.min(self.cells_len()) {
            count_dropped();
            return None;
        }
        let at32 = u32::try_from(at).ok()?;
        state.next = end;
        let handle = make(Cells {
            segment: self.segment.clone(),
            at,
        });
        pick(&mut state).insert(key.clone(), handle.clone());
        state.pending.series.push(Placed {
            key: series,
            kind,
            at: at32,
        });
        drop(state);
        self.declared.notify_one();
        Some(handle)
    }

    fn cells_len(&self) -> usize {
        self.segment.cells().len()
    }

    fn describe(&self, name: KeyName, description: SharedString) {
        let mut state = self.state.lock();
        if state.descriptions >= MAX_SERIES_PER_PROCESS || name.as_str().len() > MAX_NAME_LEN {
            return;
        }
        state.descriptions += 1;
        let help: String = description.chars().take(MAX_HELP_LEN).collect();
        state
            .pending
            .descriptions
            .push((name.as_str().to_owned(), help));
        drop(state);
        self.declared.notify_one();
    }
}

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
    let series = SeriesKey::new(key.name(), labels);
    // A label named twice would be refused by the master.
    series.is_within_bounds().then_some(series)
}

/// A series' cells: `at` and the ones after it, in `segment`.
struct Cells {
    segment: Arc<Segment>,
    at: usize,
}

impl Cells {
    /// The `i`-th cell of the series (always there: placed within the segment).
    fn cell(&self, i: usize) -> Option<&AtomicU64> {
        self.segment.cells().get(self.at + i)
    }
}

struct CounterCell(Cells);

impl metrics::CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        if let Some(cell) = self.0.cell(0) {
            cell.fetch_add(value, Ordering::Relaxed);
        }
    }

    fn absolute(&self, value: u64) {
        if let Some(cell) = self.0.cell(0) {
            cell.fetch_max(value, Ordering::Relaxed);
        }
    }
}

struct GaugeCell(Cells);

impl GaugeCell {
    /// Changes the value; returns it before and after.
    fn update(&self, change: impl Fn(f64) -> f64) -> Option<(f64, f64)> {
        let cell = self.0.cell(0)?;
        let before = cell
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(change(f64::from_bits(bits)).to_bits())
            })
            .ok()?;
        let before = f64::from_bits(before);
        Some((before, change(before)))
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
        if let Some(cell) = self.0.cell(0) {
            cell.store(value.to_bits(), Ordering::Relaxed);
        }
    }
}

/// The [`super::APP_BUSY`] gauge: a gauge whose changes are also work begun or ended
/// ([`crate::busy`]).
struct BusyGauge(GaugeCell);

impl BusyGauge {
    fn update(&self, change: impl Fn(f64) -> f64) {
        if let Some((before, after)) = self.0.update(change) {
            crate::busy::app_busy_changed(before, after);
        }
    }
}

impl metrics::GaugeFn for BusyGauge {
    fn increment(&self, value: f64) {
        self.update(|now| now + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|now| now - value);
    }

    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

struct HistogramCell {
    cells: Cells,
    bounds: Arc<[f64]>,
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
        if let Some(slot) = self.cells.cell(bucket) {
            slot.fetch_add(count as u64, Ordering::Relaxed);
        }
        if let Some(sum) = self.cells.cell(self.bounds.len() + 1) {
            let _ = sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value * count as f64).to_bits())
            });
        }
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
        self.0
            .handle(
                key,
                Kind::Counter,
                |state| &mut state.counters,
                |cells| Counter::from_arc(Arc::new(CounterCell(cells))),
            )
            .unwrap_or_else(Counter::noop)
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        self.0
            .handle(
                key,
                Kind::Gauge,
                |state| &mut state.gauges,
                |cells| {
                    if key.name() == super::APP_BUSY {
                        Gauge::from_arc(Arc::new(BusyGauge(GaugeCell(cells))))
                    } else {
                        Gauge::from_arc(Arc::new(GaugeCell(cells)))
                    }
                },
            )
            .unwrap_or_else(Gauge::noop)
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        let bounds: Arc<[f64]> = self.0.bounds.clone().into();
        self.0
            .handle(
                key,
                Kind::Histogram {
                    bounds: bounds.to_vec(),
                },
                |state| &mut state.histograms,
                |cells| Histogram::from_arc(Arc::new(HistogramCell { cells, bounds })),
            )
            .unwrap_or_else(Histogram::noop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::series::Reading;
    use metrics::Recorder as _;

    fn recorder() -> Recorder {
        let segment = Arc::new(Segment::local(SEGMENT_CELLS).unwrap());
        Recorder(Arc::new(Registry::new(vec![0.1, 1.0], segment)))
    }

    fn meta() -> Metadata<'static> {
        Metadata::new("test", metrics::Level::INFO, None)
    }

    fn read(recorder: &Recorder, placed: &Placed) -> Reading {
        let cells = recorder.0.segment().cells();
        let mut reading = placed.kind.zero();
        let at = placed.at as usize;
        let read = crate::metrics::layout::read_onto(
            &cells[at..at + placed.kind.cells()],
            &mut reading,
            &mut Vec::new(),
        );
        assert!(read);
        reading
    }

    #[test]
    fn each_series_is_declared_once_and_its_values_are_in_the_segment() {
        let recorder = recorder();
        let key = Key::from_parts("jobs", vec![metrics::Label::new("kind", "a")]);
        let counter = recorder.register_counter(&key, &meta());
        counter.increment(2);
        recorder.register_counter(&key, &meta()).increment(3);
        let histogram = recorder.register_histogram(&Key::from_name("lat"), &meta());
        histogram.record(0.05);
        histogram.record(0.5);
        histogram.record(5.0);
        let declared = recorder.0.take_declarations();
        assert_eq!(declared.series.len(), 2);
        assert!(recorder.0.take_declarations().is_empty());
        let jobs = &declared.series[0];
        assert_eq!(
            jobs.key,
            SeriesKey::new("jobs", vec![("kind".into(), "a".into())])
        );
        assert_eq!(jobs.at as usize, FIRST_SERIES_CELL);
        assert_eq!(read(&recorder, jobs), Reading::Counter(5));
        match read(&recorder, &declared.series[1]) {
            Reading::Histogram(buckets) => {
                assert_eq!(buckets.counts, vec![1, 1, 1]);
                assert!((buckets.sum - 5.55).abs() < 1e-9);
            }
            other => panic!("{other:?}"),
        }
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
        assert_eq!(
            recorder.0.take_declarations().series.len(),
            MAX_SERIES_PER_PROCESS
        );
    }

    #[test]
    fn declarations_that_could_not_be_sent_go_first() {
        let recorder = recorder();
        let _ = recorder.register_gauge(&Key::from_name("a"), &meta());
        let first = recorder.0.take_declarations();
        let _ = recorder.register_gauge(&Key::from_name("b"), &meta());
        recorder.0.put_back(first);
        let names: Vec<String> = recorder
            .0
            .take_declarations()
            .series
            .into_iter()
            .map(|placed| placed.key.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
    }
}
