//! The per-connection protocol state machine, as a pure value.
//!
//! A [`Conn`] knows nothing of sockets or clocks. The caller feeds it decoded
//! frames ([`Conn::handle_frame`]) and the current time in milliseconds of any
//! monotonic clock ([`Conn::handle_timeout`]), asks it to send state
//! ([`Conn::send_snapshot`], [`Conn::send_delta`], [`Conn::send_peers`]), and
//! takes out what it produced: frames to write ([`Conn::poll_transmit`]) and
//! events for the node ([`Conn::poll_event`]). The shape follows quinn-proto's
//! sans-IO `Connection`. Because it is deterministic (the nonce is passed in
//! too) a fuzz target can drive two of them with arbitrary frame sequences.
//!
//! # States
//!
//! | state         | entered when                        | accepts                         |
//! |---------------|-------------------------------------|---------------------------------|
//! | `AwaitHello`  | created; our HELLO is queued        | HELLO; BYE                      |
//! | `AwaitAuth`   | peer HELLO valid; our AUTH queued   | AUTH; BYE                       |
//! | `Established` | peer AUTH verified                  | SNAPSHOT, DELTA, HEARTBEAT, PEERS, BYE |
//! | `Closed`      | BYE sent or received, any error     | nothing                         |
//!
//! Any frame not in the "accepts" column closes the connection with an error
//! (and a BYE to the peer, best effort). State (SNAPSHOT, DELTA, PEERS) can
//! only be queued in `Established`, i.e. after the *peer* proved it knows the
//! secret; [`Conn::send_delta`] and friends return
//! [`ConnError::NotEstablished`] otherwise, so no code path can leak counts to
//! an unauthenticated peer.
//!
//! # Authentication
//!
//! Both sides send HELLO at once, each with a fresh 32-byte nonce. On the
//! peer's HELLO each side sends
//!
//! ```text
//! AUTH.mac = HMAC-SHA256(secret, "HCNT-AUTH-v1" || role || dialer_hello || acceptor_hello)
//! ```
//!
//! where `role` is one byte naming the *sender* of this AUTH (`'D'` for the
//! side that opened the TCP connection, `'A'` for the side that accepted it)
//! and `*_hello` are the HELLO bodies exactly as encoded on the wire (the
//! codec is strict, so re-encoding a decoded HELLO yields the sent bytes).
//! Each MAC therefore covers both nonces, the cluster name, both node ids and
//! incarnations, names and listen addresses; the role byte makes the two
//! directions' MACs differ, so a response reflected back to its author (on
//! the same or another connection) fails. MACs are checked with
//! `Mac::verify_slice`, in constant time.
//!
//! # State frames
//!
//! After authentication each side sends one complete snapshot (SNAPSHOT frames
//! from FIRST to LAST) before any DELTA, and may send a new snapshot later (to
//! resynchronise a lagging peer). SNAPSHOT and DELTA frames carry sequence
//! numbers 1, 2, 3, ... per connection and direction; a gap is an error.
//! Topics are referred to by per-connection ids defined inline (see
//! [`wire::Entry`]); [`OutTopics`] assigns them and reuses the ids of topics
//! last sent as zero once the table grows past a soft cap.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Settings;
use crate::sync::{Arc, SharedBytes};

use super::wire::{
    self, ByeCode, Delta, Entry, Frame, FrameType, Hello, Snapshot, WireError, MAC_LEN, MAX_FRAME_LEN,
    MAX_HANDSHAKE_FRAME_LEN, MAX_TOPIC_ID, NONCE_LEN, PROTOCOL_VERSION,
};

/// A topic name, shared between the id table and the events that carry it.
pub type Topic = SharedBytes;

/// Domain-separation label at the start of every AUTH MAC input.
pub const AUTH_LABEL: &[u8; 12] = b"HCNT-AUTH-v1";
/// Role byte of an AUTH sent by the side that opened the connection.
pub const ROLE_DIALER: u8 = b'D';
/// Role byte of an AUTH sent by the side that accepted the connection.
pub const ROLE_ACCEPTOR: u8 = b'A';
/// Most entries a peer may put in one (multi-frame) snapshot.
pub const MAX_SNAPSHOT_ENTRIES: usize = 1 << 24;
/// Target size of the state frames we send: large enough that per-frame
/// overhead is negligible, small enough to keep peers' read buffers modest.
pub const TARGET_FRAME_LEN: usize = 64 * 1024;
/// Outbound topic-id table size past which ids of zero-count topics are reused.
pub const DEFAULT_ID_SOFT_CAP: usize = 1 << 20;

