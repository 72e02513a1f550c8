//! Whole frames: the length field, the checksum, and the type byte around a
//! body (`len:u32le type:u8 body crc:u32le`).

use super::{body::Reader, Frame, FrameType, WireError, HEADER_LEN, MAX_FRAME_LEN, TRAILER_LEN};

/// Validates the length field at the start of `buf`, if 4 bytes are there.
///
/// Returns the total frame size (header + len + trailer) once known. Callers
/// that read from a socket use this to fail fast on a bad length before
/// waiting for (or buffering) the rest of the frame.
pub fn frame_size(buf: &[u8], max_len: usize) -> Result<Option<usize>, WireError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut l = [0u8; 4];
    l.copy_from_slice(head);
    let len = u32::from_le_bytes(l) as usize;
    if len == 0 {
        return Err(WireError::EmptyFrame);
    }
    if len > max_len {
        return Err(WireError::FrameTooLarge { len, max: max_len });
    }
    Ok(Some(HEADER_LEN + len + TRAILER_LEN))
}

/// Decodes one frame from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds an incomplete (so far valid) frame,
/// `Ok(Some((frame, size)))` when a whole frame of `size` bytes was decoded,
/// and an error as soon as the bytes cannot be a valid frame under `max_len`.
pub fn decode_frame(buf: &[u8], max_len: usize) -> Result<Option<(Frame, usize)>, WireError> {
    let Some(size) = frame_size(buf, max_len)? else {
        return Ok(None);
    };
    let Some(whole) = buf.get(..size) else {
        return Ok(None);
    };
    let (covered, crc) = whole.split_at(size - TRAILER_LEN);
    let mut c = [0u8; 4];
    c.copy_from_slice(crc);
    let got = u32::from_le_bytes(c);
    let computed = crc32fast::hash(covered);
    if got != computed {
        return Err(WireError::BadChecksum { got, computed });
    }
    let ty = covered[HEADER_LEN];
    let body = &covered[HEADER_LEN + 1..];
    let frame = decode_body(ty, body)?;
    Ok(Some((frame, size)))
}

/// Decodes a frame body of type byte `ty` (without header or checksum).
pub fn decode_body(ty: u8, body: &[u8]) -> Result<Frame, WireError> {
    let Some(ft) = FrameType::from_u8(ty) else {
        return Err(WireError::UnknownType(ty));
    };
    let mut r = Reader::new(body);
    let frame = ft.decode(&mut r)?;
    r.finish()?;
    Ok(frame)
}

/// Appends the body of `frame` (no header, type or checksum) to `out`.
///
/// Fails, leaving `out` with a partial body, when a field is out of range;
/// [`encode_frame`] rolls that back.
pub fn encode_body(frame: &Frame, out: &mut Vec<u8>) -> Result<(), WireError> {
    frame.encode_fields(out)
}

/// Appends the complete encoding of `frame` (header, type, body, checksum)
/// to `out`. On error `out` is left as it was.
pub fn encode_frame(frame: &Frame, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.push(frame.frame_type() as u8);
    if let Err(e) = encode_body(frame, out) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_FRAME_LEN {
        out.truncate(start);
        return Err(WireError::FrameTooLarge { len, max: MAX_FRAME_LEN });
    }
    // len <= MAX_FRAME_LEN < u32::MAX.
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Encodes `frame` into a fresh buffer.
pub fn encode_to_vec(frame: &Frame) -> Result<Vec<u8>, WireError> {
    let mut v = Vec::new();
    encode_frame(frame, &mut v)?;
    Ok(v)
}
