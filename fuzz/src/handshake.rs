//! `handshake`: both sides of a connection (`internals::conn::Conn`, a dialer
//! and an acceptor) driven through an arbitrary schedule, with an attacker
//! on the wire that can drop, forge, replay and reflect frames.
//!
//! Input: a header, then one operation per step until the bytes run out.
//!
//! ```text
//! header  flags:u8  bit 0 the two sides have different secrets
//!                   bit 1 different cluster names
//!                   bit 2 the same node id
//!                   bit 3 the same nonce
//!                   bit 4 empty secret (on the sides that share it)
//!         cap:u8    outbound topic-id soft cap = cap % 4 + 1 (forces id reuse)
//! op      u8 % 14, then its arguments:
//!   0 / 1   deliver the next in-flight frame A->B / B->A (through the codec)
//!   2 / 3   drop the next in-flight frame A->B / B->A
//!   4       side:u8, a forged frame (see `Forged`) to that side
//!   5       side:u8, idx:u8: replay a frame seen earlier (on this or another
//!           connection between the same nodes) to that side
//!   6       ms:u16: advance the clock, run both sides' timers
//!   7       side:u8, entries: send a snapshot from that side
//!   8       side:u8, entries: send a delta from that side
//!   9       side:u8, addrs: send PEERS from that side
//!   10      side:u8, how:u8: a decode error or a local close on that side
//!   11      side:u8, bytes: raw bytes through the decoder to that side
//!   12      side:u8, n:u8, zero:u8: a snapshot of (n % 32) * 8 topics with
//!           500-byte names (several frames)
//!   13      deliver everything in flight both ways
//! ```
//!
//! Side A dials, side B accepts. A is called "a" with node id 1, B "b" with
//! node id 2, both in cluster "prod".
//!
//! Properties:
//!
//! * nothing panics; every error closes the connection;
//! * **a side reports its peer authenticated only on an AUTH whose MAC is
//!   HMAC-SHA256(secret, "HCNT-AUTH-v1" || peer's role || dialer HELLO body
//!   || acceptor HELLO body)**, computed here with our own HELLO encoder and
//!   the `hmac` crate, not with `AuthKey`; and on such an AUTH it always does;
//! * the AUTH each side sends is that MAC for its own role;
//! * no side sends SNAPSHOT, DELTA, PEERS or HEARTBEAT before it has reported
//!   its peer authenticated, nor anything after a BYE; HELLO comes first,
//!   AUTH once, after the peer's HELLO was accepted;
//! * no side raises a state event (snapshot, delta, peers, BYE) before
//!   authentication; `is_established` agrees with what we saw;
//! * a HELLO is accepted iff version, cluster, node id and nonce pass the
//!   checks of PROTOCOL.md section 6, refused with the error of the first
//!   check that fails;
//! * with no attacker and one secret, the two sides authenticate;
//! * what a side received over an untouched direction equals what the other
//!   side sent (snapshots replace, deltas update).

use arbitrary::{Arbitrary, Unstructured};
use headcount::internals::conn::pair::{self, Pair, A};
use headcount::internals::conn::{AuthKey, Conn, ConnError, ConnParams, Event, Role};
use headcount::internals::wire::{self, ByeCode, Delta, Entry, Frame, Hello, Snapshot, WireError};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};

/// Counts per topic as one side sees them; a fast fixed hasher, since topic
/// names can be long.
type View = HashMap<Vec<u8>, u64, foldhash::fast::FixedState>;
use std::sync::OnceLock;

const HANDSHAKE_TIMEOUT_MS: u64 = 5000;
const CLUSTER: &str = "prod";
const SECRET: &[u8] = b"s3cret";
const TOPICS: &[&[u8]] = &[b"room:1", b"room:2", b"lobby", b"x", b"\x00\xff"];
const MAX_POOL: usize = 256;
/// Op 0: deliver the next in-flight frame A->B.
pub const OP_DELIVER_AB: u8 = 0;
/// Op 1: deliver the next in-flight frame B->A.
pub const OP_DELIVER_BA: u8 = 1;

