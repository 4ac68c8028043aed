//! Frames: a little-endian `u32` header, then that many bytes of postcard.
//!
//! A message of more than [`MAX_FRAME`] bytes travels in parts: every part but the last
//! has [`CONTINUED`] set in its header, whose low 31 bits are the part's length (at
//! most [`MAX_FRAME`]); the message is the parts' bytes end to end. A reader assembles
//! at most its limit ([`MAX_MESSAGE`] unless set lower) and treats more as a protocol
//! violation, so a peer can make it hold one message, never an unbounded one.

use serde::{Serialize, de::DeserializeOwned};

/// The largest part on the wire. A header announcing more is a protocol violation.
pub(crate) const MAX_FRAME: usize = 1 << 20;

/// The largest message any reader assembles (256 MiB): app data travels in the
/// handshake, and may be up to `exchange::MAX_APP_DATA`.
pub(crate) const MAX_MESSAGE: usize = 256 << 20;

/// Set in a part's header when more parts of the same message follow.
const CONTINUED: u32 = 1 << 31;

const HEADER: usize = 4;

/// What can be wrong with a frame.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// A part announces more than [`MAX_FRAME`] bytes, or a message's parts add up to
    /// more than the reader's limit (or [`MAX_MESSAGE`] when encoding).
    #[error("a frame or message of {len} bytes exceeds the limit")]
    Oversized { len: usize },
    /// A part that says more follow carries no bytes.
    #[error("malformed frame: an empty continued part")]
    EmptyPart,
    /// The channel's queue holds more than `MAX_BACKLOG` (160 MiB) bytes already:
    /// the peer is not reading.
    #[error("{queued} bytes wait unread on the channel already")]
    Backlog { queued: usize },
    /// The payload is not a valid postcard encoding of the expected message.
    #[error("malformed frame: {0}")]
    Malformed(postcard::Error),
    /// The payload decoded but left bytes over.
    #[error("malformed frame: {extra} bytes left after the message")]
    TrailingBytes { extra: usize },
    /// A message could not be encoded (it would be larger than [`MAX_FRAME`]).
    #[error("cannot encode message: {0}")]
    Encode(postcard::Error),
}

/// Appends `msg` to `out` as one frame, or as parts when it is larger than
/// [`MAX_FRAME`]; a message larger than [`MAX_MESSAGE`] is an error and leaves `out`
/// as it was.
pub(crate) fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    let taken = std::mem::take(out);
    let mut buf = match postcard::to_extend(msg, taken) {
        Ok(buf) => buf,
        Err(e) => return Err(FrameError::Encode(e)),
    };
    let len = buf.len() - start - HEADER;
    if len <= MAX_FRAME {
        // `len <= MAX_FRAME < CONTINUED`, so the cast is lossless.
        buf[start..start + HEADER].copy_from_slice(&(len as u32).to_le_bytes());
        *out = buf;
        return Ok(());
    }
    let payload = buf.split_off(start + HEADER);
    buf.truncate(start);
    *out = buf;
    if len > MAX_MESSAGE {
        return Err(FrameError::Oversized { len });
    }
    out.reserve(len + HEADER * len.div_ceil(MAX_FRAME));
    let mut parts = payload.chunks(MAX_FRAME).peekable();
    while let Some(part) = parts.next() {
        let more = if parts.peek().is_some() { CONTINUED } else { 0 };
        out.extend_from_slice(&(part.len() as u32 | more).to_le_bytes());
        out.extend_from_slice(part);
    }
    Ok(())
}

/// Splits a byte stream into frames, assembles parts, and decodes messages.
pub(crate) struct FrameBuffer {
    /// Initialized storage: `buf[start..end]` is read and not yet decoded; what follows
    /// `end` is room for the next read (zeroed once, when the buffer grows, not on
    /// every read).
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The parts of a message read so far.
    assembly: Vec<u8>,
    /// The largest message this buffer assembles.
    limit: usize,
}

impl Default for FrameBuffer {
    fn default() -> Self {
        FrameBuffer::with_limit(MAX_MESSAGE)
    }
}

