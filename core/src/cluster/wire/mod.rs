//! Wire protocol v1: frame layout, LEB128 varints, and a strict codec.
//!
//! Every byte layout here is specified in `docs/PROTOCOL.md`; this module is
//! the reference implementation of that document. In short:
//!
//! ```text
//! frame   = len:u32le  type:u8  body:[len-1]  crc:u32le
//!           `len` counts type + body (1 ..= MAX_FRAME_LEN)
//!           `crc` is CRC-32 (IEEE 802.3, the zlib one) of len, type and body
//! varint  = unsigned LEB128, at most 10 bytes, minimal (no redundant 0x80/0x00)
//! bytes   = varint length, then that many bytes
//! ```
//!
//! The decoder is *strict*: every value has exactly one encoding, so for any
//! byte string `b` that decodes to `f`, `encode(f) == b`. The handshake relies
//! on this: it authenticates the re-encoded HELLO bodies, which are therefore
//! the bytes the peer actually sent.
//!
//! The decoder never panics, and never allocates more than the frame cap
//! (checked against the length field *before* anything is buffered); counts
//! read from the body only size allocations after being bounded by the bytes
//! actually left in the body.
//!
//! | file         | what |
//! |--------------|------|
//! | `frame.rs`   | the one table of frame types (`frame_types!`), the frame values |
//! | `bye.rs`     | the one table of BYE codes |
//! | `body.rs`    | one decode and one encode function per frame type |
//! | `framing.rs` | length, type byte and checksum around a body |
//! | `stream.rs`  | [`FrameDecoder`]: frames out of a byte stream |
//! | `varint.rs`  | LEB128 varints |
//! | `error.rs`   | [`WireError`] |

/// The only protocol version this implementation speaks.
pub const PROTOCOL_VERSION: u64 = 1;
/// First four bytes of every HELLO body.
pub const MAGIC: [u8; 4] = *b"HCNT";
/// Largest accepted `len` (type byte + body) once a connection is authenticated.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Largest accepted `len` before authentication: HELLO, AUTH and BYE are small,
/// so a stranger cannot make us buffer a megabyte.
pub const MAX_HANDSHAKE_FRAME_LEN: usize = 4096;
/// Bytes before the type byte (the length field).
pub const HEADER_LEN: usize = 4;
/// Bytes after the body (the checksum).
pub const TRAILER_LEN: usize = 4;
/// Length of the HELLO challenge nonce.
pub const NONCE_LEN: usize = 32;
/// Length of an AUTH response (HMAC-SHA256 output).
pub const MAC_LEN: usize = 32;
/// Largest cluster name, node name or listen address, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Largest topic name on the wire, in bytes (nodes usually cap lower).
pub const MAX_TOPIC_LEN: usize = 65_535;
/// Largest number of addresses in one PEERS frame.
pub const MAX_PEERS: usize = 1024;
/// Largest BYE message, in bytes.
pub const MAX_BYE_MESSAGE_LEN: usize = 1024;
/// Largest per-connection topic id.
pub const MAX_TOPIC_ID: u32 = (1 << 24) - 1;
/// Largest varint encoding of a u64.
pub const MAX_VARINT_LEN: usize = 10;

/// Bytes a SNAPSHOT or DELTA frame spends outside its entries, at most:
/// header, type, flags, seq and entry count varints, checksum.
pub const STATE_FRAME_OVERHEAD: usize = HEADER_LEN + 1 + 1 + MAX_VARINT_LEN + MAX_VARINT_LEN + TRAILER_LEN;

mod body;
mod bye;
mod error;
mod frame;
mod framing;
mod stream;
mod varint;

pub use body::entry_len;
pub use bye::ByeCode;
pub use error::WireError;
pub use frame::{Delta, Entry, Frame, FrameType, Hello, Snapshot, SNAPSHOT_FIRST, SNAPSHOT_LAST};
pub use framing::{decode_body, decode_frame, encode_body, encode_frame, encode_to_vec, frame_size};
pub use stream::FrameDecoder;
pub use varint::{get_varint, put_varint, varint_len};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod prop;