/// The shared cluster secret, keyed into HMAC-SHA256 once.
///
/// Its `Debug` never prints the secret.
#[derive(Clone)]
pub struct AuthKey(Hmac<Sha256>);

impl AuthKey {
    /// Keys HMAC-SHA256 with `secret` (any length; HMAC hashes long keys).
    pub fn new(secret: &[u8]) -> AuthKey {
        // HMAC accepts keys of every length, so this cannot fail; fall back to
        // an empty key rather than panic should the crate ever change that.
        let mac =
            Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
        AuthKey(mac)
    }

    fn mac_state(&self, role: u8, dialer: &Hello, acceptor: &Hello) -> Hmac<Sha256> {
        let mut m = self.0.clone();
        m.update(AUTH_LABEL);
        m.update(&[role]);
        let mut body = Vec::with_capacity(128);
        // HELLOs built or accepted by `Conn` always encode (they were checked
        // when built or decoded); an impossible failure yields an input no
        // honest peer produces, so authentication just fails.
        let _ = wire::encode_body(&Frame::Hello(dialer.clone()), &mut body);
        m.update(&body);
        body.clear();
        let _ = wire::encode_body(&Frame::Hello(acceptor.clone()), &mut body);
        m.update(&body);
        m
    }

    /// The AUTH MAC sent by the side with `role` on a connection whose
    /// dialer sent `dialer` and acceptor sent `acceptor`.
    pub fn mac(&self, role: u8, dialer: &Hello, acceptor: &Hello) -> [u8; MAC_LEN] {
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&self.mac_state(role, dialer, acceptor).finalize().into_bytes());
        out
    }

    /// Constant-time check of a received AUTH MAC.
    pub fn verify(&self, role: u8, dialer: &Hello, acceptor: &Hello, mac: &[u8]) -> bool {
        self.mac_state(role, dialer, acceptor).verify_slice(mac).is_ok()
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthKey(<secret>)")
    }
}

/// Which end of the TCP connection we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// We opened the connection.
    Dialer,
    /// We accepted it.
    Acceptor,
}

impl Role {
    fn byte(self) -> u8 {
        match self {
            Role::Dialer => ROLE_DIALER,
            Role::Acceptor => ROLE_ACCEPTOR,
        }
    }

    fn other(self) -> Role {
        match self {
            Role::Dialer => Role::Acceptor,
            Role::Acceptor => Role::Dialer,
        }
    }
}

/// Everything a connection needs to know about the local node.
#[derive(Clone, Debug)]
pub struct ConnParams {
    /// The node's settings; a connection reads `cluster` (must equal the
    /// peer's) and `down_after` (close when nothing was received for longer).
    pub settings: Arc<Settings>,
    /// Our node name (configured or generated).
    pub node_name: String,
    /// Our node id.
    pub node_id: u64,
    /// Our incarnation.
    pub incarnation: u64,
    /// Our listen address, or empty.
    pub listen: String,
    /// The keyed secret.
    pub key: AuthKey,
    /// Give up if not authenticated this long after creation.
    pub handshake_timeout_ms: u64,
    /// Send a HEARTBEAT when nothing was sent for this long.
    pub heartbeat_ms: u64,
    /// Outbound topic-id table size past which zero-count ids are reused.
    pub id_soft_cap: usize,
}

/// The authenticated identity of the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Peer node id.
    pub node_id: u64,
    /// Peer incarnation.
    pub incarnation: u64,
    /// Peer node name.
    pub node_name: String,
    /// Peer listen address (may be empty).
    pub listen: String,
    /// The peer's role on this connection.
    pub role: Role,
}