/// Assembly storage kept between messages at most this large (a larger one, left by a
/// big message, is given back).
const KEPT_ASSEMBLY: usize = 4 << 20;

impl FrameBuffer {
    /// A buffer that assembles messages of at most `limit` bytes.
    pub(crate) fn with_limit(limit: usize) -> FrameBuffer {
        FrameBuffer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            assembly: Vec::new(),
            limit: limit.min(MAX_MESSAGE),
        }
    }

    /// Lets `read` fill up to `chunk` bytes at the end of the buffer, and keeps what
    /// it reports having written.
    pub(crate) fn read_with(
        &mut self,
        chunk: usize,
        read: impl FnOnce(&mut [u8]) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < self.end + chunk {
            self.buf.resize(self.end + chunk, 0);
        }
        let result = read(&mut self.buf[self.end..self.end + chunk]);
        self.end += (*result.as_ref().unwrap_or(&0)).min(chunk);
        result
    }

    /// Decodes the next complete message, if one is buffered.
    pub(crate) fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        loop {
            let pending = &self.buf[self.start..self.end];
            let Some(header) = pending.first_chunk::<HEADER>() else {
                return Ok(None);
            };
            let header = u32::from_le_bytes(*header);
            let more = header & CONTINUED != 0;
            let len = (header & !CONTINUED) as usize;
            if len > MAX_FRAME {
                return Err(FrameError::Oversized { len });
            }
            if more && len == 0 {
                return Err(FrameError::EmptyPart);
            }
            let Some(payload) = pending.get(HEADER..HEADER + len) else {
                return Ok(None);
            };
            if !more && self.assembly.is_empty() {
                let msg = decode_whole(payload)?;
                self.start += HEADER + len;
                return Ok(Some(msg));
            }
            let assembled = self.assembly.len() + len;
            if assembled > self.limit {
                return Err(FrameError::Oversized { len: assembled });
            }
            self.assembly.extend_from_slice(payload);
            self.start += HEADER + len;
            if more {
                continue;
            }
            let decoded = decode_whole(&self.assembly);
            if self.assembly.capacity() > KEPT_ASSEMBLY {
                self.assembly = Vec::new();
            } else {
                self.assembly.clear();
            }
            return decoded.map(Some);
        }
    }
}

