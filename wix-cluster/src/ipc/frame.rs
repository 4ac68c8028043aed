//! Frames: a little-endian `u32` length, then that many bytes of postcard.

use serde::{Serialize, de::DeserializeOwned};

/// The largest frame either side accepts. Anything longer is a protocol violation.
pub(crate) const MAX_FRAME: usize = 1 << 20;

const HEADER: usize = 4;

/// What can be wrong with a frame.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The length prefix announces more than [`MAX_FRAME`] bytes.
    Oversized { len: usize },
    /// The payload is not a valid postcard encoding of the expected message.
    Malformed(postcard::Error),
    /// The payload decoded but left bytes over.
    TrailingBytes { extra: usize },
    /// A message could not be encoded (it would be larger than [`MAX_FRAME`]).
    Encode(postcard::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Oversized { len } => {
                write!(f, "frame of {len} bytes exceeds the {MAX_FRAME}-byte limit")
            }
            FrameError::Malformed(e) => write!(f, "malformed frame: {e}"),
            FrameError::TrailingBytes { extra } => {
                write!(f, "malformed frame: {extra} bytes left after the message")
            }
            FrameError::Encode(e) => write!(f, "cannot encode message: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Appends `msg` to `out` as one frame.
pub(crate) fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    let taken = std::mem::take(out);
    let mut buf = match postcard::to_extend(msg, taken) {
        Ok(buf) => buf,
        Err(e) => return Err(FrameError::Encode(e)),
    };
    let len = buf.len() - start - HEADER;
    if len > MAX_FRAME {
        buf.truncate(start);
        *out = buf;
        return Err(FrameError::Oversized { len });
    }
    // `len <= MAX_FRAME < u32::MAX`, so the cast is lossless.
    buf[start..start + HEADER].copy_from_slice(&(len as u32).to_le_bytes());
    *out = buf;
    Ok(())
}

/// Splits a byte stream into frames and decodes them.
#[derive(Default)]
pub(crate) struct FrameBuffer {
    /// Initialized storage: `buf[start..end]` is read and not yet decoded; what follows
    /// `end` is room for the next read (zeroed once, when the buffer grows, not on
    /// every read).
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameBuffer {
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

    /// Decodes the next complete frame, if one is buffered.
    pub(crate) fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let pending = &self.buf[self.start..self.end];
        let Some(header) = pending.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(*header) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::Oversized { len });
        }
        let Some(payload) = pending.get(HEADER..HEADER + len) else {
            return Ok(None);
        };
        let (msg, rest) = postcard::take_from_bytes(payload).map_err(FrameError::Malformed)?;
        if !rest.is_empty() {
            return Err(FrameError::TrailingBytes { extra: rest.len() });
        }
        self.start += HEADER + len;
        Ok(Some(msg))
    }
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
        let mut buf = FrameBuffer::default();
        feed(&mut buf, &u32::MAX.to_le_bytes());
        assert!(matches!(
            buf.next::<Msg>(),
            Err(FrameError::Oversized { len }) if len == u32::MAX as usize
        ));
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
    fn encoding_a_message_over_the_cap_fails_and_leaves_the_buffer_intact() {
        let mut out = vec![9];
        let big = Msg::Text("x".repeat(MAX_FRAME + 1));
        assert!(matches!(
            encode(&big, &mut out),
            Err(FrameError::Oversized { .. })
        ));
        assert_eq!(out, vec![9]);
    }
}
