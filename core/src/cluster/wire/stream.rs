//! Reassembling frames from a byte stream that arrives in arbitrary pieces.

use super::{decode_frame, Frame, WireError, MAX_FRAME_LEN};

/// Reassembles frames from a byte stream delivered in arbitrary pieces.
///
/// Buffers at most one frame (bounded by the cap in force) plus whatever the
/// caller pushed beyond it; callers that read from a socket should push at
/// most a read buffer at a time and drain frames between pushes.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max_len: usize,
    failed: bool,
}

impl FrameDecoder {
    /// A decoder accepting frames of up to `max_len` (type + body).
    pub fn new(max_len: usize) -> FrameDecoder {
        FrameDecoder { buf: Vec::new(), start: 0, max_len: max_len.min(MAX_FRAME_LEN), failed: false }
    }

    /// Changes the cap (e.g. from the handshake cap to [`MAX_FRAME_LEN`]).
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len.min(MAX_FRAME_LEN);
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    ///
    /// After an error the stream cannot be resynchronised; every later call
    /// returns the same kind of failure.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        if self.failed {
            return Err(WireError::Truncated("stream after an earlier error"));
        }
        match decode_frame(&self.buf[self.start..], self.max_len) {
            Ok(Some((frame, size))) => {
                self.start += size;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                } else if self.start > self.buf.len() / 2 {
                    self.buf.drain(..self.start);
                    self.start = 0;
                }
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = true;
                self.buf = Vec::new();
                self.start = 0;
                Err(e)
            }
        }
    }
}
