//! Why a connection closes, and the BYE code that says so.

use std::fmt;

use super::super::wire::{ByeCode, FrameType, WireError, PROTOCOL_VERSION};

/// Why a connection is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnError {
    /// Bytes that do not decode.
    Wire(WireError),
    /// A frame the current state does not accept.
    Unexpected {
        /// The state.
        state: &'static str,
        /// The frame's type.
        frame: FrameType,
    },
    /// The peer speaks another protocol version.
    VersionUnsupported(u64),
    /// The peer belongs to another cluster.
    ClusterMismatch(String),
    /// The peer is this node (same node id).
    SelfConnection,
    /// The peer's HELLO echoes our nonce.
    NonceReflected,
    /// The peer's AUTH did not verify.
    AuthFailed,
    /// The peer closed the connection before authenticating.
    RejectedByPeer {
        /// Its BYE code.
        code: ByeCode,
        /// Its BYE message.
        message: String,
    },
    /// Not authenticated within the handshake timeout.
    HandshakeTimeout,
    /// Nothing received for longer than `down_after_ms`.
    PeerSilent(u64),
    /// A SNAPSHOT/DELTA/HEARTBEAT sequence number out of order.
    BadSeq {
        /// Expected.
        expected: u64,
        /// Received.
        got: u64,
    },
    /// A DEFINE for an id that is neither in use nor the next free one.
    BadDefine {
        /// Defined id.
        id: u32,
        /// Next free id.
        next: u32,
    },
    /// A reference to an id that was never defined.
    UnknownTopicId(u32),
    /// A SNAPSHOT frame without FIRST outside a snapshot, a FIRST inside
    /// one, or a DELTA before the first complete snapshot.
    SnapshotOrder(&'static str),
    /// More than [`MAX_SNAPSHOT_ENTRIES`](super::MAX_SNAPSHOT_ENTRIES) entries in one snapshot.
    SnapshotTooLarge,
    /// The peer passed one of our per-peer limits (`max_topic_len`,
    /// `max_peer_topics`, `max_peer_topic_bytes`): `what` it passed, `limit`.
    PeerTooLarge {
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: usize,
    },
    /// The peer redefined a topic id whose last count was not 0 (a sender
    /// may only reuse the ids of topics it last sent as 0).
    BadRedefine(u32),
    /// We have more live topics than per-connection ids.
    TooManyTopics,
    /// Sending state before authentication (a caller bug, refused).
    NotEstablished,
    /// The connection was already closed.
    Closed,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Wire(e) => write!(f, "malformed frame: {e}"),
            ConnError::Unexpected { state, frame } => {
                write!(f, "unexpected {} in state {state}", frame.name())
            }
            ConnError::VersionUnsupported(v) => {
                write!(f, "peer speaks protocol version {v}, we speak {PROTOCOL_VERSION}")
            }
            ConnError::ClusterMismatch(c) => write!(f, "peer is in cluster {c:?}"),
            ConnError::SelfConnection => write!(f, "connected to ourselves"),
            ConnError::NonceReflected => write!(f, "peer reflected our nonce"),
            ConnError::AuthFailed => write!(f, "authentication failed (wrong secret?)"),
            ConnError::RejectedByPeer { code, message } => {
                write!(f, "peer refused us: {} ({message})", code.name())
            }
            ConnError::HandshakeTimeout => write!(f, "handshake timed out"),
            ConnError::PeerSilent(ms) => write!(f, "peer silent for {ms} ms"),
            ConnError::BadSeq { expected, got } => {
                write!(f, "sequence number {got}, expected {expected}")
            }
            ConnError::BadDefine { id, next } => {
                write!(f, "topic id {id} defined out of order (next is {next})")
            }
            ConnError::UnknownTopicId(id) => write!(f, "undefined topic id {id}"),
            ConnError::SnapshotOrder(what) => write!(f, "snapshot order: {what}"),
            ConnError::SnapshotTooLarge => write!(f, "snapshot too large"),
            ConnError::PeerTooLarge { what, limit } => write!(f, "peer over our limit of {limit} {what}"),
            ConnError::BadRedefine(id) => write!(f, "redefined topic id {id} whose count is not 0"),
            ConnError::TooManyTopics => write!(f, "too many live topics for one connection"),
            ConnError::NotEstablished => write!(f, "connection not authenticated"),
            ConnError::Closed => write!(f, "connection closed"),
        }
    }
}

impl std::error::Error for ConnError {}

impl ConnError {
    /// The BYE code we send when closing for this reason, if any.
    pub(super) fn bye_code(&self) -> Option<ByeCode> {
        Some(match self {
            ConnError::VersionUnsupported(_) => ByeCode::VERSION_UNSUPPORTED,
            ConnError::ClusterMismatch(_) => ByeCode::CLUSTER_MISMATCH,
            ConnError::SelfConnection => ByeCode::SELF_CONNECTION,
            ConnError::AuthFailed => ByeCode::AUTH_FAILED,
            ConnError::HandshakeTimeout | ConnError::PeerSilent(_) => ByeCode::TIMEOUT,
            ConnError::PeerTooLarge { .. } => ByeCode::PEER_TOO_LARGE,
            ConnError::RejectedByPeer { .. } | ConnError::NotEstablished | ConnError::Closed => return None,
            _ => ByeCode::PROTOCOL_ERROR,
        })
    }
}