/// Something the node must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The peer proved it knows the secret; state may flow both ways now.
    Authenticated(PeerIdentity),
    /// A complete snapshot: the peer's non-zero counts, replacing everything
    /// it reported before. Topics absent here are zero.
    Snapshot(Vec<(Topic, u64)>),
    /// New absolute counts of changed topics.
    Delta {
        /// Sequence number of the frame.
        seq: u64,
        /// The counts.
        entries: Vec<(Topic, u64)>,
    },
    /// Listen addresses the peer knows.
    Peers(Vec<String>),
    /// The peer closed the connection. With [`ByeCode::SHUTDOWN`] it is
    /// leaving the cluster; its counts should be dropped at once.
    Bye {
        /// Why.
        code: ByeCode,
        /// Detail.
        message: String,
    },
}

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
    /// More than [`MAX_SNAPSHOT_ENTRIES`] entries in one snapshot.
    SnapshotTooLarge,
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
            ConnError::TooManyTopics => write!(f, "too many live topics for one connection"),
            ConnError::NotEstablished => write!(f, "connection not authenticated"),
            ConnError::Closed => write!(f, "connection closed"),
        }
    }
}

impl std::error::Error for ConnError {}

impl ConnError {
    /// The BYE code we send when closing for this reason, if any.
    fn bye_code(&self) -> Option<ByeCode> {
        Some(match self {
            ConnError::VersionUnsupported(_) => ByeCode::VERSION_UNSUPPORTED,
            ConnError::ClusterMismatch(_) => ByeCode::CLUSTER_MISMATCH,
            ConnError::SelfConnection => ByeCode::SELF_CONNECTION,
            ConnError::AuthFailed => ByeCode::AUTH_FAILED,
            ConnError::HandshakeTimeout | ConnError::PeerSilent(_) => ByeCode::TIMEOUT,
            ConnError::RejectedByPeer { .. } | ConnError::NotEstablished | ConnError::Closed => return None,
            _ => ByeCode::PROTOCOL_ERROR,
        })
    }
}

#[derive(Debug)]
enum State {
    AwaitHello,
    AwaitAuth { peer: Box<Hello> },
    Established,
    Closed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::AwaitHello => "AwaitHello",
            State::AwaitAuth { .. } => "AwaitAuth",
            State::Established => "Established",
            State::Closed => "Closed",
        }
    }
}

/// Outbound per-connection topic ids: name -> id, assigned on first send.
///
/// Ids are dense from 0. Once the table holds `soft_cap` ids, a new topic
/// takes the id of the topic least recently sent as zero (FIFO), so a node
/// that sees millions of short-lived topics keeps a bounded table per peer.
/// Ids of topics last sent non-zero are never reused: the receiver keeps
/// counting them under their name.
#[derive(Debug)]
pub struct OutTopics {
    by_name: HashMap<Topic, u32, foldhash::fast::RandomState>,
    by_id: Vec<(Topic, u64)>,
    zeros: VecDeque<u32>,
    soft_cap: usize,
}

impl OutTopics {
    /// An empty table.
    pub fn new(soft_cap: usize) -> OutTopics {
        OutTopics {
            by_name: HashMap::default(),
            by_id: Vec::new(),
            zeros: VecDeque::new(),
            soft_cap: soft_cap.clamp(1, MAX_TOPIC_ID as usize + 1),
        }
    }

    /// Ids in use.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no id is in use.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The wire entry for sending `count` for `name`, defining an id if needed.
    pub fn entry(&mut self, name: &[u8], count: u64) -> Result<Entry, ConnError> {
        if let Some(&id) = self.by_name.get(name) {
            let slot = &mut self.by_id[id as usize];
            if count == 0 && slot.1 != 0 {
                self.zeros.push_back(id);
            }
            slot.1 = count;
            return Ok(Entry { id, name: None, count });
        }
        let topic = Topic::from(name);
        let id = match self.reusable_id() {
            Some(id) => {
                let old = std::mem::replace(&mut self.by_id[id as usize], (topic.clone(), count));
                self.by_name.remove(&old.0);
                id
            }
            None => {
                if self.by_id.len() > MAX_TOPIC_ID as usize {
                    return Err(ConnError::TooManyTopics);
                }
                self.by_id.push((topic.clone(), count));
                (self.by_id.len() - 1) as u32
            }
        };
        self.by_name.insert(topic, id);
        if count == 0 {
            self.zeros.push_back(id);
        }
        Ok(Entry { id, name: Some(name.to_vec()), count })
    }

