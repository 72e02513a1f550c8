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

use std::fmt;

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

/// Smallest possible encoded entry: a one-byte topic ref and a one-byte count.
const MIN_ENTRY_LEN: usize = 2;
/// Smallest possible encoded PEERS address: a one-byte length, one byte.
const MIN_ADDR_LEN: usize = 2;

/// Frame type bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Identity and challenge; first frame in each direction.
    Hello = 1,
    /// HMAC response to the peer's challenge.
    Auth = 2,
    /// All non-zero local counts, possibly split over several frames.
    Snapshot = 3,
    /// New absolute counts of the topics that changed.
    Delta = 4,
    /// Liveness when there was nothing else to send.
    Heartbeat = 5,
    /// Listen addresses of known peers.
    Peers = 6,
    /// The sender is closing the connection (and, with code SHUTDOWN, leaving).
    Bye = 7,
}

impl FrameType {
    /// The type for a type byte, if it is one of v1's.
    pub fn from_u8(b: u8) -> Option<FrameType> {
        Some(match b {
            1 => FrameType::Hello,
            2 => FrameType::Auth,
            3 => FrameType::Snapshot,
            4 => FrameType::Delta,
            5 => FrameType::Heartbeat,
            6 => FrameType::Peers,
            7 => FrameType::Bye,
            _ => return None,
        })
    }

    /// Upper-case name as used in docs and logs.
    pub fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "HELLO",
            FrameType::Auth => "AUTH",
            FrameType::Snapshot => "SNAPSHOT",
            FrameType::Delta => "DELTA",
            FrameType::Heartbeat => "HEARTBEAT",
            FrameType::Peers => "PEERS",
            FrameType::Bye => "BYE",
        }
    }
}

/// HELLO: who the sender is, and its challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the sender speaks.
    pub version: u64,
    /// Cluster name; peers in different clusters refuse each other.
    pub cluster: String,
    /// Human-readable node name (not required to be unique).
    pub node_name: String,
    /// Random 64-bit node id, fixed for the life of the process.
    pub node_id: u64,
    /// Random 64-bit incarnation, new on every start.
    pub incarnation: u64,
    /// `host:port` the sender accepts peers on, or empty.
    pub listen: String,
    /// Fresh random challenge for this connection.
    pub nonce: [u8; NONCE_LEN],
}

/// One `(topic, count)` pair of a SNAPSHOT or DELTA.
///
/// `name` is `Some` when this entry (re)defines per-connection topic id `id`
/// (the DEFINE bit of the topic ref); otherwise `id` refers to an earlier
/// definition on the same connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Per-connection topic id (0 ..= MAX_TOPIC_ID).
    pub id: u32,
    /// Topic name, present when this entry defines `id`.
    pub name: Option<Vec<u8>>,
    /// The sender's new absolute local count for the topic.
    pub count: u64,
}

/// SNAPSHOT flag: this frame starts a snapshot.
pub const SNAPSHOT_FIRST: u8 = 0x01;
/// SNAPSHOT flag: this frame completes a snapshot.
pub const SNAPSHOT_LAST: u8 = 0x02;

/// One frame of a (possibly multi-frame) snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// State sequence number (shared with DELTA).
    pub seq: u64,
    /// Starts a new snapshot.
    pub first: bool,
    /// Completes the snapshot.
    pub last: bool,
    /// Topic counts.
    pub entries: Vec<Entry>,
}

/// New absolute local counts of changed topics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    /// State sequence number (shared with SNAPSHOT).
    pub seq: u64,
    /// Topic counts.
    pub entries: Vec<Entry>,
}

/// Why a connection is being closed. Codes are open-ended: an unknown code is
/// carried as-is and treated like [`ByeCode::PROTOCOL_ERROR`]'s "connection
/// over, node not leaving".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ByeCode(pub u64);

impl ByeCode {
    /// Graceful shutdown: the sender is leaving; drop its counts at once.
    pub const SHUTDOWN: ByeCode = ByeCode(0);
    /// The sender saw a malformed or out-of-state frame.
    pub const PROTOCOL_ERROR: ByeCode = ByeCode(1);
    /// The receiver's AUTH did not verify.
    pub const AUTH_FAILED: ByeCode = ByeCode(2);
    /// The receiver's HELLO version is not spoken by the sender.
    pub const VERSION_UNSUPPORTED: ByeCode = ByeCode(3);
    /// The receiver's HELLO names another cluster.
    pub const CLUSTER_MISMATCH: ByeCode = ByeCode(4);
    /// Another connection between the same two nodes is kept instead.
    pub const DUPLICATE: ByeCode = ByeCode(5);
    /// The receiver is the sender itself (same node id).
    pub const SELF_CONNECTION: ByeCode = ByeCode(6);
    /// The handshake took too long, or the receiver was silent too long.
    pub const TIMEOUT: ByeCode = ByeCode(7);

