//! Frame bodies: one decode and one encode function per frame type (the
//! table in `frame.rs` dispatches to them), over a bounds-checked cursor.
//!
//! Decoding is strict (one encoding per value, see the module docs of
//! `wire`) and bounded: list counts are checked against the bytes left in the
//! body before anything is allocated for them.

use super::{
    get_varint, put_varint, varint_len, ByeCode, Delta, Entry, Frame, Hello, Snapshot, WireError, MAC_LEN, MAGIC,
    MAX_BYE_MESSAGE_LEN, MAX_NAME_LEN, MAX_PEERS, MAX_TOPIC_ID, MAX_TOPIC_LEN, NONCE_LEN, SNAPSHOT_FIRST,
    SNAPSHOT_LAST,
};

/// Smallest possible encoded entry: a one-byte topic ref and a one-byte count.
const MIN_ENTRY_LEN: usize = 2;
/// Smallest possible encoded PEERS address: a one-byte length, one byte.
const MIN_ADDR_LEN: usize = 2;

/// Cursor over a frame body; every read is bounds-checked.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

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

    /// Ends the body: no bytes may be left.
    pub(super) fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes(self.buf.len()))
        }
    }
}

// ---------------------------------------------------------------------------
// Decoding, one function per frame type
// ---------------------------------------------------------------------------

pub(super) fn decode_hello(r: &mut Reader<'_>) -> Result<Frame, WireError> {
    if r.array::<4>("magic")? != MAGIC {
        return Err(WireError::BadMagic);
    }
    Ok(Frame::Hello(Hello {
        version: r.varint("version")?,
        cluster: r.string("cluster", MAX_NAME_LEN)?,
        node_name: r.string("node name", MAX_NAME_LEN)?,
        node_id: r.u64_le("node id")?,
        incarnation: r.u64_le("incarnation")?,
        listen: r.string("listen", MAX_NAME_LEN)?,
        nonce: r.array::<NONCE_LEN>("nonce")?,
    }))
}

pub(super) fn decode_auth(r: &mut Reader<'_>) -> Result<Frame, WireError> {
    Ok(Frame::Auth { mac: r.array::<MAC_LEN>("mac")? })
}

pub(super) fn decode_snapshot(r: &mut Reader<'_>) -> Result<Frame, WireError> {
    let flags = r.u8("flags")?;
    if flags & !(SNAPSHOT_FIRST | SNAPSHOT_LAST) != 0 {
        return Err(WireError::BadFlags(flags));
    }
    let seq = r.varint("seq")?;
    let entries = decode_entries(r)?;
    Ok(Frame::Snapshot(Snapshot { seq, first: flags & SNAPSHOT_FIRST != 0, last: flags & SNAPSHOT_LAST != 0, entries }))
}

pub(super) fn decode_delta(r: &mut Reader<'_>) -> Result<Frame, WireError> {
    let seq = r.varint("seq")?;
    let entries = decode_entries(r)?;
    Ok(Frame::Delta(Delta { seq, entries }))
}

pub(super) fn decode_heartbeat(r: &mut Reader<'_>) -> Result<Frame, WireError> {
    Ok(Frame::Heartbeat { last_seq: r.varint("last_seq")? })
}

pub(super) fn decode_peers(r: &mut Reader<'_>) -> Result<Frame, WireError> {
    let n = r.count("peers", MAX_PEERS, MIN_ADDR_LEN)?;
    let mut addrs = Vec::with_capacity(n);
    for _ in 0..n {
        let a = r.string("peer address", MAX_NAME_LEN)?;
        if a.is_empty() {
            return Err(WireError::BadLength { field: "peer address", len: 0 });
        }
        addrs.push(a);
    }
    Ok(Frame::Peers { addrs })
}

pub(super) fn decode_bye(r: &mut Reader<'_>) -> Result<Frame, WireError> {
    let code = ByeCode(r.varint("code")?);
    let message = r.string("message", MAX_BYE_MESSAGE_LEN)?;
    Ok(Frame::Bye { code, message })
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
        let name = if tref & 1 == 1 { Some(r.bytes("topic", 1, MAX_TOPIC_LEN)?.into()) } else { None };
        let count = r.varint("count")?;
        entries.push(Entry { id: id as u32, name, count });
    }
    Ok(entries)
}

// ---------------------------------------------------------------------------
// Encoding, one function per frame type
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

pub(super) fn encode_hello(h: &Hello, out: &mut Vec<u8>) -> Result<(), WireError> {
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
    Ok(())
}

pub(super) fn encode_auth(mac: &[u8; MAC_LEN], out: &mut Vec<u8>) -> Result<(), WireError> {
    out.extend_from_slice(mac);
    Ok(())
}

pub(super) fn encode_snapshot(s: &Snapshot, out: &mut Vec<u8>) -> Result<(), WireError> {
    let mut flags = 0;
    if s.first {
        flags |= SNAPSHOT_FIRST;
    }
    if s.last {
        flags |= SNAPSHOT_LAST;
    }
    out.push(flags);
    put_varint(out, s.seq);
    encode_entries(out, &s.entries)
}

pub(super) fn encode_delta(d: &Delta, out: &mut Vec<u8>) -> Result<(), WireError> {
    put_varint(out, d.seq);
    encode_entries(out, &d.entries)
}

pub(super) fn encode_heartbeat(last_seq: &u64, out: &mut Vec<u8>) -> Result<(), WireError> {
    put_varint(out, *last_seq);
    Ok(())
}

pub(super) fn encode_peers(addrs: &[String], out: &mut Vec<u8>) -> Result<(), WireError> {
    if addrs.len() > MAX_PEERS {
        return Err(WireError::TooManyItems { field: "peers", count: addrs.len() as u64 });
    }
    put_varint(out, addrs.len() as u64);
    for a in addrs {
        check_len("peer address", a.len(), 1, MAX_NAME_LEN)?;
        put_bytes(out, a.as_bytes());
    }
    Ok(())
}

pub(super) fn encode_bye(code: &ByeCode, message: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    check_len("message", message.len(), 0, MAX_BYE_MESSAGE_LEN)?;
    put_varint(out, code.0);
    put_bytes(out, message.as_bytes());
    Ok(())
}

/// Encoded size of one entry.
pub fn entry_len(e: &Entry) -> usize {
    let tref = (u64::from(e.id) << 1) | u64::from(e.name.is_some());
    varint_len(tref) + e.name.as_ref().map_or(0, |n| varint_len(n.len() as u64) + n.len()) + varint_len(e.count)
}

pub(super) fn encode_entries(out: &mut Vec<u8>, entries: &[Entry]) -> Result<(), WireError> {
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