/// The HELLO body as PROTOCOL.md section 5.1 lays it out, written here
/// without the crate's codec. `None` if a field is too long to send.
pub fn hello_body(h: &Hello) -> Option<Vec<u8>> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn string(out: &mut Vec<u8>, s: &str) -> Option<()> {
        if s.len() > 255 {
            return None;
        }
        varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
        Some(())
    }
    let mut out = b"HCNT".to_vec();
    varint(&mut out, h.version);
    string(&mut out, &h.cluster)?;
    string(&mut out, &h.node_name)?;
    out.extend_from_slice(&h.node_id.to_le_bytes());
    out.extend_from_slice(&h.incarnation.to_le_bytes());
    string(&mut out, &h.listen)?;
    out.extend_from_slice(&h.nonce);
    Some(out)
}

/// The AUTH MAC of PROTOCOL.md section 6, computed independently of
/// `AuthKey`: `role` is the byte of the AUTH's *author*.
pub fn expected_mac(secret: &[u8], role: u8, dialer: &Hello, acceptor: &Hello) -> Option<[u8; 32]> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).ok()?;
    m.update(b"HCNT-AUTH-v1");
    m.update(&[role]);
    m.update(&hello_body(dialer)?);
    m.update(&hello_body(acceptor)?);
    Some(m.finalize().into_bytes().into())
}

fn role_byte(r: Role) -> u8 {
    match r {
        Role::Dialer => b'D',
        Role::Acceptor => b'A',
    }
}

fn params(name: &str, id: u64, secret: &[u8], cluster: &str, soft_cap: usize) -> ConnParams {
    let settings = headcount::Config::builder().cluster(cluster).build().expect("a valid cluster name");
    ConnParams {
        settings: std::sync::Arc::new(settings.settings().clone()),
        node_name: name.into(),
        node_id: id,
        incarnation: id * 1000 + 7,
        listen: format!("127.0.0.1:{}", 7000 + id),
        key: AuthKey::new(secret),
        handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS,
        heartbeat_ms: 100,
        id_soft_cap: soft_cap,
    }
}

/// One end of the connection plus what the harness saw of it.
struct Side {
    name: &'static str,
    conn: Conn,
    role: Role,
    secret: Vec<u8>,
    /// The first frame it sent (always its HELLO).
    own_hello: Option<Hello>,
    /// The peer HELLO it accepted.
    accepted: Option<Hello>,
    /// It raised `Event::Authenticated`.
    authed: bool,
    sent_auth: bool,
    sent_bye: bool,
    sent_frames: usize,
    /// What it has sent, as a receiver should see it (`None`: no snapshot yet).
    sent_view: Option<View>,
    /// What it received, from its events.
    recv_view: Option<View>,
    /// The snapshot being received, frame by frame, until its LAST.
    recv_partial: Option<View>,
    /// Something other than the peer's frames, in order, reached its input.
    tainted: bool,
}

impl Side {
    fn new(name: &'static str, p: &ConnParams, role: Role, secret: &[u8], nonce: [u8; 32]) -> Side {
        Side {
            name,
            conn: Conn::new(p, role, nonce, 0),
            role,
            secret: secret.to_vec(),
            own_hello: None,
            accepted: None,
            authed: false,
            sent_auth: false,
            sent_bye: false,
            sent_frames: 0,
            sent_view: None,
            recv_view: None,
            recv_partial: None,
            tainted: false,
        }
    }

    /// The MAC this side's *peer* must send, as far as this side can tell.
    fn peer_mac(&self) -> Option<[u8; 32]> {
        let (own, peer) = (self.own_hello.as_ref()?, self.accepted.as_ref()?);
        let peer_role = match self.role {
            Role::Dialer => Role::Acceptor,
            Role::Acceptor => Role::Dialer,
        };
        match self.role {
            Role::Dialer => expected_mac(&self.secret, role_byte(peer_role), own, peer),
            Role::Acceptor => expected_mac(&self.secret, role_byte(peer_role), peer, own),
        }
    }

    fn own_mac(&self) -> Option<[u8; 32]> {
        let (own, peer) = (self.own_hello.as_ref()?, self.accepted.as_ref()?);
        match self.role {
            Role::Dialer => expected_mac(&self.secret, role_byte(self.role), own, peer),
            Role::Acceptor => expected_mac(&self.secret, role_byte(self.role), peer, own),
        }
    }