    /// Name for logs.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "shutdown",
            1 => "protocol error",
            2 => "auth failed",
            3 => "version unsupported",
            4 => "cluster mismatch",
            5 => "duplicate connection",
            6 => "self connection",
            7 => "timeout",
            _ => "unknown",
        }
    }
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// See [`Hello`].
    Hello(Hello),
    /// HMAC-SHA256 response; see `handshake`.
    Auth {
        /// The MAC.
        mac: [u8; MAC_LEN],
    },
    /// See [`Snapshot`].
    Snapshot(Snapshot),
    /// See [`Delta`].
    Delta(Delta),
    /// Liveness; carries the sequence number of the last state frame sent
    /// (0 when none yet).
    Heartbeat {
        /// Last SNAPSHOT/DELTA sequence number sent on this connection.
        last_seq: u64,
    },
    /// Listen addresses of peers the sender knows.
    Peers {
        /// `host:port` strings.
        addrs: Vec<String>,
    },
    /// Closing; see [`ByeCode`].
    Bye {
        /// Why.
        code: ByeCode,
        /// Human-readable detail for logs.
        message: String,
    },
}

impl Frame {
    /// This frame's type.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello(_) => FrameType::Hello,
            Frame::Auth { .. } => FrameType::Auth,
            Frame::Snapshot(_) => FrameType::Snapshot,
            Frame::Delta(_) => FrameType::Delta,
            Frame::Heartbeat { .. } => FrameType::Heartbeat,
            Frame::Peers { .. } => FrameType::Peers,
            Frame::Bye { .. } => FrameType::Bye,
        }
    }
}

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

// ---------------------------------------------------------------------------
// Varints
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Body reader
// ---------------------------------------------------------------------------

/// Cursor over a frame body; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated(field));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }

    fn u64_le(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array::<8>(field)?))
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, WireError> {
        match get_varint(self.buf) {
            Ok((v, n)) => {
                self.buf = &self.buf[n..];
                Ok(v)
            }
            Err(WireError::Truncated(_)) => Err(WireError::Truncated(field)),
            Err(e) => Err(e),
        }
    }

    /// Length-prefixed bytes with `min ..= max` length.
    fn bytes(&mut self, field: &'static str, min: usize, max: usize) -> Result<&'a [u8], WireError> {
        let len = self.varint(field)?;
        if len < min as u64 || len > max as u64 {
            return Err(WireError::BadLength { field, len });
        }
        // len <= max <= MAX_TOPIC_LEN, so the cast is lossless.
        self.take(len as usize, field)
    }

    fn string(&mut self, field: &'static str, max: usize) -> Result<String, WireError> {
        let b = self.bytes(field, 0, max)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(WireError::BadUtf8(field)),
        }
    }

    /// A list count, bounded by `cap` and by what the rest of the body could
    /// hold at `min_item` bytes per item.
    fn count(&mut self, field: &'static str, cap: usize, min_item: usize) -> Result<usize, WireError> {
        let n = self.varint(field)?;
        let fits = (self.remaining() / min_item) as u64;
        if n > cap as u64 || n > fits {
            return Err(WireError::TooManyItems { field, count: n });
        }
        Ok(n as usize)
    }

    fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes(self.buf.len()))
        }
    }
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

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
    let mut r = Reader { buf: body };
    let frame = match ft {
        FrameType::Hello => Frame::Hello(decode_hello(&mut r)?),
        FrameType::Auth => Frame::Auth { mac: r.array::<MAC_LEN>("mac")? },
        FrameType::Snapshot => {
            let flags = r.u8("flags")?;
            if flags & !(SNAPSHOT_FIRST | SNAPSHOT_LAST) != 0 {
                return Err(WireError::BadFlags(flags));
            }
            let seq = r.varint("seq")?;
            let entries = decode_entries(&mut r)?;
            Frame::Snapshot(Snapshot {
                seq,
                first: flags & SNAPSHOT_FIRST != 0,
                last: flags & SNAPSHOT_LAST != 0,
                entries,
            })
        }
        FrameType::Delta => {
            let seq = r.varint("seq")?;
            let entries = decode_entries(&mut r)?;
            Frame::Delta(Delta { seq, entries })
        }
        FrameType::Heartbeat => Frame::Heartbeat { last_seq: r.varint("last_seq")? },
        FrameType::Peers => {
            let n = r.count("peers", MAX_PEERS, MIN_ADDR_LEN)?;
            let mut addrs = Vec::with_capacity(n);
            for _ in 0..n {
                let a = r.string("peer address", MAX_NAME_LEN)?;
                if a.is_empty() {
                    return Err(WireError::BadLength { field: "peer address", len: 0 });
                }
                addrs.push(a);
            }
            Frame::Peers { addrs }
        }
        FrameType::Bye => {
            let code = ByeCode(r.varint("code")?);
            let message = r.string("message", MAX_BYE_MESSAGE_LEN)?;
            Frame::Bye { code, message }
        }
    };
    r.finish()?;
    Ok(frame)
}

