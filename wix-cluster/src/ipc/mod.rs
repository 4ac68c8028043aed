//! The master/worker channel: one `socketpair` per worker carrying length-prefixed
//! postcard frames, with listening sockets passed alongside as `SCM_RIGHTS`.

mod channel;
mod fd;
mod frame;
mod stream;

pub(crate) use channel::{BACKLOG_STALL, FrameReader, Outbox, into_stream, socketpair};
pub(crate) use frame::encode;
pub(crate) use stream::Stream;