    /// Checks one frame it sent.
    fn check_sent(&mut self, f: &Frame) {
        let who = self.name;
        assert!(!self.sent_bye, "{who} sent {f:?} after its BYE");
        if self.sent_frames == 0 {
            match f {
                Frame::Hello(h) => self.own_hello = Some(h.clone()),
                other => panic!("{who}'s first frame is {other:?}, not HELLO"),
            }
        } else {
            assert!(!matches!(f, Frame::Hello(_)), "{who} sent a second HELLO");
        }
        match f {
            Frame::Auth { mac } => {
                assert!(!self.sent_auth, "{who} sent a second AUTH");
                assert!(self.accepted.is_some(), "{who} sent AUTH before accepting a HELLO");
                assert_eq!(Some(*mac), self.own_mac(), "{who} sent an AUTH that is not the MAC for its role");
                self.sent_auth = true;
            }
            Frame::Snapshot(_) | Frame::Delta(_) | Frame::Peers { .. } | Frame::Heartbeat { .. } => {
                assert!(self.authed, "{who} sent {:?} before authenticating its peer", f.frame_type());
            }
            Frame::Bye { .. } => self.sent_bye = true,
            Frame::Hello(_) => {}
        }
        self.sent_frames += 1;
    }

    /// Feeds `f` to the connection and checks the outcome.
    fn receive(&mut self, f: Frame, now: u64) {
        let who = self.name;
        let was_closed = self.conn.is_closed();
        let awaiting_hello = !was_closed && self.accepted.is_none();
        let awaiting_auth = !was_closed && self.accepted.is_some() && !self.authed;
        let auth_valid = match &f {
            Frame::Auth { mac } if awaiting_auth => Some(Some(*mac) == self.peer_mac()),
            _ => None,
        };
        let hello_verdict = match &f {
            Frame::Hello(h) if awaiting_hello => Some(self.judge_hello(h)),
            _ => None,
        };
        let ty = f.frame_type();
        let r = self.conn.handle_frame(f.clone(), now);
        if was_closed {
            assert_eq!(r, Err(ConnError::Closed), "{who} took a frame after closing");
        }
        if r.is_err() {
            assert!(self.conn.is_closed(), "{who} failed with {r:?} but did not close");
        }
        if let Some(verdict) = hello_verdict {
            match (verdict, &r) {
                (Ok(()), Ok(())) => {
                    let Frame::Hello(h) = f else { unreachable!() };
                    self.accepted = Some(h);
                }
                (Ok(()), Err(e)) => panic!("{who} refused a valid HELLO: {e}"),
                (Err(want), Err(got)) => assert_eq!(&want, got, "{who} refused a HELLO for the wrong reason"),
                (Err(want), Ok(())) => panic!("{who} accepted a HELLO that must fail with {want}"),
            }
        }
        let mut authenticated_now = false;
        while let Some(ev) = self.conn.poll_event() {
            match ev {
                Event::Authenticated(id) => {
                    assert_eq!(auth_valid, Some(true), "{who} authenticated its peer without a valid HMAC");
                    assert!(!self.authed, "{who} authenticated twice");
                    let h = self.accepted.as_ref().expect("authenticated without a HELLO");
                    assert_eq!(
                        (id.node_id, id.incarnation, &id.node_name, &id.listen),
                        (h.node_id, h.incarnation, &h.node_name, &h.listen),
                        "{who}'s peer identity is not the HELLO it accepted"
                    );
                    assert_ne!(id.role, self.role);
                    self.authed = true;
                    authenticated_now = true;
                }
                ev => {
                    assert!(self.authed && !authenticated_now, "{who} raised {ev:?} before authentication");
                    self.apply_event(ev);
                }
            }
        }
        match auth_valid {
            Some(true) => {
                assert_eq!(r, Ok(()), "{who} refused a valid AUTH");
                assert!(authenticated_now, "{who} took a valid AUTH without authenticating");
            }
            Some(false) => assert_eq!(r, Err(ConnError::AuthFailed), "{who} on a wrong AUTH"),
            None => assert!(!authenticated_now, "{who} authenticated on {ty:?}"),
        }
        self.check_state();
    }