/// `bytes` as exactly one message.
fn decode_whole<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) = postcard::take_from_bytes(bytes).map_err(FrameError::Malformed)?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes { extra: rest.len() });
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Ping,
        Text(String),
    }

    fn feed(buf: &mut FrameBuffer, bytes: &[u8]) {
        buf.read_with(bytes.len(), |spare| {
            spare.copy_from_slice(bytes);
            Ok(bytes.len())
        })
        .unwrap();
    }

    #[test]
    fn frames_round_trip_even_when_split_across_reads() {
        let mut wire = Vec::new();
        encode(&Msg::Ping, &mut wire).unwrap();
        encode(&Msg::Text("hello".into()), &mut wire).unwrap();
        let mut buf = FrameBuffer::default();
        let mut got = Vec::new();
        for byte in &wire {
            feed(&mut buf, std::slice::from_ref(byte));
            while let Some(msg) = buf.next::<Msg>().unwrap() {
                got.push(msg);
            }
        }
        assert_eq!(got, vec![Msg::Ping, Msg::Text("hello".into())]);
    }

    #[test]
    fn garbage_is_a_malformed_frame_not_a_panic() {
        let mut buf = FrameBuffer::default();
        feed(&mut buf, &[3, 0, 0, 0, 0xff, 0xff, 0xff]);
        assert!(matches!(buf.next::<Msg>(), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn oversized_length_is_rejected_before_buffering_it() {
        for header in [(MAX_FRAME + 1) as u32, u32::MAX] {
            let mut buf = FrameBuffer::default();
            feed(&mut buf, &header.to_le_bytes());
            assert!(matches!(
                buf.next::<Msg>(),
                Err(FrameError::Oversized { len }) if len > MAX_FRAME
            ));
        }
    }

    #[test]
    fn trailing_bytes_inside_a_frame_are_rejected() {
        let mut buf = FrameBuffer::default();
        feed(&mut buf, &[2, 0, 0, 0, 0, 0]);
        assert!(matches!(
            buf.next::<Msg>(),
            Err(FrameError::TrailingBytes { extra: 1 })
        ));
    }

    #[test]
    fn encoding_a_message_over_the_message_cap_fails_and_leaves_the_buffer_intact() {
        let mut out = vec![9];
        let big = Msg::Text("x".repeat(MAX_MESSAGE + 1));
        assert!(matches!(
            encode(&big, &mut out),
            Err(FrameError::Oversized { .. })
        ));
        assert_eq!(out, vec![9]);
    }

    #[test]
    fn a_message_larger_than_a_frame_travels_in_parts_and_comes_back_whole() {
        let big = Msg::Text("y".repeat(3 * MAX_FRAME + 17));
        let mut wire = Vec::new();
        encode(&Msg::Ping, &mut wire).unwrap();
        encode(&big, &mut wire).unwrap();
        encode(&Msg::Ping, &mut wire).unwrap();
        let mut buf = FrameBuffer::default();
        let mut got = Vec::new();
        for chunk in wire.chunks(65_536 + 3) {
            feed(&mut buf, chunk);
            while let Some(msg) = buf.next::<Msg>().unwrap() {
                got.push(msg);
            }
        }
        assert_eq!(got, vec![Msg::Ping, big, Msg::Ping]);
    }

    #[test]
    fn parts_adding_up_past_the_readers_limit_are_rejected() {
        let big = Msg::Text("z".repeat(2 * MAX_FRAME));
        let mut wire = Vec::new();
        encode(&big, &mut wire).unwrap();
        let mut buf = FrameBuffer::with_limit(MAX_FRAME + 10);
        feed(&mut buf, &wire);
        assert!(matches!(
            buf.next::<Msg>(),
            Err(FrameError::Oversized { .. })
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any message, of any size up to a few parts, in any read sizes, comes back
        /// whole and alone, between two small ones.
        #[test]
        fn parts_round_trip_whatever_the_size_and_the_reads(
            len in 0..(3 * MAX_FRAME + 5),
            byte in proptest::prelude::any::<u8>(),
            split in 1usize..200_000,
        ) {
            let text = char::from(b'a' + byte % 26).to_string().repeat(len);
            let msgs = [Msg::Ping, Msg::Text(text), Msg::Ping];
            let mut wire = Vec::new();
            for msg in &msgs {
                encode(msg, &mut wire).unwrap();
            }
            let mut buf = FrameBuffer::default();
            let mut got = Vec::new();
            for piece in wire.chunks(split) {
                feed(&mut buf, piece);
                while let Some(msg) = buf.next::<Msg>().unwrap() {
                    got.push(msg);
                }
            }
            proptest::prop_assert_eq!(&got[..], &msgs[..]);
        }

        /// Every part but the last is full and flagged; the last is not flagged.
        #[test]
        fn parts_are_full_but_the_last(len in (MAX_FRAME + 1)..(3 * MAX_FRAME)) {
            let mut wire = Vec::new();
            encode(&Msg::Text("p".repeat(len)), &mut wire).unwrap();
            let mut at = 0;
            let mut headers = Vec::new();
            while at < wire.len() {
                let header = u32::from_le_bytes(wire[at..at + 4].try_into().unwrap());
                let part = (header & !CONTINUED) as usize;
                headers.push((header & CONTINUED != 0, part));
                at += 4 + part;
            }
            let (last, full) = headers.split_last().unwrap();
            proptest::prop_assert!(!last.0);
            proptest::prop_assert!(full.iter().all(|&(more, part)| more && part == MAX_FRAME));
        }
    }

    #[test]
    fn an_empty_continued_part_is_malformed() {
        let mut buf = FrameBuffer::default();
        feed(&mut buf, &CONTINUED.to_le_bytes());
        assert!(matches!(buf.next::<Msg>(), Err(FrameError::EmptyPart)));
    }
}
