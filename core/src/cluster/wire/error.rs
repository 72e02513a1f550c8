//! Why bytes do not decode (or a frame does not encode).

use std::fmt;

use super::MAX_TOPIC_ID;

/// Why bytes could not be decoded (or a frame could not be encoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The length field is zero (a frame has at least a type byte).
    EmptyFrame,
    /// The length field exceeds the cap in force.
    FrameTooLarge {
        /// Announced (or, when encoding, needed) length.
        len: usize,
        /// Cap in force.
        max: usize,
    },
    /// The checksum does not match.
    BadChecksum {
        /// As received.
        got: u32,
        /// As computed.
        computed: u32,
    },
    /// The type byte is not a v1 frame type.
    UnknownType(u8),
    /// The body ended in the middle of a field.
    Truncated(&'static str),
    /// The body has bytes after its last field.
    TrailingBytes(usize),
    /// A varint is longer than 10 bytes or overflows u64.
    VarintOverflow,
    /// A varint has a redundant final zero byte.
    VarintNotMinimal,
    /// A field is longer (or, for topics, shorter) than allowed.
    BadLength {
        /// Field name.
        field: &'static str,
        /// Its length.
        len: u64,
    },
    /// A text field is not UTF-8.
    BadUtf8(&'static str),
    /// HELLO does not start with the magic bytes.
    BadMagic,
    /// Unknown SNAPSHOT flag bits.
    BadFlags(u8),
    /// A topic id above [`MAX_TOPIC_ID`].
    TopicIdTooLarge(u64),
    /// A list count exceeds its cap or the bytes left in the body.
    TooManyItems {
        /// Field name.
        field: &'static str,
        /// Announced count.
        count: u64,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::EmptyFrame => write!(f, "frame length is zero"),
            WireError::FrameTooLarge { len, max } => {
                write!(f, "frame length {len} exceeds the cap of {max}")
            }
            WireError::BadChecksum { got, computed } => {
                write!(f, "checksum mismatch: got {got:#010x}, computed {computed:#010x}")
            }
            WireError::UnknownType(t) => write!(f, "unknown frame type {t}"),
            WireError::Truncated(field) => write!(f, "body truncated in {field}"),
            WireError::TrailingBytes(n) => write!(f, "{n} trailing bytes after the body"),
            WireError::VarintOverflow => write!(f, "varint overflows u64"),
            WireError::VarintNotMinimal => write!(f, "varint is not minimally encoded"),
            WireError::BadLength { field, len } => write!(f, "{field} has bad length {len}"),
            WireError::BadUtf8(field) => write!(f, "{field} is not UTF-8"),
            WireError::BadMagic => write!(f, "bad magic in HELLO"),
            WireError::BadFlags(b) => write!(f, "unknown SNAPSHOT flags {b:#04x}"),
            WireError::TopicIdTooLarge(id) => write!(f, "topic id {id} exceeds {MAX_TOPIC_ID}"),
            WireError::TooManyItems { field, count } => {
                write!(f, "{field} count {count} too large")
            }
        }
    }
}

impl std::error::Error for WireError {}
