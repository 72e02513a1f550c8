//! Unsigned LEB128 varints, strict: at most 10 bytes, minimal.

use super::{WireError, MAX_VARINT_LEN};

/// Appends the unsigned LEB128 encoding of `v` (1..=10 bytes).
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encoded length of `v` as a varint.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Decodes a minimal unsigned LEB128 varint from the start of `buf`,
/// returning the value and the number of bytes used.
pub fn get_varint(buf: &[u8]) -> Result<(u64, usize), WireError> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(MAX_VARINT_LEN) {
        let low = u64::from(b & 0x7f);
        if i == MAX_VARINT_LEN - 1 && b > 0x01 {
            // The tenth byte holds bit 63 only.
            return Err(WireError::VarintOverflow);
        }
        v |= low << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err(WireError::VarintNotMinimal);
            }
            return Ok((v, i + 1));
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        Err(WireError::VarintOverflow)
    } else {
        Err(WireError::Truncated("varint"))
    }
}