    /// What PROTOCOL.md section 6 says of a HELLO, in its order.
    fn judge_hello(&self, h: &Hello) -> Result<(), ConnError> {
        let own = self.own_hello.as_ref().expect("a side's HELLO is queued when it is created");
        if h.version != 1 {
            return Err(ConnError::VersionUnsupported(h.version));
        }
        if h.cluster != own.cluster {
            return Err(ConnError::ClusterMismatch(h.cluster.clone()));
        }
        if h.node_id == own.node_id {
            return Err(ConnError::SelfConnection);
        }
        if h.nonce == own.nonce {
            return Err(ConnError::NonceReflected);
        }
        if hello_body(h).is_none() {
            // Only a hand-built HELLO can be too long; the error is the
            // crate's own choice, so take its word for the kind.
            return Err(ConnError::Wire(WireError::BadLength { field: "hello", len: 0 }));
        }
        Ok(())
    }

    fn apply_event(&mut self, ev: Event) {
        match ev {
            Event::Snapshot { first, last, entries } => {
                if first {
                    self.recv_partial = Some(View::default());
                }
                let partial =
                    self.recv_partial.as_mut().unwrap_or_else(|| panic!("{}: SNAPSHOT part without FIRST", self.name));
                partial.extend(entries.iter().map(|(t, n)| (t.to_vec(), *n)));
                if last {
                    self.recv_view = self.recv_partial.take();
                }
            }
            Event::Delta { entries, .. } => {
                let view = self.recv_view.as_mut().unwrap_or_else(|| panic!("{}: DELTA before a snapshot", self.name));
                view.extend(entries.iter().map(|(t, n)| (t.to_vec(), *n)));
            }
            Event::Peers(addrs) => assert!(addrs.len() <= wire::MAX_PEERS),
            Event::Bye { .. } => assert!(self.conn.is_closed(), "{}: BYE event without closing", self.name),
            Event::Authenticated(_) => unreachable!(),
        }
    }

    fn check_state(&self) {
        let closed = self.conn.is_closed();
        assert_eq!(self.conn.is_established(), self.authed && !closed, "{}: is_established disagrees", self.name);
    }

    /// Runs an application send and checks it is refused before authentication.
    fn app_send(&mut self, what: &str, r: Result<(), ConnError>) -> bool {
        if !self.authed || self.conn.is_closed() {
            assert!(r.is_err(), "{}: {what} accepted before authentication", self.name);
            return false;
        }
        match r {
            Ok(()) => true,
            // Refused without closing: a delta before our first snapshot.
            Err(ConnError::SnapshotOrder(_)) if what == "delta" && self.sent_view.is_none() => false,
            Err(e) => panic!("{}: {what} failed on an established connection: {e}", self.name),
        }
    }
}

/// A frame the attacker makes up for side `to`.
#[derive(Arbitrary, Debug)]
enum Forged {
    /// The honest peer's HELLO with one field changed.
    Hello(HelloChange),
    /// Any 32 bytes as a MAC.
    Auth([u8; 32]),
    /// A MAC computed with a chosen secret, role byte and HELLO order.
    AuthComputed {
        right_secret: bool,
        role: u8,
        swap: bool,
    },
    Snapshot {
        first: bool,
        last: bool,
        seq: u8,
        entries: Vec<(u8, Option<u8>, u64)>,
    },
    Delta {
        seq: u8,
        entries: Vec<(u8, Option<u8>, u64)>,
    },
    Heartbeat(u8),
    Peers(Vec<String>),
    Bye {
        code: u8,
        message: String,
    },
}

#[derive(Arbitrary, Debug)]
enum HelloChange {
    Same,
    Version(u64),
    Cluster(String),
    Name(String),
    NodeId(u64),
    SelfId,
    Nonce([u8; 32]),
    ReflectNonce,
    Listen(String),
}

fn entries(raw: Vec<(u8, Option<u8>, u64)>) -> Vec<Entry> {
    raw.into_iter()
        .map(|(id, name, count)| Entry {
            id: u32::from(id % 8),
            name: name.map(|t| TOPICS[usize::from(t) % TOPICS.len()].into()),
            count,
        })
        .collect()
}

