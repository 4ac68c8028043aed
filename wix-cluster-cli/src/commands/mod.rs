//! One file per command (or family of commands).

pub(crate) mod act;
pub(crate) mod events;
pub(crate) mod ls;
pub(crate) mod metrics;
pub(crate) mod status;
