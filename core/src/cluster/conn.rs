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
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::wire::{
    self, ByeCode, Delta, Entry, Frame, FrameType, Hello, Snapshot, WireError, MAC_LEN, MAX_FRAME_LEN,
    MAX_HANDSHAKE_FRAME_LEN, MAX_TOPIC_ID, NONCE_LEN, PROTOCOL_VERSION,
};

/// A topic name, shared between the id table and the events that carry it.
pub type Topic = Arc<[u8]>;

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
    /// Cluster name; must equal the peer's.
    pub cluster: String,
    /// Our node name.
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
    /// Close when nothing was received for longer than this.
    pub down_after_ms: u64,
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
        let topic: Topic = Arc::from(name);
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
            cluster: p.cluster.clone(),
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
            down_after_ms: p.down_after_ms.max(1),
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
mod tests {
    use super::*;

    fn params(name: &str, id: u64, secret: &[u8]) -> ConnParams {
        ConnParams {
            cluster: "test".into(),
            node_name: name.into(),
            node_id: id,
            incarnation: id * 100,
            listen: format!("127.0.0.1:{id}"),
            key: AuthKey::new(secret),
            handshake_timeout_ms: 1000,
            heartbeat_ms: 100,
            down_after_ms: 300,
            id_soft_cap: DEFAULT_ID_SOFT_CAP,
        }
    }

    fn drain_tx(c: &mut Conn) -> Vec<Frame> {
        std::iter::from_fn(|| c.poll_transmit()).collect()
    }

    fn drain_ev(c: &mut Conn) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    /// Delivers everything `from` queued to `to`, through the byte codec.
    fn pump(from: &mut Conn, to: &mut Conn, now: u64) -> Result<(), ConnError> {
        for f in drain_tx(from) {
            let bytes = wire::encode_to_vec(&f).unwrap();
            let (g, _) = wire::decode_frame(&bytes, to.max_frame_len()).unwrap().unwrap();
            to.handle_frame(g, now)?;
        }
        Ok(())
    }

    fn pair(sa: &[u8], sb: &[u8]) -> (Conn, Conn) {
        let a = Conn::new(&params("a", 1, sa), Role::Dialer, [1; 32], 0);
        let b = Conn::new(&params("b", 2, sb), Role::Acceptor, [2; 32], 0);
        (a, b)
    }

    fn established() -> (Conn, Conn) {
        let (mut a, mut b) = pair(b"s3cret", b"s3cret");
        pump(&mut a, &mut b, 1).unwrap(); // HELLO a->b; b queues HELLO + AUTH
        pump(&mut b, &mut a, 1).unwrap(); // HELLO, AUTH b->a; a established
        pump(&mut a, &mut b, 1).unwrap(); // AUTH a->b; b established
        assert!(a.is_established() && b.is_established());
        (a, b)
    }

