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
//! HELLO, then an HMAC-SHA256 challenge-response (AUTH) covering both HELLOs
//! and the sender's role: `auth.rs` ([`AuthKey`]) explains it, and
//! docs/PROTOCOL.md section 6 specifies it.
//!
//! # State frames
//!
//! After authentication each side sends one complete snapshot (SNAPSHOT frames
//! from FIRST to LAST) before any DELTA, and may send a new snapshot later (to
//! resynchronise a lagging peer). SNAPSHOT and DELTA frames carry sequence
//! numbers 1, 2, 3, ... per connection and direction; a gap is an error.
//! Topics are referred to by per-connection ids defined inline (see
//! [`wire::Entry`]); `topics.rs` ([`OutTopics`]) assigns them and reuses the
//! ids of topics last sent as zero once the table grows past a soft cap.
//!
//! | file        | what |
//! |-------------|------|
//! | `mod.rs`    | [`Conn`]: states, frames in, timers, state out (chunked into frames) |
//! | `auth.rs`   | [`AuthKey`]: the AUTH MAC and its check |
//! | `topics.rs` | per-connection topic ids, both directions |
//! | `error.rs`  | [`ConnError`] and the BYE code each error sends |
//! | `pair.rs`   | two `Conn`s back to back: the test pair (tests and `internals` only) |

use std::collections::VecDeque;

use crate::config::Settings;
use crate::sync::Arc;

use super::wire::{
    self, ByeCode, Delta, Entry, Frame, Hello, Snapshot, WireError, MAC_LEN, MAX_FRAME_LEN, MAX_HANDSHAKE_FRAME_LEN,
    NONCE_LEN, PROTOCOL_VERSION,
};

mod auth;
mod error;
#[cfg(any(test, feature = "internals"))]
pub mod pair;
mod topics;

pub use auth::{AuthKey, AUTH_LABEL, ROLE_ACCEPTOR, ROLE_DIALER};
pub use error::ConnError;
use topics::{InLimits, InTopics};
pub use topics::{OutTopics, Topic, DEFAULT_ID_SOFT_CAP};

/// Most entries a peer may put in one (multi-frame) snapshot.
pub const MAX_SNAPSHOT_ENTRIES: usize = 1 << 24;
/// Target size of the state frames we send: large enough that per-frame
/// overhead is negligible, small enough to keep peers' read buffers modest.
pub const TARGET_FRAME_LEN: usize = 64 * 1024;

/// Which end of the TCP connection we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// We opened the connection.
    Dialer,
    /// We accepted it.
    Acceptor,
}

impl Role {
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
    /// One SNAPSHOT frame's entries, delivered as it arrives so that the
    /// node can apply a large snapshot frame by frame. `first` starts a
    /// snapshot: it replaces everything the peer reported before, and once
    /// `last` arrives every topic not listed by a frame from `first` to
    /// `last` is zero.
    Snapshot {
        /// This frame starts a snapshot.
        first: bool,
        /// This frame completes it.
        last: bool,
        /// The counts (the last entry for a topic wins).
        entries: Vec<(Topic, u64)>,
    },
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
    /// Entries received so far of an unfinished snapshot.
    in_snapshot: Option<usize>,
    // Outbound state.
    out_topics: OutTopics,
    out_seq: u64,
    /// A complete snapshot has been queued (DELTA may follow).
    sent_snapshot: bool,
    /// A snapshot is being queued part by part (no DELTA until its LAST).
    out_snapshot_open: bool,
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
            in_topics: InTopics::new(InLimits {
                topic_len: p.settings.max_topic_len,
                topics: p.settings.max_peer_topics,
                bytes: p.settings.max_peer_topic_bytes,
            }),
            in_seq: 0,
            synced: false,
            in_snapshot: None,
            out_topics: OutTopics::new(p.id_soft_cap),
            out_seq: 0,
            sent_snapshot: false,
            out_snapshot_open: false,
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

    /// Makes room in the outbound topic-id table for a snapshot of `topics`
    /// topics about to be sent ([`OutTopics::reserve`]).
    pub fn reserve_out_topics(&mut self, topics: usize) {
        self.out_topics.reserve(topics);
    }

    /// Whether frames are queued for writing.
    pub fn has_transmit(&self) -> bool {
        !self.transmit.is_empty()
    }

    /// Whether DELTA may be queued now: a complete snapshot was queued and
    /// no later one is half queued ([`Conn::send_snapshot_part`]).
    pub fn may_send_delta(&self) -> bool {
        self.sent_snapshot && !self.out_snapshot_open
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
            self.in_snapshot = None;
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
        self.in_snapshot = None;
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
                self.in_snapshot = None;
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
        let mac = self.key.our_mac(self.role, &self.me, &h);
        self.queue(Frame::Auth { mac }, now_ms);
        self.state = State::AwaitAuth { peer: Box::new(h) };
        Ok(())
    }