/// The frames of an honest handshake and first state exchange between the
/// same two nodes on *another* connection (other nonces): what an attacker
/// could record and replay.
fn other_connection() -> &'static [Frame] {
    static FRAMES: OnceLock<Vec<Frame>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let a = Conn::new(&params("a", 1, SECRET, CLUSTER, 4), Role::Dialer, [0x11; 32], 0);
        let b = Conn::new(&params("b", 2, SECRET, CLUSTER, 4), Role::Acceptor, [0x22; 32], 0);
        let mut p = Pair::new(a, b);
        let mut seen: Vec<Frame> = p.run(1).into_iter().map(|(_, f)| f).collect();
        assert!(p.is_established(), "the recorded connection did not authenticate");
        let [a, b] = &mut p.conns;
        let _ = a.send_snapshot([(&b"room:1"[..], 5)], 1);
        let _ = b.send_snapshot([(&b"room:2"[..], 6)], 1);
        let _ = a.send_delta([(&b"room:1"[..], 0), (&b"lobby"[..], 2)], 1);
        let _ = a.send_peers(&["127.0.0.1:7003".into()], 1);
        seen.extend(p.run(1).into_iter().map(|(_, f)| f));
        seen
    })
}

/// The op codes of an honest handshake ("deliver A->B", "deliver B->A", one
/// per frame), as the pair runs it: what the seed corpus starts with.
pub fn honest_handshake_ops() -> Vec<u8> {
    let a = Conn::new(&params("a", 1, SECRET, CLUSTER, 1), Role::Dialer, [0xa1; 32], 0);
    let b = Conn::new(&params("b", 2, SECRET, CLUSTER, 1), Role::Acceptor, [0xb2; 32], 0);
    let mut p = Pair::new(a, b);
    let ops = p.run(1).into_iter().map(|(from, _)| if from == A { OP_DELIVER_AB } else { OP_DELIVER_BA }).collect();
    assert!(p.is_established(), "an honest pair did not authenticate");
    ops
}

struct World {
    sides: [Side; 2],
    /// In flight from side i to the other.
    wire: [VecDeque<Frame>; 2],
    /// Frames an attacker has seen.
    pool: Vec<Frame>,
    now: u64,
    /// No attacker, one secret, no timeouts: the sides must authenticate.
    honest: bool,
}

impl World {
    fn collect(&mut self, i: usize) {
        while let Some(f) = self.sides[i].conn.poll_transmit() {
            self.sides[i].check_sent(&f);
            let small = match &f {
                Frame::Snapshot(s) => s.entries.len() <= 16,
                Frame::Delta(d) => d.entries.len() <= 16,
                _ => true,
            };
            if small && self.pool.len() < MAX_POOL {
                self.pool.push(f.clone());
            }
            self.wire[i].push_back(f);
        }
    }

    fn collect_all(&mut self) {
        self.collect(0);
        self.collect(1);
    }

    /// Delivers the next frame from side `from`, through the byte codec
    /// with the receiver's current cap, as a socket would.
    fn deliver(&mut self, from: usize) -> bool {
        let Some(f) = self.wire[from].pop_front() else { return false };
        let to = 1 - from;
        let state_frame = matches!(f, Frame::Snapshot(_) | Frame::Delta(_));
        match pair::carry(&f, self.sides[to].conn.max_frame_len()) {
            Ok(g) => self.sides[to].receive(g, self.now),
            Err(e) => {
                // Only the cap can refuse an honest frame: a state frame
                // larger than the handshake cap, to a side not yet
                // authenticated (so it came after a dropped or forged AUTH).
                assert!(matches!(e, WireError::FrameTooLarge { .. }), "an honest frame failed to decode: {e}");
                let _ = self.sides[to].conn.handle_decode_error(e, self.now);
                self.sides[to].check_state();
            }
        }
        self.collect_all();
        if state_frame {
            self.check_views(to);
        }
        true
    }

    /// Feeds an attacker's frame to side `to`.
    fn inject(&mut self, to: usize, f: Frame) {
        self.honest = false;
        self.sides[to].tainted = true;
        match wire::encode_to_vec(&f) {
            Ok(bytes) => match wire::decode_frame(&bytes, self.sides[to].conn.max_frame_len()) {
                Ok(Some((g, _))) => self.sides[to].receive(g, self.now),
                Ok(None) => unreachable!("a whole encoded frame decoded as incomplete"),
                Err(e) => {
                    let _ = self.sides[to].conn.handle_decode_error(e, self.now);
                }
            },
            // Not sendable as bytes; the state machine must still cope
            // with it as a value.
            Err(_) => self.sides[to].receive(f, self.now),
        }
        self.sides[to].check_state();
        self.collect_all();
    }