    fn unhex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    /// The test vectors of docs/PROTOCOL.md section 11.
    #[test]
    fn protocol_md_test_vectors() {
        let hb = unhex("02 00 00 00 05 00 ed f4 7d 81");
        assert_eq!(wire::encode_to_vec(&Frame::Heartbeat { last_seq: 0 }).unwrap(), hb);
        let delta = Frame::Delta(Delta {
            seq: 7,
            entries: vec![
                Entry { id: 0, name: Some(b"room:1".to_vec()), count: 3 },
                Entry { id: 0, name: None, count: 300 },
            ],
        });
        let bytes = unhex("0f 00 00 00 04 07 02 01 06 72 6f 6f 6d 3a 31 03 00 ac 02 5d af 0f 30");
        assert_eq!(wire::encode_to_vec(&delta).unwrap(), bytes);
        assert_eq!(wire::decode_frame(&bytes, MAX_FRAME_LEN).unwrap().unwrap().0, delta);
        let mut nonce = [0u8; 32];
        for (i, b) in nonce.iter_mut().enumerate() {
            *b = i as u8;
        }
        let d = Hello {
            version: 1,
            cluster: "prod".into(),
            node_name: "a".into(),
            node_id: 1,
            incarnation: 2,
            listen: "127.0.0.1:4000".into(),
            nonce,
        };
        let hello = unhex(
            "4c 00 00 00 01 48 43 4e 54 01 04 70 72 6f 64 01 61 01 00 00 00 00 00 00 00
             02 00 00 00 00 00 00 00 0e 31 32 37 2e 30 2e 30 2e 31 3a 34 30 30 30 00 01
             02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a
             1b 1c 1d 1e 1f f7 86 e2 05",
        );
        assert_eq!(wire::encode_to_vec(&Frame::Hello(d.clone())).unwrap(), hello);
        let a = Hello {
            node_name: "b".into(),
            node_id: 3,
            incarnation: 4,
            listen: String::new(),
            nonce: [0xff; 32],
            ..d.clone()
        };
        let key = AuthKey::new(b"secret");
        let hex = |m: [u8; 32]| m.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(key.mac(ROLE_DIALER, &d, &a)),
            "a75470ea7fee36e02c5659875c355ed2943e2668cf3fe1a75a24416144f439a0"
        );
        assert_eq!(
            hex(key.mac(ROLE_ACCEPTOR, &d, &a)),
            "9a09707094a6290fdbd9882532cab6610a5b43853feabe079dc6a839ced34d49"
        );
    }

    #[test]
    fn handshake_succeeds_and_reports_identities() {
        let (mut a, mut b) = established();
        assert_eq!(
            drain_ev(&mut a),
            vec![Event::Authenticated(PeerIdentity {
                node_id: 2,
                incarnation: 200,
                node_name: "b".into(),
                listen: "127.0.0.1:2".into(),
                role: Role::Acceptor,
            })]
        );
        match &drain_ev(&mut b)[..] {
            [Event::Authenticated(p)] => {
                assert_eq!((p.node_id, p.role), (1, Role::Dialer));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn state_flows_and_topic_ids_are_reused_per_connection() {
        let (mut a, mut b) = established();
        drain_ev(&mut b);
        a.send_snapshot([(&b"x"[..], 3), (&b"y"[..], 1)], 2).unwrap();
        a.send_delta([(&b"x"[..], 4), (&b"z"[..], 9)], 2).unwrap();
        a.send_delta([(&b"x"[..], 0)], 2).unwrap();
        let tx = drain_tx(&mut a);
        // The second mention of "x" uses its id, without the name.
        match &tx[1] {
            Frame::Delta(d) => {
                assert_eq!(d.entries[0], Entry { id: 0, name: None, count: 4 });
                assert_eq!(d.entries[1], Entry { id: 2, name: Some(b"z".to_vec()), count: 9 });
            }
            f => panic!("{f:?}"),
        }
        // A changed topic costs two bytes on the wire here.
        match &tx[2] {
            Frame::Delta(d) => assert_eq!(wire::entry_len(&d.entries[0]), 2),
            f => panic!("{f:?}"),
        }
        for f in tx {
            b.handle_frame(f, 3).unwrap();
        }
        let t = |s: &[u8]| -> Topic { Arc::from(s) };
        assert_eq!(
            drain_ev(&mut b),
            vec![
                Event::Snapshot(vec![(t(b"x"), 3), (t(b"y"), 1)]),
                Event::Delta { seq: 2, entries: vec![(t(b"x"), 4), (t(b"z"), 9)] },
                Event::Delta { seq: 3, entries: vec![(t(b"x"), 0)] },
            ]
        );
    }

    #[test]
    fn large_snapshots_are_split_and_reassembled() {
        let (mut a, mut b) = established();
        drain_ev(&mut b);
        let names: Vec<Vec<u8>> = (0..5000).map(|i| format!("topic-{i:030}").into_bytes()).collect();
        a.send_snapshot(names.iter().map(|n| (&n[..], 1)), 2).unwrap();
        let tx = drain_tx(&mut a);
        assert!(tx.len() > 1, "split into {} frames", tx.len());
        for f in &tx {
            assert!(wire::encode_to_vec(f).unwrap().len() <= TARGET_FRAME_LEN + 200);
        }
        for f in tx {
            b.handle_frame(f, 3).unwrap();
        }
        match &drain_ev(&mut b)[..] {
            [Event::Snapshot(s)] => assert_eq!(s.len(), 5000),
            other => panic!("{} events", other.len()),
        }
        assert!(b.is_synced());
    }

    #[test]
    fn empty_snapshot_is_one_frame() {
        let (mut a, mut b) = established();
        drain_ev(&mut b);
        a.send_snapshot(std::iter::empty(), 2).unwrap();
        a.send_delta(std::iter::empty(), 2).unwrap();
        let tx = drain_tx(&mut a);
        assert_eq!(tx, vec![Frame::Snapshot(Snapshot { seq: 1, first: true, last: true, entries: vec![] })]);
        b.handle_frame(tx[0].clone(), 3).unwrap();
        assert_eq!(drain_ev(&mut b), vec![Event::Snapshot(vec![])]);
    }

    #[test]
    fn wrong_secret_fails_both_sides_without_state() {
        let (mut a, mut b) = pair(b"right", b"wrong");
        pump(&mut a, &mut b, 1).unwrap();
        assert_eq!(pump(&mut b, &mut a, 1), Err(ConnError::AuthFailed));
        assert!(a.is_closed());
        // b never authenticated a, so it refuses to send state.
        assert_eq!(b.send_delta([(&b"x"[..], 1)], 2), Err(ConnError::NotEstablished));
        assert_eq!(b.send_snapshot(std::iter::empty(), 2), Err(ConnError::NotEstablished));
        assert_eq!(b.send_peers(&["h:1".into()], 2), Err(ConnError::NotEstablished));
        // a answered b's challenge, then refused b: an AUTH, a BYE, no state.
        let tx = drain_tx(&mut a);
        match &tx[..] {
            [auth @ Frame::Auth { .. }, Frame::Bye { code: ByeCode::AUTH_FAILED, .. }] => {
                // b in turn rejects a's AUTH (made with the other secret).
                assert_eq!(b.handle_frame(auth.clone(), 2), Err(ConnError::AuthFailed));
            }
            other => panic!("{other:?}"),
        }
        assert!(b.is_closed());
        let err = b.handle_frame(tx[1].clone(), 2).unwrap_err();
        assert_eq!(err, ConnError::Closed);
        let sent: Vec<Frame> = drain_tx(&mut b);
        assert!(sent.iter().all(|f| matches!(f, Frame::Hello(_) | Frame::Auth { .. } | Frame::Bye { .. })));
        assert!(drain_ev(&mut a).is_empty() && drain_ev(&mut b).is_empty());
        // A BYE before authentication reports the peer's refusal.
        let (mut c, _) = pair(b"s", b"s");
        let bye = Frame::Bye { code: ByeCode::AUTH_FAILED, message: "no".into() };
        assert!(matches!(c.handle_frame(bye, 1), Err(ConnError::RejectedByPeer { code: ByeCode::AUTH_FAILED, .. })));
    }

    #[test]
    fn empty_secret_differs_from_any_other() {
        let (mut a, mut b) = pair(b"", b"x");
        pump(&mut a, &mut b, 1).unwrap();
        assert_eq!(pump(&mut b, &mut a, 1), Err(ConnError::AuthFailed));
    }

    #[test]
    fn missing_auth_times_out() {
        let (mut a, mut b) = pair(b"s", b"s");
        pump(&mut a, &mut b, 1).unwrap();
        drain_tx(&mut b); // b's HELLO and AUTH are lost
        assert_eq!(a.poll_timeout(), Some(1000));
        assert_eq!(a.handle_timeout(999), Ok(()));
        assert_eq!(a.handle_timeout(1000), Err(ConnError::HandshakeTimeout));
        assert!(matches!(&drain_tx(&mut a)[..], [Frame::Bye { code: ByeCode::TIMEOUT, .. }]));
    }

    #[test]
    fn out_of_state_frames_close() {
        let auth = Frame::Auth { mac: [0; 32] };
        let delta = Frame::Delta(Delta { seq: 1, entries: vec![] });
        let snap = Frame::Snapshot(Snapshot { seq: 1, first: true, last: true, entries: vec![] });
        let peers = Frame::Peers { addrs: vec![] };
        let hb = Frame::Heartbeat { last_seq: 0 };
        for f in [auth.clone(), delta.clone(), snap.clone(), peers.clone(), hb.clone()] {
            let (mut a, _) = pair(b"s", b"s");
            let e = a.handle_frame(f.clone(), 1).unwrap_err();
            assert!(matches!(e, ConnError::Unexpected { state: "AwaitHello", .. }), "{f:?} {e:?}");
            assert!(a.is_closed());
            assert_eq!(a.handle_frame(f, 1), Err(ConnError::Closed));
        }
        // In AwaitAuth, anything but AUTH/BYE closes (notably state frames
        // sent before authentication).
        for f in [delta, snap, peers, hb] {
            let (mut a, mut b) = pair(b"s", b"s");
            pump(&mut a, &mut b, 1).unwrap();
            let hello = b.poll_transmit().unwrap();
            a.handle_frame(hello.clone(), 1).unwrap();
            let e = a.handle_frame(f.clone(), 1).unwrap_err();
            assert!(matches!(e, ConnError::Unexpected { state: "AwaitAuth", .. }), "{f:?}");
            // A second HELLO is out of state too.
            let (mut a, mut b) = pair(b"s", b"s");
            pump(&mut a, &mut b, 1).unwrap();
            let hello = b.poll_transmit().unwrap();
            a.handle_frame(hello.clone(), 1).unwrap();
            assert!(a.handle_frame(hello, 1).is_err());
        }
        // Established: HELLO and AUTH are out of state.
        let (mut a, _) = established();
        assert!(a.handle_frame(auth, 2).is_err());
        let (mut a, _) = established();
        let h = Frame::Hello(Hello {
            version: 1,
            cluster: "test".into(),
            node_name: "z".into(),
            node_id: 9,
            incarnation: 9,
            listen: String::new(),
            nonce: [9; 32],
        });
        assert!(a.handle_frame(h, 2).is_err());
    }

    fn hello_from(c: &mut Conn) -> Hello {
        match c.poll_transmit() {
            Some(Frame::Hello(h)) => h,
            f => panic!("{f:?}"),
        }
    }

    #[test]
    fn hello_validation() {
        let (mut a, mut b) = pair(b"s", b"s");
        let good = hello_from(&mut b);
        drop(a.poll_transmit());
        let cases = [
            (Hello { version: 2, ..good.clone() }, ByeCode::VERSION_UNSUPPORTED),
            (Hello { cluster: "other".into(), ..good.clone() }, ByeCode::CLUSTER_MISMATCH),
            (Hello { node_id: 1, ..good.clone() }, ByeCode::SELF_CONNECTION),
            (Hello { nonce: [1; 32], ..good.clone() }, ByeCode::PROTOCOL_ERROR),
            (Hello { listen: "x".repeat(300), ..good.clone() }, ByeCode::PROTOCOL_ERROR),
        ];
        for (h, code) in cases {
            let (mut a, _) = pair(b"s", b"s");
            drop(a.poll_transmit());
            assert!(a.handle_frame(Frame::Hello(h), 1).is_err());
            let tx = drain_tx(&mut a);
            assert!(matches!(&tx[..], [Frame::Bye { code: c, .. }] if *c == code), "{tx:?}");
        }
        assert!(a.handle_frame(Frame::Hello(good), 1).is_ok());
    }

    /// The attacker does not know the secret and tries to get the victim to
    /// answer its own challenge.
    #[test]
    fn reflected_auth_fails() {
        // Victim accepts a connection from the attacker, who claims id 66.
        let mut victim = Conn::new(&params("v", 1, b"secret"), Role::Acceptor, [1; 32], 0);
        let victim_hello = hello_from(&mut victim);
        let attacker_hello = Hello { node_id: 66, nonce: [6; 32], ..victim_hello.clone() };
        victim.handle_frame(Frame::Hello(attacker_hello), 1).unwrap();
        let victim_auth = match victim.poll_transmit() {
            Some(f @ Frame::Auth { .. }) => f,
            f => panic!("{f:?}"),
        };
        // Sending the victim's own AUTH back fails: it is labelled 'A'.
        assert_eq!(victim.handle_frame(victim_auth.clone(), 1), Err(ConnError::AuthFailed));

        // Two connections: the attacker dials the victim twice and relays the
        // challenge of connection 2 as its own on connection 1. Both HELLOs of
        // connection 1 are covered, so the answer from connection 2 fails.
        let mut v1 = Conn::new(&params("v", 1, b"secret"), Role::Acceptor, [1; 32], 0);
        let mut v2 = Conn::new(&params("v", 1, b"secret"), Role::Acceptor, [3; 32], 0);
        let h1 = hello_from(&mut v1);
        let h2 = hello_from(&mut v2);
        // Attacker sends HELLO with v1's nonce on connection 2 ...
        let fake = Hello { node_id: 66, nonce: h1.nonce, ..h2.clone() };
        v2.handle_frame(Frame::Hello(fake.clone()), 1).unwrap();
        let answer = v2.poll_transmit().unwrap();
        // ... and replays v2's answer on connection 1.
        v1.handle_frame(Frame::Hello(Hello { nonce: h2.nonce, ..fake }), 1).unwrap();
        assert_eq!(v1.handle_frame(answer, 1), Err(ConnError::AuthFailed));

        // A victim HELLO reflected verbatim is refused as a self-connection.
        let mut v3 = Conn::new(&params("v", 1, b"secret"), Role::Acceptor, [4; 32], 0);
        let h3 = hello_from(&mut v3);
        assert_eq!(v3.handle_frame(Frame::Hello(h3), 1), Err(ConnError::SelfConnection));
    }

    #[test]
    fn mac_covers_every_hello_field_and_role() {
        let key = AuthKey::new(b"k");
        let d = Hello {
            version: 1,
            cluster: "c".into(),
            node_name: "d".into(),
            node_id: 1,
            incarnation: 2,
            listen: "l".into(),
            nonce: [1; 32],
        };
        let a = Hello { node_name: "a".into(), node_id: 3, nonce: [2; 32], ..d.clone() };
        let base = key.mac(ROLE_DIALER, &d, &a);
        assert!(key.verify(ROLE_DIALER, &d, &a, &base));
        assert_ne!(base, key.mac(ROLE_ACCEPTOR, &d, &a));
        assert_ne!(base, key.mac(ROLE_DIALER, &a, &d));
        assert_ne!(base, AuthKey::new(b"k2").mac(ROLE_DIALER, &d, &a));
        for v in [
            Hello { cluster: "c2".into(), ..d.clone() },
            Hello { node_name: "d2".into(), ..d.clone() },
            Hello { node_id: 9, ..d.clone() },
            Hello { incarnation: 9, ..d.clone() },
            Hello { listen: "l2".into(), ..d.clone() },
            Hello { nonce: [9; 32], ..d.clone() },
        ] {
            assert_ne!(base, key.mac(ROLE_DIALER, &v, &a), "{v:?}");
            assert_ne!(base, key.mac(ROLE_DIALER, &d, &Hello { node_id: 3, ..v }));
        }
        // Truncated MACs never verify.
        assert!(!key.verify(ROLE_DIALER, &d, &a, &base[..31]));
        assert!(!key.verify(ROLE_DIALER, &d, &a, &[]));
        assert!(!format!("{key:?}").contains('k'));
    }

    #[test]
    fn sequence_and_snapshot_order_errors() {
        let snap = |seq, first, last, entries| Frame::Snapshot(Snapshot { seq, first, last, entries });
        let delta = |seq, entries| Frame::Delta(Delta { seq, entries });
        type Case = (Vec<Frame>, fn(&ConnError) -> bool);
        let cases: Vec<Case> = vec![
            (vec![delta(1, vec![])], |e| matches!(e, ConnError::SnapshotOrder(_))),
            (vec![snap(1, false, true, vec![])], |e| matches!(e, ConnError::SnapshotOrder(_))),
            (vec![snap(2, true, true, vec![])], |e| matches!(e, ConnError::BadSeq { .. })),
            (vec![snap(1, true, false, vec![]), snap(2, true, true, vec![])], |e| {
                matches!(e, ConnError::SnapshotOrder(_))
            }),
            (vec![snap(1, true, false, vec![]), delta(2, vec![])], |e| matches!(e, ConnError::SnapshotOrder(_))),
            (vec![snap(1, true, true, vec![]), delta(1, vec![])], |e| {
                matches!(e, ConnError::BadSeq { expected: 2, got: 1 })
            }),
            (vec![snap(1, true, true, vec![]), Frame::Heartbeat { last_seq: 0 }], |e| {
                matches!(e, ConnError::BadSeq { .. })
            }),
            (vec![snap(1, true, true, vec![Entry { id: 0, name: None, count: 1 }])], |e| {
                matches!(e, ConnError::UnknownTopicId(0))
            }),
            (vec![snap(1, true, true, vec![Entry { id: 1, name: Some(b"t".to_vec()), count: 1 }])], |e| {
                matches!(e, ConnError::BadDefine { id: 1, next: 0 })
            }),
        ];
        for (frames, check) in cases {
            let (_, mut b) = established();
            let mut res = Ok(());
            for f in frames.clone() {
                res = b.handle_frame(f, 2);
                if res.is_err() {
                    break;
                }
            }
            let e = res.expect_err(&format!("{frames:?}"));
            assert!(check(&e), "{frames:?}: {e:?}");
            assert!(matches!(drain_tx(&mut b).last(), Some(Frame::Bye { code: ByeCode::PROTOCOL_ERROR, .. })));
        }
        // Heartbeats with the right last_seq are fine, before and after state.
        let (_, mut b) = established();
        b.handle_frame(Frame::Heartbeat { last_seq: 0 }, 2).unwrap();
        b.handle_frame(snap(1, true, true, vec![]), 2).unwrap();
        b.handle_frame(Frame::Heartbeat { last_seq: 1 }, 2).unwrap();
        // Redefining an id renames it.
        b.handle_frame(delta(2, vec![Entry { id: 0, name: Some(b"p".to_vec()), count: 1 }]), 2).unwrap();
        b.handle_frame(delta(3, vec![Entry { id: 0, name: Some(b"q".to_vec()), count: 2 }]), 2).unwrap();
        b.handle_frame(delta(4, vec![Entry { id: 0, name: None, count: 3 }]), 2).unwrap();
        let ev = drain_ev(&mut b);
        assert_eq!(ev.last(), Some(&Event::Delta { seq: 4, entries: vec![(Arc::from(&b"q"[..]), 3)] }));
    }

    #[test]
    fn heartbeats_and_silence() {
        let (mut a, mut b) = established();
        drain_tx(&mut a);
        // Nothing sent since t=1: heartbeat due at 101.
        assert_eq!(a.poll_timeout(), Some(101));
        a.handle_timeout(50).unwrap();
        assert!(a.poll_transmit().is_none());
        a.handle_timeout(101).unwrap();
        let hb = a.poll_transmit().unwrap();
        assert_eq!(hb, Frame::Heartbeat { last_seq: 0 });
        b.handle_frame(hb, 101).unwrap();
        // b heard from a at 101; silence beyond 300 ms closes.
        b.handle_timeout(401).unwrap();
        drain_tx(&mut b);
        assert_eq!(b.handle_timeout(402), Err(ConnError::PeerSilent(301)));
        assert!(matches!(&drain_tx(&mut b)[..], [Frame::Bye { code: ByeCode::TIMEOUT, .. }]));
    }

    #[test]
    fn bye_after_auth_is_an_event() {
        let (mut a, mut b) = established();
        drain_ev(&mut b);
        a.close(ByeCode::SHUTDOWN, "leaving", 5);
        assert!(a.is_closed());
        assert_eq!(a.send_delta([(&b"x"[..], 1)], 5), Err(ConnError::Closed));
        pump(&mut a, &mut b, 5).unwrap();
        assert_eq!(drain_ev(&mut b), vec![Event::Bye { code: ByeCode::SHUTDOWN, message: "leaving".into() }]);
        assert!(b.is_closed());
    }

    #[test]
    fn peers_flow_after_auth() {
        let (mut a, mut b) = established();
        drain_ev(&mut b);
        a.send_peers(&["127.0.0.1:9".into(), String::new(), "x".repeat(300)], 2).unwrap();
        pump(&mut a, &mut b, 2).unwrap();
        assert_eq!(drain_ev(&mut b), vec![Event::Peers(vec!["127.0.0.1:9".into()])]);
    }

    #[test]
    fn out_topics_reuse_zero_ids_past_soft_cap() {
        let mut t = OutTopics::new(2);
        assert_eq!(t.entry(b"a", 1).unwrap().id, 0);
        assert_eq!(t.entry(b"b", 0).unwrap().id, 1);
        // Table full: "c" takes b's id (last sent zero), redefining it.
        let e = t.entry(b"c", 5).unwrap();
        assert_eq!((e.id, e.name.as_deref()), (1, Some(&b"c"[..])));
        // "b" is new again; no zero id is free, so the table grows.
        assert_eq!(t.entry(b"b", 1).unwrap().id, 2);
        // A topic going to zero then back is not reused in between.
        t.entry(b"a", 0).unwrap();
        t.entry(b"a", 1).unwrap();
        assert_eq!(t.entry(b"d", 1).unwrap().id, 3);
        assert_eq!(t.len(), 4);
        // Now zero "c" and a newcomer takes its id.
        t.entry(b"c", 0).unwrap();
        assert_eq!(t.entry(b"e", 1).unwrap().id, 1);
        assert_eq!(t.entry(b"e", 2).unwrap(), Entry { id: 1, name: None, count: 2 });
        assert_eq!(t.entry(b"c", 2).unwrap().name.as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn id_reuse_is_understood_by_the_receiver() {
        let mut p = params("a", 1, b"s");
        p.id_soft_cap = 1;
        let mut a = Conn::new(&p, Role::Dialer, [1; 32], 0);
        let mut b = Conn::new(&params("b", 2, b"s"), Role::Acceptor, [2; 32], 0);
        pump(&mut a, &mut b, 1).unwrap();
        pump(&mut b, &mut a, 1).unwrap();
        pump(&mut a, &mut b, 1).unwrap();
        drain_ev(&mut b);
        a.send_snapshot([(&b"x"[..], 1)], 2).unwrap();
        a.send_delta([(&b"x"[..], 0), (&b"y"[..], 7)], 2).unwrap();
        a.send_delta([(&b"y"[..], 8)], 2).unwrap();
        assert_eq!(a.out_topic_ids(), 1);
        pump(&mut a, &mut b, 2).unwrap();
        let t = |s: &[u8]| -> Topic { Arc::from(s) };
        assert_eq!(
            drain_ev(&mut b),
            vec![
                Event::Snapshot(vec![(t(b"x"), 1)]),
                Event::Delta { seq: 2, entries: vec![(t(b"x"), 0), (t(b"y"), 7)] },
                Event::Delta { seq: 3, entries: vec![(t(b"y"), 8)] },
            ]
        );
    }

    #[test]
    fn decode_errors_close_with_protocol_bye() {
        let (mut a, _) = established();
        drain_tx(&mut a);
        let e = a.handle_decode_error(WireError::UnknownType(9), 3);
        assert_eq!(e, ConnError::Wire(WireError::UnknownType(9)));
        assert!(a.is_closed());
        assert!(matches!(&drain_tx(&mut a)[..], [Frame::Bye { code: ByeCode::PROTOCOL_ERROR, .. }]));
    }

    /// Both sides driven by a pseudo-random interleaving of valid traffic and
    /// injected junk frames: nothing panics, and no state frame is ever
    /// emitted by a side whose peer has not authenticated.
    #[test]
    fn random_frame_sequences_never_leak_state() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300 {
            let secret_b: &[u8] = if round % 3 == 0 { b"other" } else { b"s" };
            let (mut a, mut b) = pair(b"s", secret_b);
            let mut now = 0;
            for _ in 0..40 {
                now += rnd() % 50;
                let junk = match rnd() % 8 {
                    0 => Some(Frame::Auth { mac: [rnd() as u8; 32] }),
                    1 => Some(Frame::Delta(Delta { seq: rnd() % 3, entries: vec![] })),
                    2 => Some(Frame::Heartbeat { last_seq: rnd() % 2 }),
                    3 => Some(Frame::Snapshot(Snapshot {
                        seq: rnd() % 3,
                        first: rnd() % 2 == 0,
                        last: rnd() % 2 == 0,
                        entries: vec![Entry { id: (rnd() % 2) as u32, name: None, count: 1 }],
                    })),
                    _ => None,
                };
                for dir in 0..2 {
                    let (x, y) = if dir == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
                    if x.is_established() && rnd() % 2 == 0 {
                        let _ = x.send_delta([(&b"t"[..], rnd() % 5)], now);
                    }
                    let _ = x.handle_timeout(now);
                    while let Some(f) = x.poll_transmit() {
                        let state = matches!(f, Frame::Snapshot(_) | Frame::Delta(_) | Frame::Peers { .. });
                        assert!(!state || x.peer().is_some(), "state before auth: {f:?}");
                        let _ = y.handle_frame(f, now);
                    }
                    if let Some(j) = junk.clone() {
                        let _ = y.handle_frame(j, now);
                    }
                    while y.poll_event().is_some() {}
                }
            }
            if round % 3 == 0 {
                assert!(a.peer().is_none() || b.peer().is_none());
            }
        }
    }
}