    fn reusable_id(&mut self) -> Option<u32> {
        if self.by_id.len() < self.soft_cap {
            return None;
        }
        while let Some(id) = self.zeros.pop_front() {
            // Stale queue entries (sent non-zero since) are skipped.
            if self.by_id.get(id as usize).is_some_and(|s| s.1 == 0) {
                return Some(id);
            }
        }
        None
    }
}

/// Inbound per-connection topic ids, as defined by the peer.
#[derive(Debug, Default)]
struct InTopics {
    by_id: Vec<Topic>,
}

impl InTopics {
    fn resolve(&mut self, e: Entry) -> Result<(Topic, u64), ConnError> {
        let next = self.by_id.len() as u32;
        match e.name {
            Some(name) => {
                let topic: Topic = name.into();
                if e.id == next {
                    self.by_id.push(topic.clone());
                } else if e.id < next {
                    self.by_id[e.id as usize] = topic.clone();
                } else {
                    return Err(ConnError::BadDefine { id: e.id, next });
                }
                Ok((topic, e.count))
            }
            None => match self.by_id.get(e.id as usize) {
                Some(t) => Ok((t.clone(), e.count)),
                None => Err(ConnError::UnknownTopicId(e.id)),
            },
        }
    }
}

/// One connection's protocol state. See the module docs.
#[derive(Debug)]
pub struct Conn {
    role: Role,
    key: AuthKey,
    me: Hello,
    handshake_timeout_ms: u64,
    heartbeat_ms: u64,
    down_after_ms: u64,
    state: State,
    peer: Option<PeerIdentity>,
    started_ms: u64,
    last_rx_ms: u64,
    last_tx_ms: u64,
    // Inbound state.
    in_topics: InTopics,
    in_seq: u64,
    synced: bool,
    pending_snapshot: Option<Vec<(Topic, u64)>>,
    // Outbound state.
    out_topics: OutTopics,
    out_seq: u64,
    sent_snapshot: bool,
    transmit: VecDeque<Frame>,
    events: VecDeque<Event>,
    error: Option<ConnError>,
}