    fn forge(&self, to: usize, forged: Forged) -> Frame {
        let victim = &self.sides[to];
        let peer = &self.sides[1 - to];
        match forged {
            Forged::Hello(change) => {
                let mut h = peer.own_hello.clone().expect("every side's HELLO is sent at creation");
                let own = victim.own_hello.as_ref().expect("every side's HELLO is sent at creation");
                match change {
                    HelloChange::Same => {}
                    HelloChange::Version(v) => h.version = v,
                    HelloChange::Cluster(c) => h.cluster = c,
                    HelloChange::Name(n) => h.node_name = n,
                    HelloChange::NodeId(id) => h.node_id = id,
                    HelloChange::SelfId => h.node_id = own.node_id,
                    HelloChange::Nonce(n) => h.nonce = n,
                    HelloChange::ReflectNonce => h.nonce = own.nonce,
                    HelloChange::Listen(l) => h.listen = l,
                }
                Frame::Hello(h)
            }
            Forged::Auth(mac) => Frame::Auth { mac },
            Forged::AuthComputed { right_secret, role, swap } => {
                let secret: &[u8] = if right_secret { &victim.secret } else { b"guess" };
                let role = match role % 3 {
                    0 => b'D',
                    1 => b'A',
                    _ => role,
                };
                let own = victim.own_hello.clone().expect("sent at creation");
                let other = victim.accepted.clone().or_else(|| peer.own_hello.clone()).expect("sent at creation");
                let (mut d, mut a) = match victim.role {
                    Role::Dialer => (own, other),
                    Role::Acceptor => (other, own),
                };
                if swap {
                    std::mem::swap(&mut d, &mut a);
                }
                Frame::Auth { mac: expected_mac(secret, role, &d, &a).unwrap_or([0; 32]) }
            }
            Forged::Snapshot { first, last, seq, entries: e } => {
                Frame::Snapshot(Snapshot { seq: u64::from(seq), first, last, entries: entries(e) })
            }
            Forged::Delta { seq, entries: e } => Frame::Delta(Delta { seq: u64::from(seq), entries: entries(e) }),
            Forged::Heartbeat(s) => Frame::Heartbeat { last_seq: u64::from(s) },
            Forged::Peers(addrs) => Frame::Peers { addrs },
            Forged::Bye { code, message } => Frame::Bye { code: ByeCode(u64::from(code)), message },
        }
    }

    /// Over an untouched direction, once everything sent has arrived, the
    /// receiver's view is the sender's.
    fn check_views(&self, to: usize) {
        let (rx, tx) = (&self.sides[to], &self.sides[1 - to]);
        if rx.tainted || rx.conn.is_closed() || !self.wire[1 - to].is_empty() {
            return;
        }
        let (got, want) = match (&rx.recv_view, &tx.sent_view) {
            (None, None) => return,
            (Some(got), Some(want)) => (got, want),
            (got, _) => panic!(
                "{} {} a snapshot that {} {}",
                rx.name,
                if got.is_some() { "received" } else { "did not receive" },
                tx.name,
                if got.is_some() { "did not send" } else { "sent" }
            ),
        };
        let nonzero = |m: &View| m.values().filter(|n| **n != 0).count();
        let same = nonzero(got) == nonzero(want) && want.iter().all(|(t, n)| got.get(t).copied().unwrap_or(0) == *n);
        assert!(same, "{} received other counts than {} sent", rx.name, tx.name);
    }

    fn send_snapshot(&mut self, i: usize, counts: Vec<(Vec<u8>, u64)>) {
        let now = self.now;
        let s = &mut self.sides[i];
        let r = s.conn.send_snapshot(counts.iter().map(|(t, n)| (&t[..], *n)), now);
        if s.app_send("snapshot", r) {
            s.sent_view = Some(counts.into_iter().collect());
        }
        self.collect_all();
    }

