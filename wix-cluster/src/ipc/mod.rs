//! The master/worker channel: one `socketpair` per worker carrying length-prefixed
//! postcard frames, with listening sockets passed alongside as `SCM_RIGHTS`, and the
//! correlation of requests over it with their answers.

mod channel;
mod correlate;
mod fd;
mod frame;
mod stream;

pub(crate) use channel::{BACKLOG_STALL, FrameReader, Outbox, into_stream, socketpair};
pub(crate) use correlate::Correlation;
pub(crate) use frame::{FrameError, encode};
pub(crate) use stream::Stream;

/// Feeds `bytes` to a frame buffer in pieces of `split` bytes (at least 1) and decodes
/// what comes out as both directions' messages, until the first error (a reader drops
/// its peer there). For the fuzz targets.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_frames(bytes: &[u8], split: usize) {
    use crate::protocol::{ToMaster, ToWorker};
    for to_master in [true, false] {
        let mut buffer = frame::FrameBuffer::with_limit(4 << 20);
        'feed: for piece in bytes.chunks(split.max(1)) {
            let fed = buffer.read_with(piece.len(), |spare| {
                spare[..piece.len()].copy_from_slice(piece);
                Ok(piece.len())
            });
            if fed.is_err() {
                break;
            }
            loop {
                let next = if to_master {
                    buffer.next::<ToMaster>().map(|m| m.is_some())
                } else {
                    buffer.next::<ToWorker>().map(|m| m.is_some())
                };
                match next {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
}

/// Encodes `payload` as an exchange message, feeds the frames back in pieces of
/// `split` bytes, and checks the message comes back whole. For the fuzz targets.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_round_trip(payload: &[u8], split: usize) {
    use crate::protocol::ToWorker;
    let msg = ToWorker::Exchange {
        topic: "fuzz".to_owned(),
        payload: payload.to_vec(),
    };
    let mut wire = Vec::new();
    encode(&msg, &mut wire).expect("a message under the cap encodes");
    let mut buffer = frame::FrameBuffer::default();
    let mut got = None;
    for piece in wire.chunks(split.max(1)) {
        buffer
            .read_with(piece.len(), |spare| {
                spare[..piece.len()].copy_from_slice(piece);
                Ok(piece.len())
            })
            .expect("buffer");
        if let Some(msg) = buffer.next::<ToWorker>().expect("own frames decode") {
            got = Some(msg);
        }
    }
    match got {
        Some(ToWorker::Exchange { payload: back, .. }) => assert_eq!(back, payload),
        _ => panic!("the message did not come back"),
    }
}
