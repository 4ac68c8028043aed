//! Worker ids.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A worker slot, numbered from 1. A respawned worker takes the slot (and id) of the one
/// it replaces. In single-process mode the one process is worker 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkerId(pub u32);

impl WorkerId {
    /// The id as a number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