    fn on_auth(&mut self, mac: &[u8; MAC_LEN]) -> Result<(), ConnError> {
        let peer = match &self.state {
            State::AwaitAuth { peer } => peer.clone(),
            _ => return Err(ConnError::Closed),
        };
        if !self.key.verify_peer(self.role, &self.me, &peer, mac) {
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
        let so_far = match (self.in_snapshot.take(), s.first) {
            (None, true) => 0,
            (Some(_), true) => return Err(ConnError::SnapshotOrder("FIRST inside a snapshot")),
            (None, false) => return Err(ConnError::SnapshotOrder("SNAPSHOT without FIRST")),
            (Some(n), false) => n,
        };
        let total = so_far.saturating_add(s.entries.len());
        if total > MAX_SNAPSHOT_ENTRIES {
            return Err(ConnError::SnapshotTooLarge);
        }
        let mut entries = Vec::with_capacity(s.entries.len());
        for e in s.entries {
            entries.push(self.in_topics.resolve(e)?);
        }
        if s.last {
            self.synced = true;
        } else {
            self.in_snapshot = Some(total);
        }
        self.events.push_back(Event::Snapshot { first: s.first, last: s.last, entries });
        Ok(())
    }

    fn on_delta(&mut self, d: Delta) -> Result<(), ConnError> {
        self.next_in_seq(d.seq)?;
        if self.in_snapshot.is_some() {
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
        self.send_snapshot_part(counts, true, now_ms)
    }

    /// Queues the next part of a snapshot: the first call after a complete
    /// one starts a new snapshot (FIRST), and the part with `last` completes
    /// it (LAST). A caller can thus stream a large snapshot in bounded
    /// pieces; until `last`, [`Conn::send_delta`] is refused (PROTOCOL.md
    /// section 7.1: no DELTA inside a snapshot). An empty part that is not
    /// the last queues nothing.
    pub fn send_snapshot_part<'a, I>(&mut self, counts: I, last: bool, now_ms: u64) -> Result<(), ConnError>
    where
        I: IntoIterator<Item = (&'a [u8], u64)>,
    {
        self.check_established()?;
        let first = !self.out_snapshot_open;
        let queued = self.queue_state(counts, Some((first, last)), now_ms)?;
        if last {
            self.out_snapshot_open = false;
            self.sent_snapshot = true;
        } else if queued {
            self.out_snapshot_open = true;
        }
        Ok(())
    }

    /// Queues the new absolute counts of changed topics (nothing if empty).
    pub fn send_delta<'a, I>(&mut self, changes: I, now_ms: u64) -> Result<(), ConnError>
    where
        I: IntoIterator<Item = (&'a [u8], u64)>,
    {
        self.check_established()?;
        if !self.may_send_delta() {
            // A caller bug, refused without closing: the peer would reject a
            // DELTA before our first snapshot or inside one.
            return Err(ConnError::SnapshotOrder("DELTA before or inside our snapshot"));
        }
        self.queue_state(changes, None, now_ms).map(drop)
    }

    /// Queues `counts` as DELTA frames (`snapshot` `None`; none when empty)
    /// or as SNAPSHOT frames (`Some((first, last))`: the first frame queued
    /// has FIRST if `first`, the final one LAST if `last`; a `last` part
    /// queues at least one frame even when empty), starting a new frame when
    /// the next entry would pass [`TARGET_FRAME_LEN`]. Returns whether a
    /// frame was queued.
    fn queue_state<'a, I>(&mut self, counts: I, snapshot: Option<(bool, bool)>, now_ms: u64) -> Result<bool, ConnError>
    where
        I: IntoIterator<Item = (&'a [u8], u64)>,
    {
        let (mut first, last) = snapshot.unwrap_or((false, false));
        let mut queued = false;
        let mut entries = Vec::new();
        let mut size = 0;
        for (name, count) in counts {
            let e = self.out_topics.entry(name, count)?;
            let len = wire::entry_len(&e);
            if !entries.is_empty() && size + len > TARGET_FRAME_LEN {
                let chunk = std::mem::take(&mut entries);
                self.queue_state_frame(snapshot.map(|_| (first, false)), chunk, now_ms);
                first = false;
                queued = true;
                size = 0;
            }
            size += len;
            entries.push(e);
        }
        if !entries.is_empty() || last {
            self.queue_state_frame(snapshot.map(|_| (first, last)), entries, now_ms);
            queued = true;
        }
        Ok(queued)
    }

    fn queue_state_frame(&mut self, snapshot: Option<(bool, bool)>, entries: Vec<Entry>, now_ms: u64) {
        let seq = self.next_out_seq();
        let frame = match snapshot {
            Some((first, last)) => Frame::Snapshot(Snapshot { seq, first, last, entries }),
            None => Frame::Delta(Delta { seq, entries }),
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
pub(super) mod tests;