    fn send_delta(&mut self, i: usize, counts: Vec<(Vec<u8>, u64)>) {
        let now = self.now;
        let s = &mut self.sides[i];
        let r = s.conn.send_delta(counts.iter().map(|(t, n)| (&t[..], *n)), now);
        if s.app_send("delta", r) {
            s.sent_view.as_mut().expect("a delta was accepted before a snapshot").extend(counts);
        }
        self.collect_all();
    }

    fn pump(&mut self) {
        for _ in 0..100_000 {
            if !self.deliver(0) && !self.deliver(1) {
                return;
            }
        }
        panic!("the two sides never went quiet");
    }
}

fn small_counts(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<(Vec<u8>, u64)>> {
    let n = u.int_in_range(0..=6)?;
    (0..n)
        .map(|_| {
            let t: u8 = u.arbitrary()?;
            let c: u8 = u.arbitrary()?;
            Ok((TOPICS[usize::from(t) % TOPICS.len()].to_vec(), u64::from(c % 8)))
        })
        .collect()
}

/// The target. See the module docs.
pub fn handshake(data: &[u8]) {
    let _ = handshake_outcome(data);
}

/// What a run of the target ended with, for tests of the seed corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Each side (A, B) authenticated its peer.
    pub authed: [bool; 2],
    /// Each side received a complete snapshot.
    pub synced: [bool; 2],
}

/// Runs the target and reports how far the two sides got.
pub fn handshake_outcome(data: &[u8]) -> Outcome {
    let mut u = Unstructured::new(data);
    let Ok(flags) = u.arbitrary::<u8>() else { return Outcome { authed: [false; 2], synced: [false; 2] } };
    let soft_cap = usize::from(u.arbitrary::<u8>().unwrap_or(0) % 4) + 1;
    let secret_a: &[u8] = if flags & 16 != 0 { b"" } else { SECRET };
    let secret_b: &[u8] = if flags & 1 != 0 { b"another" } else { secret_a };
    let cluster_b = if flags & 2 != 0 { "staging" } else { CLUSTER };
    let id_b = if flags & 4 != 0 { 1 } else { 2 };
    let nonce_b = if flags & 8 != 0 { [0xa1; 32] } else { [0xb2; 32] };
    let a = Side::new("a", &params("a", 1, secret_a, CLUSTER, soft_cap), Role::Dialer, secret_a, [0xa1; 32]);
    let b = Side::new("b", &params("b", id_b, secret_b, cluster_b, soft_cap), Role::Acceptor, secret_b, nonce_b);
    let mut w = World {
        sides: [a, b],
        wire: [VecDeque::new(), VecDeque::new()],
        pool: other_connection().to_vec(),
        now: 1,
        honest: flags & 0x0f == 0,
    };
    w.collect_all();
    // Runs until the input is used up (or a read fails on its last bytes).
    let _ = run(&mut w, &mut u);
    w.pump();
    if w.honest {
        assert!(w.sides[0].authed && w.sides[1].authed, "an honest handshake did not authenticate both sides");
    }
    Outcome {
        authed: [w.sides[0].authed, w.sides[1].authed],
        synced: [w.sides[0].conn.is_synced(), w.sides[1].conn.is_synced()],
    }
}