impl Conn {
    /// A new connection in `AwaitHello`, with our HELLO queued.
    pub fn new(p: &ConnParams, role: Role, nonce: [u8; NONCE_LEN], now_ms: u64) -> Conn {
        let me = Hello {
            version: PROTOCOL_VERSION,
            cluster: p.settings.cluster.clone(),
            node_name: p.node_name.clone(),
            node_id: p.node_id,
            incarnation: p.incarnation,
            listen: p.listen.clone(),
            nonce,
        };
        let mut c = Conn {
            role,
            key: p.key.clone(),
            me: me.clone(),
            handshake_timeout_ms: p.handshake_timeout_ms,
            heartbeat_ms: p.heartbeat_ms.max(1),
            down_after_ms: u64::try_from(p.settings.down_after.as_millis()).unwrap_or(u64::MAX).max(1),
            state: State::AwaitHello,
            peer: None,
            started_ms: now_ms,
            last_rx_ms: now_ms,
            last_tx_ms: now_ms,
            in_topics: InTopics::default(),
            in_seq: 0,
            synced: false,
            pending_snapshot: None,
            out_topics: OutTopics::new(p.id_soft_cap),
            out_seq: 0,
            sent_snapshot: false,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            error: None,
        };
        c.queue(Frame::Hello(me), now_ms);
        c
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the peer has authenticated.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established)
    }

    /// Whether the connection is over (no more frames in or out, except
    /// those still queued for transmission).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether the peer's first complete snapshot has arrived.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The authenticated peer, once known.
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }

    /// The reason the connection closed, if it closed on an error.
    pub fn error(&self) -> Option<&ConnError> {
        self.error.as_ref()
    }

    /// Largest frame (type + body) the peer may send us now: small until it
    /// has authenticated.
    pub fn max_frame_len(&self) -> usize {
        if self.peer.is_some() {
            MAX_FRAME_LEN
        } else {
            MAX_HANDSHAKE_FRAME_LEN
        }
    }

    /// Time of the last frame received (or of creation).
    pub fn last_rx_ms(&self) -> u64 {
        self.last_rx_ms
    }

    /// Outbound topic ids in use.
    pub fn out_topic_ids(&self) -> usize {
        self.out_topics.len()
    }

    /// Whether frames are queued for writing.
    pub fn has_transmit(&self) -> bool {
        !self.transmit.is_empty()
    }

    /// Whether our first snapshot has been queued (DELTA may follow).
    pub fn has_sent_snapshot(&self) -> bool {
        self.sent_snapshot
    }

    /// Next frame to write, if any.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.transmit.pop_front()
    }

    /// Next event for the node, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn queue(&mut self, f: Frame, now_ms: u64) {
        self.last_tx_ms = self.last_tx_ms.max(now_ms);
        self.transmit.push_back(f);
    }

    /// Closes with `err`: queues a BYE saying why (never any state) and
    /// returns the error for the caller to log.
    fn fail(&mut self, err: ConnError, now_ms: u64) -> ConnError {
        if !self.is_closed() {
            if let Some(code) = err.bye_code() {
                let mut message = err.to_string();
                truncate_utf8(&mut message, wire::MAX_BYE_MESSAGE_LEN);
                self.queue(Frame::Bye { code, message }, now_ms);
            }
            self.state = State::Closed;
            self.pending_snapshot = None;
            self.error = Some(err.clone());
        }
        err
    }

    /// Reports bytes that failed to decode: closes with a protocol-error BYE.
    pub fn handle_decode_error(&mut self, e: WireError, now_ms: u64) -> ConnError {
        self.fail(ConnError::Wire(e), now_ms)
    }

    /// Closes the connection, queueing a BYE with `code`. With
    /// [`ByeCode::SHUTDOWN`] the peer drops our counts at once.
    pub fn close(&mut self, code: ByeCode, message: &str, now_ms: u64) {
        if self.is_closed() {
            return;
        }
        let mut message = message.to_owned();
        truncate_utf8(&mut message, wire::MAX_BYE_MESSAGE_LEN);
        self.queue(Frame::Bye { code, message }, now_ms);
        self.state = State::Closed;
        self.pending_snapshot = None;
    }

    /// Feeds one decoded frame from the peer.
    ///
    /// On error the connection is closed (a BYE may be queued; write it, then
    /// close the socket).
    pub fn handle_frame(&mut self, frame: Frame, now_ms: u64) -> Result<(), ConnError> {
        if self.is_closed() {
            return Err(ConnError::Closed);
        }
        self.last_rx_ms = self.last_rx_ms.max(now_ms);
        let r = self.dispatch(frame, now_ms);
        r.map_err(|e| self.fail(e, now_ms))
    }

    fn dispatch(&mut self, frame: Frame, now_ms: u64) -> Result<(), ConnError> {
        let unexpected = |s: &State, f: &Frame| ConnError::Unexpected { state: s.name(), frame: f.frame_type() };
        match (&self.state, frame) {
            (State::AwaitHello | State::AwaitAuth { .. }, Frame::Bye { code, message }) => {
                // An unauthenticated BYE carries no authority over state; it
                // only explains why the peer refused us.
                Err(ConnError::RejectedByPeer { code, message })
            }
            (State::AwaitHello, Frame::Hello(h)) => self.on_hello(h, now_ms),
            (State::AwaitAuth { .. }, Frame::Auth { mac }) => self.on_auth(&mac),
            (State::Established, Frame::Snapshot(s)) => self.on_snapshot(s),
            (State::Established, Frame::Delta(d)) => self.on_delta(d),
            (State::Established, Frame::Heartbeat { last_seq }) => {
                if last_seq != self.in_seq {
                    return Err(ConnError::BadSeq { expected: self.in_seq, got: last_seq });
                }
                Ok(())
            }
            (State::Established, Frame::Peers { addrs }) => {
                self.events.push_back(Event::Peers(addrs));
                Ok(())
            }
            (State::Established, Frame::Bye { code, message }) => {
                self.state = State::Closed;
                self.pending_snapshot = None;
                self.events.push_back(Event::Bye { code, message });
                Ok(())
            }
            (s, f) => Err(unexpected(s, &f)),
        }
    }

    fn on_hello(&mut self, h: Hello, now_ms: u64) -> Result<(), ConnError> {
        if h.version != PROTOCOL_VERSION {
            return Err(ConnError::VersionUnsupported(h.version));
        }
        if h.cluster != self.me.cluster {
            return Err(ConnError::ClusterMismatch(h.cluster));
        }
        if h.node_id == self.me.node_id {
            return Err(ConnError::SelfConnection);
        }
        if h.nonce == self.me.nonce {
            return Err(ConnError::NonceReflected);
        }
        // The HELLO decoded, so it re-encodes (strict codec); check anyway so
        // that a HELLO built by hand (tests, fuzzers) cannot slip through.
        if wire::encode_body(&Frame::Hello(h.clone()), &mut Vec::new()).is_err() {
            return Err(ConnError::Wire(WireError::BadLength { field: "hello", len: 0 }));
        }
        let (dialer, acceptor) = self.order(&h);
        let mac = self.key.mac(self.role.byte(), dialer, acceptor);
        self.queue(Frame::Auth { mac }, now_ms);
        self.state = State::AwaitAuth { peer: Box::new(h) };
        Ok(())
    }

    fn order<'a>(&'a self, peer: &'a Hello) -> (&'a Hello, &'a Hello) {
        match self.role {
            Role::Dialer => (&self.me, peer),
            Role::Acceptor => (peer, &self.me),
        }
    }

    fn on_auth(&mut self, mac: &[u8; MAC_LEN]) -> Result<(), ConnError> {
        let peer = match &self.state {
            State::AwaitAuth { peer } => peer.clone(),
            _ => return Err(ConnError::Closed),
        };
        let (dialer, acceptor) = self.order(&peer);
        if !self.key.verify(self.role.other().byte(), dialer, acceptor, mac) {
            return Err(ConnError::AuthFailed);
        }
        let id = PeerIdentity {
            node_id: peer.node_id,
            incarnation: peer.incarnation,
            node_name: peer.node_name,
            listen: peer.listen,
            role: self.role.other(),
        };
        self.peer = Some(id.clone());
        self.state = State::Established;
        self.events.push_back(Event::Authenticated(id));
        Ok(())
    }

    fn next_in_seq(&mut self, seq: u64) -> Result<(), ConnError> {
        let expected = self.in_seq.wrapping_add(1);
        if seq != expected || expected == 0 {
            return Err(ConnError::BadSeq { expected, got: seq });
        }
        self.in_seq = seq;
        Ok(())
    }

    fn on_snapshot(&mut self, s: Snapshot) -> Result<(), ConnError> {
        self.next_in_seq(s.seq)?;
        let mut pending = match (self.pending_snapshot.take(), s.first) {
            (None, true) => Vec::new(),
            (Some(_), true) => return Err(ConnError::SnapshotOrder("FIRST inside a snapshot")),
            (None, false) => return Err(ConnError::SnapshotOrder("SNAPSHOT without FIRST")),
            (Some(p), false) => p,
        };
        if pending.len().saturating_add(s.entries.len()) > MAX_SNAPSHOT_ENTRIES {
            return Err(ConnError::SnapshotTooLarge);
        }
        pending.reserve(s.entries.len());
        for e in s.entries {
            pending.push(self.in_topics.resolve(e)?);
        }
        if s.last {
            self.synced = true;
            self.events.push_back(Event::Snapshot(pending));
        } else {
            self.pending_snapshot = Some(pending);
        }
        Ok(())
    }

    fn on_delta(&mut self, d: Delta) -> Result<(), ConnError> {
        self.next_in_seq(d.seq)?;
        if self.pending_snapshot.is_some() {
            return Err(ConnError::SnapshotOrder("DELTA inside a snapshot"));
        }
        if !self.synced {
            return Err(ConnError::SnapshotOrder("DELTA before the first snapshot"));
        }
        let mut entries = Vec::with_capacity(d.entries.len());
        for e in d.entries {
            entries.push(self.in_topics.resolve(e)?);
        }
        self.events.push_back(Event::Delta { seq: d.seq, entries });
        Ok(())
    }

    /// Checks the handshake deadline and peer silence, and queues a HEARTBEAT
    /// when nothing was sent for `heartbeat_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), ConnError> {
        match self.state {
            State::Closed => Err(ConnError::Closed),
            State::AwaitHello | State::AwaitAuth { .. } => {
                if now_ms.saturating_sub(self.started_ms) >= self.handshake_timeout_ms {
                    return Err(self.fail(ConnError::HandshakeTimeout, now_ms));
                }
                Ok(())
            }
            State::Established => {
                let silent = now_ms.saturating_sub(self.last_rx_ms);
                if silent > self.down_after_ms {
                    return Err(self.fail(ConnError::PeerSilent(silent), now_ms));
                }
                if now_ms.saturating_sub(self.last_tx_ms) >= self.heartbeat_ms {
                    self.queue(Frame::Heartbeat { last_seq: self.out_seq }, now_ms);
                }
                Ok(())
            }
        }
    }

    /// When [`Conn::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            State::Closed => None,
            State::AwaitHello | State::AwaitAuth { .. } => {
                Some(self.started_ms.saturating_add(self.handshake_timeout_ms))
            }
            State::Established => Some(
                self.last_rx_ms
                    .saturating_add(self.down_after_ms + 1)
                    .min(self.last_tx_ms.saturating_add(self.heartbeat_ms)),
            ),
        }
    }

    fn check_established(&self) -> Result<(), ConnError> {
        match self.state {
            State::Established => Ok(()),
            State::Closed => Err(ConnError::Closed),
            _ => Err(ConnError::NotEstablished),
        }
    }

    fn next_out_seq(&mut self) -> u64 {
        self.out_seq += 1;
        self.out_seq
    }

    /// Queues a complete snapshot of `counts` (the non-zero local counts).
    /// The peer replaces everything we reported before with it.
    pub fn send_snapshot<'a, I>(&mut self, counts: I, now_ms: u64) -> Result<(), ConnError>
    where
        I: IntoIterator<Item = (&'a [u8], u64)>,
    {
        self.check_established()?;
        self.sent_snapshot = true;
        self.queue_state(counts, true, now_ms)
    }

    /// Queues the new absolute counts of changed topics (nothing if empty).
    pub fn send_delta<'a, I>(&mut self, changes: I, now_ms: u64) -> Result<(), ConnError>
    where
        I: IntoIterator<Item = (&'a [u8], u64)>,
    {
        self.check_established()?;
        if !self.sent_snapshot {
            // A caller bug, refused without closing: the peer would reject a
            // DELTA before our first snapshot.
            return Err(ConnError::SnapshotOrder("DELTA before our first snapshot"));
        }
        self.queue_state(changes, false, now_ms)
    }

    /// Queues `counts` as SNAPSHOT frames (FIRST ... LAST, at least one frame
    /// even when empty) or DELTA frames (none when empty), starting a new
    /// frame when the next entry would pass [`TARGET_FRAME_LEN`].
    fn queue_state<'a, I>(&mut self, counts: I, snapshot: bool, now_ms: u64) -> Result<(), ConnError>
    where
        I: IntoIterator<Item = (&'a [u8], u64)>,
    {
        let mut first = true;
        let mut entries = Vec::new();
        let mut size = 0;
        for (name, count) in counts {
            let e = self.out_topics.entry(name, count)?;
            let len = wire::entry_len(&e);
            if !entries.is_empty() && size + len > TARGET_FRAME_LEN {
                let chunk = std::mem::take(&mut entries);
                self.queue_state_frame(snapshot, first, false, chunk, now_ms);
                first = false;
                size = 0;
            }
            size += len;
            entries.push(e);
        }
        if snapshot || !entries.is_empty() {
            self.queue_state_frame(snapshot, first, true, entries, now_ms);
        }
        Ok(())
    }

    fn queue_state_frame(&mut self, snapshot: bool, first: bool, last: bool, entries: Vec<Entry>, now_ms: u64) {
        let seq = self.next_out_seq();
        let frame = if snapshot {
            Frame::Snapshot(Snapshot { seq, first, last, entries })
        } else {
            Frame::Delta(Delta { seq, entries })
        };
        self.queue(frame, now_ms);
    }

    /// Queues a PEERS frame (at most [`wire::MAX_PEERS`] addresses are sent;
    /// invalid ones are skipped).
    pub fn send_peers(&mut self, addrs: &[String], now_ms: u64) -> Result<(), ConnError> {
        self.check_established()?;
        let addrs: Vec<String> = addrs
            .iter()
            .filter(|a| !a.is_empty() && a.len() <= wire::MAX_NAME_LEN)
            .take(wire::MAX_PEERS)
            .cloned()
            .collect();
        self.queue(Frame::Peers { addrs }, now_ms);
        Ok(())
    }
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests;