fn decode_hello(r: &mut Reader<'_>) -> Result<Hello, WireError> {
    if r.array::<4>("magic")? != MAGIC {
        return Err(WireError::BadMagic);
    }
    Ok(Hello {
        version: r.varint("version")?,
        cluster: r.string("cluster", MAX_NAME_LEN)?,
        node_name: r.string("node name", MAX_NAME_LEN)?,
        node_id: r.u64_le("node id")?,
        incarnation: r.u64_le("incarnation")?,
        listen: r.string("listen", MAX_NAME_LEN)?,
        nonce: r.array::<NONCE_LEN>("nonce")?,
    })
}

fn decode_entries(r: &mut Reader<'_>) -> Result<Vec<Entry>, WireError> {
    // An entry is at least MIN_ENTRY_LEN bytes; `count` bounds n by what is
    // left in the body, so this allocation is at most a small multiple of the
    // frame cap.
    let n = r.count("entries", usize::MAX, MIN_ENTRY_LEN)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let tref = r.varint("topic ref")?;
        let id = tref >> 1;
        if id > u64::from(MAX_TOPIC_ID) {
            return Err(WireError::TopicIdTooLarge(id));
        }
        let name = if tref & 1 == 1 { Some(r.bytes("topic", 1, MAX_TOPIC_LEN)?.to_vec()) } else { None };
        let count = r.varint("count")?;
        entries.push(Entry { id: id as u32, name, count });
    }
    Ok(entries)
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn check_len(field: &'static str, len: usize, min: usize, max: usize) -> Result<(), WireError> {
    if len < min || len > max {
        Err(WireError::BadLength { field, len: len as u64 })
    } else {
        Ok(())
    }
}

/// Encoded size of one entry.
pub fn entry_len(e: &Entry) -> usize {
    let tref = (u64::from(e.id) << 1) | u64::from(e.name.is_some());
    varint_len(tref) + e.name.as_ref().map_or(0, |n| varint_len(n.len() as u64) + n.len()) + varint_len(e.count)
}

fn encode_entries(out: &mut Vec<u8>, entries: &[Entry]) -> Result<(), WireError> {
    put_varint(out, entries.len() as u64);
    for e in entries {
        if e.id > MAX_TOPIC_ID {
            return Err(WireError::TopicIdTooLarge(u64::from(e.id)));
        }
        let tref = (u64::from(e.id) << 1) | u64::from(e.name.is_some());
        put_varint(out, tref);
        if let Some(name) = &e.name {
            check_len("topic", name.len(), 1, MAX_TOPIC_LEN)?;
            put_bytes(out, name);
        }
        put_varint(out, e.count);
    }
    Ok(())
}

/// Appends the body of `frame` (no header, type or checksum) to `out`.
///
/// Fails, leaving `out` with a partial body, when a field is out of range;
/// [`encode_frame`] rolls that back.
pub fn encode_body(frame: &Frame, out: &mut Vec<u8>) -> Result<(), WireError> {
    match frame {
        Frame::Hello(h) => {
            check_len("cluster", h.cluster.len(), 0, MAX_NAME_LEN)?;
            check_len("node name", h.node_name.len(), 0, MAX_NAME_LEN)?;
            check_len("listen", h.listen.len(), 0, MAX_NAME_LEN)?;
            out.extend_from_slice(&MAGIC);
            put_varint(out, h.version);
            put_bytes(out, h.cluster.as_bytes());
            put_bytes(out, h.node_name.as_bytes());
            out.extend_from_slice(&h.node_id.to_le_bytes());
            out.extend_from_slice(&h.incarnation.to_le_bytes());
            put_bytes(out, h.listen.as_bytes());
            out.extend_from_slice(&h.nonce);
        }
        Frame::Auth { mac } => out.extend_from_slice(mac),
        Frame::Snapshot(s) => {
            let mut flags = 0;
            if s.first {
                flags |= SNAPSHOT_FIRST;
            }
            if s.last {
                flags |= SNAPSHOT_LAST;
            }
            out.push(flags);
            put_varint(out, s.seq);
            encode_entries(out, &s.entries)?;
        }
        Frame::Delta(d) => {
            put_varint(out, d.seq);
            encode_entries(out, &d.entries)?;
        }
        Frame::Heartbeat { last_seq } => put_varint(out, *last_seq),
        Frame::Peers { addrs } => {
            if addrs.len() > MAX_PEERS {
                return Err(WireError::TooManyItems { field: "peers", count: addrs.len() as u64 });
            }
            put_varint(out, addrs.len() as u64);
            for a in addrs {
                check_len("peer address", a.len(), 1, MAX_NAME_LEN)?;
                put_bytes(out, a.as_bytes());
            }
        }
        Frame::Bye { code, message } => {
            check_len("message", message.len(), 0, MAX_BYE_MESSAGE_LEN)?;
            put_varint(out, code.0);
            put_bytes(out, message.as_bytes());
        }
    }
    Ok(())
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

/// Bytes a SNAPSHOT or DELTA frame spends outside its entries, at most:
/// header, type, flags, seq and entry count varints, checksum.
pub const STATE_FRAME_OVERHEAD: usize = HEADER_LEN + 1 + 1 + MAX_VARINT_LEN + MAX_VARINT_LEN + TRAILER_LEN;

// ---------------------------------------------------------------------------
// Streaming decoder
// ---------------------------------------------------------------------------

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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod prop;