fn run(w: &mut World, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    while !u.is_empty() {
        let op: u8 = u.arbitrary()?;
        match op % 14 {
            OP_DELIVER_AB => {
                w.deliver(0);
            }
            OP_DELIVER_BA => {
                w.deliver(1);
            }
            2 | 3 => {
                let from = usize::from(op % 14 - 2);
                if w.wire[from].pop_front().is_some() {
                    w.sides[1 - from].tainted = true;
                    w.honest = false;
                }
            }
            4 => {
                let to = usize::from(u.arbitrary::<u8>()? & 1);
                let forged: Forged = u.arbitrary()?;
                let f = w.forge(to, forged);
                w.inject(to, f);
            }
            5 => {
                let to = usize::from(u.arbitrary::<u8>()? & 1);
                let idx = usize::from(u.arbitrary::<u8>()?);
                let f = w.pool[idx % w.pool.len()].clone();
                w.inject(to, f);
            }
            6 => {
                let ms: u16 = u.arbitrary()?;
                w.now += u64::from(ms);
                if w.now >= HANDSHAKE_TIMEOUT_MS && !(w.sides[0].authed && w.sides[1].authed) {
                    w.honest = false;
                }
                for i in 0..2 {
                    let r = w.sides[i].conn.handle_timeout(w.now);
                    if r.is_err() {
                        assert!(w.sides[i].conn.is_closed(), "{}: timer error without closing", w.sides[i].name);
                    }
                    w.sides[i].check_state();
                }
                w.collect_all();
            }
            7 => {
                let i = usize::from(u.arbitrary::<u8>()? & 1);
                let counts = small_counts(u)?;
                w.send_snapshot(i, counts);
            }
            8 => {
                let i = usize::from(u.arbitrary::<u8>()? & 1);
                let counts = small_counts(u)?;
                w.send_delta(i, counts);
            }
            9 => {
                let i = usize::from(u.arbitrary::<u8>()? & 1);
                let addrs: Vec<String> = u.arbitrary()?;
                let now = w.now;
                let r = w.sides[i].conn.send_peers(&addrs, now);
                w.sides[i].app_send("peers", r);
                w.collect_all();
            }
            10 => {
                let i = usize::from(u.arbitrary::<u8>()? & 1);
                let how: u8 = u.arbitrary()?;
                w.honest = false;
                let now = w.now;
                let s = &mut w.sides[i];
                if how & 1 == 0 {
                    let _ = s.conn.handle_decode_error(WireError::BadMagic, now);
                } else {
                    s.conn.close(ByeCode(u64::from(how >> 1)), "bye", now);
                }
                assert!(s.conn.is_closed());
                s.check_state();
                w.collect_all();
            }
            11 => {
                let to = usize::from(u.arbitrary::<u8>()? & 1);
                let bytes: Vec<u8> = u.arbitrary()?;
                w.honest = false;
                w.sides[to].tainted = true;
                let now = w.now;
                match wire::decode_frame(&bytes, w.sides[to].conn.max_frame_len()) {
                    Ok(Some((f, _))) => w.sides[to].receive(f, now),
                    Ok(None) => {}
                    Err(e) => {
                        let _ = w.sides[to].conn.handle_decode_error(e, now);
                        w.sides[to].check_state();
                    }
                }
                w.collect_all();
            }
            12 => {
                let i = usize::from(u.arbitrary::<u8>()? & 1);
                // Long names, so that a few hundred entries fill several
                // 64 KiB frames.
                let n = usize::from(u.arbitrary::<u8>()? % 32) * 8;
                let zero: u8 = u.arbitrary()?;
                let counts = (0..n)
                    .map(|k| {
                        let mut name = format!("topic-{k:04}-").into_bytes();
                        name.resize(500, b'.');
                        (name, if k % 4 < usize::from(zero % 5) { 0 } else { k as u64 })
                    })
                    .collect();
                w.send_snapshot(i, counts);
            }
            _ => w.pump(),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    /// Our independent MAC and HELLO encoder against PROTOCOL.md section 11.
    #[test]
    fn independent_mac_matches_protocol_md() {
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
        let frame = unhex(
            "4c 00 00 00 01 48 43 4e 54 01 04 70 72 6f 64 01 61 01 00 00 00 00 00 00 00
             02 00 00 00 00 00 00 00 0e 31 32 37 2e 30 2e 30 2e 31 3a 34 30 30 30 00 01
             02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a
             1b 1c 1d 1e 1f f7 86 e2 05",
        );
        assert_eq!(hello_body(&d).unwrap(), frame[5..frame.len() - 4]);
        let a = Hello {
            node_name: "b".into(),
            node_id: 3,
            incarnation: 4,
            listen: String::new(),
            nonce: [0xff; 32],
            ..d.clone()
        };
        let hex = |m: [u8; 32]| m.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(expected_mac(b"secret", b'D', &d, &a).unwrap()),
            "a75470ea7fee36e02c5659875c355ed2943e2668cf3fe1a75a24416144f439a0"
        );
        assert_eq!(
            hex(expected_mac(b"secret", b'A', &d, &a).unwrap()),
            "9a09707094a6290fdbd9882532cab6610a5b43853feabe079dc6a839ced34d49"
        );
    }
}
