//! The frames: the one table of frame types, and the decoded values.
//!
//! `frame_types!` below is the only list of frame types (the shape of
//! quinn-proto's `frame_types!`). Each row names the [`FrameType`] variant,
//! its type byte, its upper-case name, the [`Frame`] pattern of its values,
//! and its body codec in `body.rs`; the macro generates the type enum,
//! [`FrameType::from_u8`], [`FrameType::name`], [`FrameType::ALL`],
//! [`Frame::frame_type`], and the decode and encode dispatch. Adding a frame
//! type is one row, one [`Frame`] variant and one codec pair: the generated
//! matches are exhaustive, so a variant without a row (or a row without a
//! variant) does not compile; docs/ARCHITECTURE.md ("Where to change what")
//! lists the rest (the state machine, tests, seeds). A test checks the
//! table against the one in docs/PROTOCOL.md section 5.

use super::body::{
    decode_auth, decode_bye, decode_delta, decode_heartbeat, decode_hello, decode_peers, decode_snapshot, encode_auth,
    encode_bye, encode_delta, encode_heartbeat, encode_hello, encode_peers, encode_snapshot, Reader,
};
use super::{ByeCode, WireError, MAC_LEN, NONCE_LEN};

/// Declares the frame types; see the module docs. A row:
///
/// ```text
/// /// doc of the type
/// Variant = type_byte, "NAME", Frame::Variant(bindings) => decode_fn, encode_fn(bindings);
/// ```
macro_rules! frame_types {
    ($(
        $(#[$doc:meta])*
        $ty:ident = $byte:literal, $name:literal, $pat:pat => $decode:ident, $encode:ident($($arg:ident),*);
    )*) => {
        /// Frame type bytes.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum FrameType {
            $($(#[$doc])* $ty = $byte,)*
        }

        impl FrameType {
            /// Every frame type of v1, in type-byte order.
            pub const ALL: &'static [FrameType] = &[$(FrameType::$ty),*];

            /// The type for a type byte, if it is one of v1's.
            pub fn from_u8(b: u8) -> Option<FrameType> {
                match b {
                    $($byte => Some(FrameType::$ty),)*
                    _ => None,
                }
            }

            /// Upper-case name as used in docs and logs.
            pub fn name(self) -> &'static str {
                match self {
                    $(FrameType::$ty => $name,)*
                }
            }

            /// Decodes a body of this type (the cursor is checked for
            /// trailing bytes by the caller).
            pub(super) fn decode(self, r: &mut Reader<'_>) -> Result<Frame, WireError> {
                match self {
                    $(FrameType::$ty => $decode(r),)*
                }
            }
        }

        impl Frame {
            /// This frame's type.
            #[allow(unused_variables)]
            pub fn frame_type(&self) -> FrameType {
                match self {
                    $($pat => FrameType::$ty,)*
                }
            }

            /// Appends this frame's body (no header, type or checksum).
            pub(super) fn encode_fields(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
                match self {
                    $($pat => $encode($($arg,)* out),)*
                }
            }
        }
    };
}

frame_types! {
    /// Identity and challenge; first frame in each direction.
    Hello = 1, "HELLO", Frame::Hello(h) => decode_hello, encode_hello(h);
    /// HMAC response to the peer's challenge.
    Auth = 2, "AUTH", Frame::Auth { mac } => decode_auth, encode_auth(mac);
    /// All non-zero local counts, possibly split over several frames.
    Snapshot = 3, "SNAPSHOT", Frame::Snapshot(s) => decode_snapshot, encode_snapshot(s);
    /// New absolute counts of the topics that changed.
    Delta = 4, "DELTA", Frame::Delta(d) => decode_delta, encode_delta(d);
    /// Liveness when there was nothing else to send.
    Heartbeat = 5, "HEARTBEAT", Frame::Heartbeat { last_seq } => decode_heartbeat, encode_heartbeat(last_seq);
    /// Listen addresses of known peers.
    Peers = 6, "PEERS", Frame::Peers { addrs } => decode_peers, encode_peers(addrs);
    /// The sender is closing the connection (and, with code SHUTDOWN, leaving).
    Bye = 7, "BYE", Frame::Bye { code, message } => decode_bye, encode_bye(code, message);
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
    /// Topic name, present when this entry defines `id`: shared bytes, so
    /// that the name a sender keeps in its id table and the one a receiver
    /// decodes are the very buffers its tables keep (no copy per entry).
    pub name: Option<std::sync::Arc<[u8]>>,
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
