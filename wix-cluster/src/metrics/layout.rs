//! How a process's metrics lie in its shared segment (`crate::shm`), the one place
//! both sides agree on: a header, then each series' cells where the process's recorder
//! placed them, in the order it registered them.
//!
//! - cell 0: [`MAGIC`], the segment's mark (`crate::shm`), written by the master when it
//!   makes the segment and checked by the worker;
//! - cell 1: the process's count of dropped updates (the counter [`super::DROPPED_TOTAL`]);
//! - from cell 2: series. A counter is one cell (its total), a gauge one cell (the bits
//!   of an `f64`), a histogram one cell per bucket (`bounds + 1`, not cumulative)
//!   followed by one for the bits of its sum.
//!
//! Where each series lies, with its name, labels and kind, crosses the channel once, as
//! a [`Placed`]; its values never do. The master reads the cells whenever it needs the
//! values, and trusts nothing it reads (see `aggregate.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::series::{Buckets, Reading, SeriesKey};

/// Cells in a process's segment (1 MiB of address space; only pages written to take
/// memory). Enough for [`super::MAX_SERIES_PER_PROCESS`] histograms of 128 buckets.
pub(crate) const SEGMENT_CELLS: usize = 1 << 17;
/// What cell 0 of a segment holds: its mark.
pub(crate) const MAGIC: u64 = u64::from_be_bytes(*b"wixmet01");
/// The cell holding the process's count of dropped updates.
pub(crate) const DROPPED_CELL: usize = 1;
/// The first cell a series may use.
pub(crate) const FIRST_SERIES_CELL: usize = 2;

/// What a series is, and so how many cells it takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Kind {
    /// One cell: the total.
    Counter,
    /// One cell: the bits of an `f64`.
    Gauge,
    /// `bounds.len() + 1` counts, then the sum's bits.
    Histogram {
        /// Upper bounds, increasing.
        bounds: Vec<f64>,
    },
}

impl Kind {
    /// How many cells a series of this kind takes.
    pub(crate) fn cells(&self) -> usize {
        match self {
            Kind::Counter | Kind::Gauge => 1,
            Kind::Histogram { bounds } => histogram_cells(bounds),
        }
    }

    /// Whether the kind is one a recorder makes: a histogram has at most
    /// [`super::MAX_BUCKETS`] finite, increasing bounds.
    pub(crate) fn is_within_bounds(&self) -> bool {
        match self {
            Kind::Histogram { bounds } => {
                bounds.len() <= super::MAX_BUCKETS
                    && bounds.iter().all(|bound| bound.is_finite())
                    && bounds.windows(2).all(|pair| pair[0] < pair[1])
            }
            Kind::Counter | Kind::Gauge => true,
        }
    }

    /// A series of this kind before anything was recorded.
    pub(crate) fn zero(&self) -> Reading {
        match self {
            Kind::Counter => Reading::Counter(0),
            Kind::Gauge => Reading::Gauge(0.0),
            Kind::Histogram { bounds } => Reading::Histogram(Buckets::empty(bounds)),
        }
    }
}

/// How many cells the series read as `reading` takes (its kind's [`Kind::cells`]).
pub(crate) fn cells_of(reading: &Reading) -> usize {
    match reading {
        Reading::Counter(_) | Reading::Gauge(_) => 1,
        Reading::Histogram(buckets) => histogram_cells(&buckets.bounds),
    }
}

/// A histogram's cells: one count per bucket (`bounds + 1`), then its sum.
fn histogram_cells(bounds: &[f64]) -> usize {
    bounds.len() + 2
}

/// Reads a series from its cells (`cells.len() == cells_of(known)`) onto `known`, its
/// last reading (first made by [`Kind::zero`], which fixes the series' kind): `false`,
/// and `known` left as it was, when what the cells say cannot follow it (a counter or
/// a bucket lower than before, a histogram's count past a `u64`). Each cell is loaded
/// once; `scratch` is reused so that reading allocates nothing.
pub(crate) fn read_onto(cells: &[AtomicU64], known: &mut Reading, scratch: &mut Vec<u64>) -> bool {
    match known {
        Reading::Counter(value) => {
            let now = load(cells, 0);
            if now < *value {
                return false;
            }
            *value = now;
        }
        Reading::Gauge(value) => {
            *value = f64::from_bits(load(cells, 0));
        }
        Reading::Histogram(buckets) => {
            let bounds = buckets.bounds.len();
            scratch.clear();
            scratch.extend((0..=bounds).map(|i| load(cells, i)));
            let advances = scratch.len() == buckets.counts.len()
                && scratch
                    .iter()
                    .zip(&buckets.counts)
                    .all(|(now, was)| now >= was)
                && scratch
                    .iter()
                    .try_fold(0u64, |sum, count| sum.checked_add(*count))
                    .is_some();
            if !advances {
                return false;
            }
            buckets.counts.copy_from_slice(scratch);
            buckets.sum = f64::from_bits(load(cells, bounds + 1));
        }
    }
    true
}

fn load(cells: &[AtomicU64], at: usize) -> u64 {
    cells.get(at).map_or(0, |cell| cell.load(Ordering::Relaxed))
}

/// Where a process's recorder placed a series: its first cell. Sent to the master
/// once, when the series is registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Placed {
    /// The series.
    pub(crate) key: SeriesKey,
    /// Its kind.
    pub(crate) kind: Kind,
    /// Its first cell; it takes `kind.cells()`.
    pub(crate) at: u32,
}
