//! `frame_decode`: arbitrary bytes into the wire decoder.
//!
//! Input: one control byte, then the bytes under test. Bit 0 of the control
//! byte picks the cap (handshake 4096 or full 1 MiB), bit 1 makes the
//! streaming decoder raise its cap after the first frame (as a connection
//! does after authentication), the other bits seed how the stream is cut
//! into pushes.
//!
//! Properties, each checked on every input:
//!
//! * `decode_frame` on the slice returns a frame, "incomplete" or an error,
//!   never panics, and allocates at most a small multiple of the bytes it
//!   was given (a 4 GiB length field allocates nothing);
//! * a decoded frame re-encodes to exactly the bytes it was decoded from
//!   (the strictness the handshake relies on), and those decode to the same
//!   frame; every strict prefix of it is "incomplete", not an error;
//! * the same for `decode_body` on the raw bytes (type byte, body), which
//!   reaches the body parser without having to forge a checksum;
//! * the streaming `FrameDecoder`, fed the bytes in arbitrary pieces, yields
//!   the same frames and the same final error as decoding the slice.

use crate::alloc::peak_during;
use headcount::internals::wire::{
    self, Entry, Frame, FrameDecoder, WireError, HEADER_LEN, MAX_FRAME_LEN, MAX_HANDSHAKE_FRAME_LEN, TRAILER_LEN,
};

/// The target. See the module docs.
pub fn frame_decode(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let cap = if ctl & 1 == 0 { MAX_HANDSHAKE_FRAME_LEN } else { MAX_FRAME_LEN };
    check_slice(rest, cap);
    check_body(rest);
    check_stream(rest, ctl & 2 != 0, ctl >> 2);
}

/// Most bytes decoding `n` input bytes may allocate: the entry (or address)
/// vector is sized by a count bounded by the bytes left at two bytes per
/// item; names and strings are copies of input bytes.
fn alloc_bound(n: usize) -> usize {
    let item = std::mem::size_of::<Entry>().max(std::mem::size_of::<String>());
    (n / 2 + 1) * item + 2 * n + 1024
}

fn check_slice(buf: &[u8], cap: usize) {
    let (r, peak) = peak_during(|| wire::decode_frame(buf, cap));
    let considered = buf.len().min(HEADER_LEN + cap + TRAILER_LEN);
    assert!(
        peak <= alloc_bound(considered),
        "decode_frame allocated {peak} bytes for {} input bytes (cap {cap})",
        buf.len()
    );
    match r {
        Ok(None) => match wire::frame_size(buf, cap) {
            Ok(None) => assert!(buf.len() < HEADER_LEN),
            Ok(Some(size)) => assert!(size > buf.len(), "frame of {size} bytes is all there, yet incomplete"),
            Err(e) => panic!("decode_frame says incomplete, frame_size says {e}"),
        },
        Ok(Some((frame, n))) => {
            assert!(n <= buf.len(), "used {n} of {} bytes", buf.len());
            assert!(n <= HEADER_LEN + cap + TRAILER_LEN, "frame of {n} bytes above cap {cap}");
            let enc = wire::encode_to_vec(&frame).unwrap_or_else(|e| panic!("decoded {frame:?} does not encode: {e}"));
            assert_eq!(enc, buf[..n], "decode -> encode changed the bytes of {frame:?}");
            assert_eq!(wire::decode_frame(&enc, cap), Ok(Some((frame, n))), "encode -> decode changed the frame");
            assert_eq!(wire::decode_frame(&enc[..n - 1], cap), Ok(None), "a strict prefix is not incomplete");
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            // An error is final: more bytes cannot make the frame valid.
            let mut more = buf.to_vec();
            more.push(0);
            assert!(wire::decode_frame(&more, cap).is_err(), "{e} went away with one more byte");
        }
    }
}

fn check_body(raw: &[u8]) {
    let Some((&ty, body)) = raw.split_first() else { return };
    let (r, peak) = peak_during(|| wire::decode_body(ty, body));
    assert!(peak <= alloc_bound(body.len()), "decode_body allocated {peak} bytes for {} body bytes", body.len());
    let Ok(frame) = r else { return };
    assert_eq!(frame.frame_type() as u8, ty);
    let mut enc = Vec::new();
    wire::encode_body(&frame, &mut enc).unwrap_or_else(|e| panic!("decoded {frame:?} does not encode: {e}"));
    assert_eq!(enc, body, "decode_body -> encode_body changed the bytes of {frame:?}");
    if body.len() < MAX_FRAME_LEN {
        let bytes = wire::encode_to_vec(&frame).unwrap_or_else(|e| panic!("{frame:?} does not encode as a frame: {e}"));
        assert_eq!(wire::decode_frame(&bytes, MAX_FRAME_LEN), Ok(Some((frame, bytes.len()))));
    }
}

/// Caps for the i-th frame of a stream: the handshake cap, then (if
/// `upgrade`) the full cap from the second frame on.
fn cap_for(i: usize, upgrade: bool) -> usize {
    if upgrade && i > 0 {
        MAX_FRAME_LEN
    } else {
        MAX_HANDSHAKE_FRAME_LEN
    }
}

fn check_stream(buf: &[u8], upgrade: bool, seed: u8) {
    // Reference: decode the slice frame by frame.
    let mut want = Vec::new();
    let mut at = 0;
    let want_end = loop {
        match wire::decode_frame(&buf[at..], cap_for(want.len(), upgrade)) {
            Ok(Some((f, n))) => {
                want.push(f);
                at += n;
            }
            Ok(None) => break Ok(buf.len() - at),
            Err(e) => break Err(e),
        }
    };

    // Under test: the streaming decoder, fed in pieces.
    let mut dec = FrameDecoder::new(cap_for(0, upgrade));
    let mut got: Vec<Frame> = Vec::new();
    let mut err: Option<WireError> = None;
    let mut rng = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut fed = 0;
    while fed < buf.len() && err.is_none() {
        let piece = if seed == 0 {
            buf.len()
        } else {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            1 + (rng as usize % 64)
        };
        let end = (fed + piece).min(buf.len());
        dec.push(&buf[fed..end]);
        fed = end;
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => {
                    got.push(f);
                    dec.set_max_len(cap_for(got.len(), upgrade));
                }
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
    }
    assert_eq!(got, want, "stream and slice decoding disagree on the frames");
    match (want_end, err) {
        (Ok(left), None) => assert_eq!(dec.buffered(), left, "bytes left after the last frame"),
        (Err(a), Some(b)) => {
            assert_eq!(a, b, "stream and slice decoding fail differently");
            assert!(dec.next_frame().is_err(), "the stream recovered after an error");
        }
        (a, b) => panic!("slice decoding ended {a:?}, streaming ended {b:?}"),
    }
}
