//! One connection to a peer: its outbox, its reader and its writer.
//!
//! A [`Link`] owns one TCP stream and the sans-IO [`Conn`] that speaks the
//! protocol on it. Two threads serve it:
//!
//! * the **reader** ([`Cluster::run_link`], on the thread that accepted or
//!   dialed the connection) decodes frames, feeds them to the `Conn`, and
//!   hands the resulting events to the registry (authentication, departure)
//!   and the view (snapshots, deltas);
//! * the **writer** ([`Cluster::write_loop`]) waits on the link's condvar for
//!   work (queued handshake frames, a snapshot to send, outbox entries, a
//!   gossip list, a timer), turns it into frames and does the blocking
//!   `write`, bounded by `SO_SNDTIMEO`.
//!
//! # The outbox
//!
//! `LinkState::pending` maps topic -> latest absolute count not yet sent.
//! The flusher merges each drain into it ([`Link::enqueue`]); a topic already
//! present is overwritten (a *coalesce*), so a slow peer receives fewer,
//! newer values and memory grows only with distinct topics. Past
//! [`OUTBOX_CAP`] entries the outbox is dropped for `need_snapshot`: the
//! writer then reads a fresh snapshot from the counter, outside the link
//! lock, so the flusher never waits for it (docs/CLUSTER.md explains why
//! no update is lost).
//!
//! | `LinkState` field | set by                                  | cleared by |
//! |-------------------|-----------------------------------------|------------|
//! | `pending`         | flusher (`enqueue`)                     | writer (hands it to `Conn::send_delta`), overflow |
//! | `need_snapshot`   | registry on authentication; overflow    | writer (sends the snapshot) |
//! | `peers`           | registry when the peer set changes      | writer (`Conn::send_peers`) |
//! | `stop`            | close, reader end, write failure, errors | never: the link is finished |

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::conn::{Conn, ConnError, Event, Role, Topic};
use super::identity::random_bytes;
use super::log::{log, Level};
use super::registry::dialable;
use super::runtime::Cluster;
use super::wire::{self, ByeCode, Delta, Frame, FrameDecoder, Snapshot, MAX_HANDSHAKE_FRAME_LEN, NONCE_LEN};
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Coalesced outbox entries per link past which we drop them and send a
/// fresh snapshot instead (bounds per-peer memory whatever the peer does).
pub(crate) const OUTBOX_CAP: usize = 1 << 18;

/// A link's cumulative traffic, as read from its [`LinkStats`]. A peer keeps
/// the sum over its closed links, so that its stats cover every connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Traffic {
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) frames_in: u64,
    pub(super) frames_out: u64,
    pub(super) coalesced: u64,
    /// Topic entries in the SNAPSHOT and DELTA frames written.
    pub(super) topics_out: u64,
    /// Bytes of those SNAPSHOT and DELTA frames (header and CRC included).
    pub(super) state_bytes_out: u64,
}

impl std::ops::Add for Traffic {
    type Output = Traffic;
    fn add(self, o: Traffic) -> Traffic {
        Traffic {
            bytes_in: self.bytes_in + o.bytes_in,
            bytes_out: self.bytes_out + o.bytes_out,
            frames_in: self.frames_in + o.frames_in,
            frames_out: self.frames_out + o.frames_out,
            coalesced: self.coalesced + o.coalesced,
            topics_out: self.topics_out + o.topics_out,
            state_bytes_out: self.state_bytes_out + o.state_bytes_out,
        }
    }
}

/// Per-connection counters.
#[derive(Debug, Default)]
pub(super) struct LinkStats {
    pub(super) bytes_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    pub(super) frames_in: AtomicU64,
    pub(super) frames_out: AtomicU64,
    pub(super) coalesced: AtomicU64,
    pub(super) topics_out: AtomicU64,
    pub(super) state_bytes_out: AtomicU64,
    pub(super) overflows: AtomicU64,
    pub(super) snapshots_sent: AtomicU64,
    pub(super) pending: AtomicUsize,
}

impl LinkStats {
    /// The cumulative counters now.
    pub(super) fn traffic(&self) -> Traffic {
        Traffic {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            topics_out: self.topics_out.load(Ordering::Relaxed),
            state_bytes_out: self.state_bytes_out.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
pub(super) struct LinkState {
    pub(super) conn: Conn,
    /// Latest absolute count per topic not yet handed to `conn`.
    pub(super) pending: HashMap<Topic, u64, foldhash::fast::RandomState>,
    pub(super) need_snapshot: bool,
    pub(super) peers: Option<Vec<String>>,
    /// Set when the writer must stop (after writing what `conn` queued).
    pub(super) stop: bool,
}

/// One TCP connection to a peer. See the module docs.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) id: u64,
    pub(super) role: Role,
    pub(super) remote: SocketAddr,
    /// The address dialed, for dialed links.
    pub(super) dialed: Option<String>,
    pub(super) stream: TcpStream,
    pub(super) st: Mutex<LinkState>,
    pub(super) cv: Condvar,
    pub(super) stats: LinkStats,
    /// Peer node id, once registered (0 before).
    pub(super) peer_id: AtomicU64,
    pub(super) finished: AtomicBool,
}

impl Link {
    /// A link over `stream` whose protocol state is `conn` (fresh, or in
    /// tests already past the handshake), with an empty outbox and no peer
    /// registered yet.
    pub(super) fn new(
        id: u64,
        role: Role,
        remote: SocketAddr,
        dialed: Option<String>,
        stream: TcpStream,
        conn: Conn,
    ) -> Link {
        Link {
            id,
            role,
            remote,
            dialed,
            stream,
            st: Mutex::new(LinkState {
                conn,
                pending: HashMap::default(),
                need_snapshot: false,
                peers: None,
                stop: false,
            }),
            cv: Condvar::new(),
            stats: LinkStats::default(),
            peer_id: AtomicU64::new(0),
            finished: AtomicBool::new(false),
        }
    }

    /// Queues a BYE and makes the writer stop after writing it.
    pub(super) fn close(&self, code: ByeCode, message: &str, now_ms: u64) {
        let mut st = self.st.lock();
        st.conn.close(code, message, now_ms);
        st.stop = true;
        self.cv.notify_all();
    }

    /// Merges one flush's changes into the outbox (latest value per topic).
    /// Past `cap` entries the outbox is dropped for a fresh snapshot.
    pub(super) fn enqueue(&self, changes: &[(Topic, u64)], cap: usize) {
        let mut st = self.st.lock();
        if st.stop || st.conn.is_closed() {
            return;
        }
        // With a snapshot still to be read, these values will be in it.
        if !st.need_snapshot {
            let mut coalesced = 0;
            for (t, n) in changes {
                if st.pending.insert(t.clone(), *n).is_some() {
                    coalesced += 1;
                }
            }
            if st.pending.len() > cap {
                // The peer is far behind: stop tracking single changes and
                // send it a fresh snapshot when it catches up.
                st.pending = HashMap::default();
                st.need_snapshot = true;
                self.stats.overflows.fetch_add(1, Ordering::Relaxed);
            }
            self.stats.coalesced.fetch_add(coalesced, Ordering::Relaxed);
            self.stats.pending.store(st.pending.len(), Ordering::Relaxed);
        }
        self.cv.notify_all();
    }

    pub(super) fn kill(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

impl Cluster {
    /// Runs one connection to its end on this thread (reading), with a
    /// writer thread beside it. Returns whether the peer authenticated.
    pub(super) fn run_link(
        self: &Arc<Self>,
        stream: TcpStream,
        remote: SocketAddr,
        role: Role,
        dialed: Option<String>,
    ) -> bool {
        self.stats.handshakes.fetch_add(1, Ordering::AcqRel);
        let mut in_handshake = true;
        let done_handshake = |flag: &mut bool| {
            if std::mem::replace(flag, false) {
                self.stats.handshakes.fetch_sub(1, Ordering::AcqRel);
            }
        };
        let mut nonce = [0u8; NONCE_LEN];
        if let Err(e) = random_bytes(&mut nonce) {
            log!(Level::Error, &self.name, "{e}");
            done_handshake(&mut in_handshake);
            return false;
        }
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(Duration::from_millis(self.params.down_after_ms.max(1000))));
        let writer_stream = match stream.try_clone() {
            Ok(s) => s,
            Err(e) => {
                log!(Level::Warn, &self.name, "{remote}: {e}");
                done_handshake(&mut in_handshake);
                return false;
            }
        };
        let now = self.now_ms();
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let conn = Conn::new(&self.params, role, nonce, now);
        let link = Arc::new(Link::new(id, role, remote, dialed, stream, conn));
        {
            let mut reg = self.reg.lock();
            if self.is_closed() {
                done_handshake(&mut in_handshake);
                return false;
            }
            reg.links.insert(link.id, link.clone());
        }
        let writer = {
            let (c, l) = (self.clone(), link.clone());
            std::thread::Builder::new()
                .name(format!("hc-write-{}", self.name))
                .spawn(move || c.write_loop(&l, writer_stream))
        };
        let writer = match writer {
            Ok(w) => Some(w),
            Err(e) => {
                log!(Level::Error, &self.name, "cannot start a writer thread: {e}");
                link.kill();
                None
            }
        };

        let mut authenticated = false;
        let mut slot: Option<u16> = None;
        let mut decoder = FrameDecoder::new(MAX_HANDSHAKE_FRAME_LEN);
        let mut buf = vec![0u8; 64 * 1024];
        let mut events = Vec::new();
        let mut reason = String::from("connection closed");
        'read: loop {
            let n = match (&link.stream).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    reason = e.to_string();
                    break;
                }
            };
            link.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            decoder.push(&buf[..n]);
            loop {
                let now = self.now_ms();
                let mut st = link.st.lock();
                if st.conn.is_closed() {
                    // Closed by the writer (silence, shutdown): whatever
                    // else arrives is of no interest.
                    break 'read;
                }
                decoder.set_max_len(st.conn.max_frame_len());
                let frame = match decoder.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        let err = st.conn.handle_decode_error(e, now);
                        st.stop = true;
                        link.cv.notify_all();
                        drop(st);
                        reason = err.to_string();
                        self.note_error(&link, &err);
                        break 'read;
                    }
                };
                link.stats.frames_in.fetch_add(1, Ordering::Relaxed);
                let r = st.conn.handle_frame(frame, now);
                while let Some(ev) = st.conn.poll_event() {
                    events.push(ev);
                }
                let closed = st.conn.is_closed();
                if closed {
                    st.stop = true;
                }
                link.cv.notify_all();
                drop(st);
                if let Some(s) = slot {
                    self.view.touch(s, now);
                }
                for ev in events.drain(..) {
                    match ev {
                        Event::Authenticated(id) => {
                            done_handshake(&mut in_handshake);
                            authenticated = true;
                            slot = self.on_authenticated(&link, &id);
                            if let Some(s) = slot {
                                self.view.touch(s, now);
                            }
                        }
                        Event::Snapshot(snap) => {
                            if let Some(s) = slot {
                                if self.view.replace(s, link.id, snap) {
                                    self.on_synced(&link, s);
                                }
                            }
                        }
                        Event::Delta { entries, .. } => {
                            if let Some(s) = slot {
                                self.view.apply(s, link.id, entries);
                            }
                        }
                        Event::Peers(addrs) => {
                            for a in addrs {
                                self.add_addr(&dialable(&a, remote), false);
                            }
                        }
                        Event::Bye { code, message } => {
                            reason = format!("peer said BYE: {} ({message})", code.name());
                            if code == ByeCode::SHUTDOWN {
                                self.on_left(&link);
                            }
                        }
                    }
                }
                if let Err(e) = r {
                    reason = e.to_string();
                    self.note_error(&link, &e);
                    break 'read;
                }
                if closed {
                    break 'read;
                }
            }
        }
        done_handshake(&mut in_handshake);
        {
            let mut st = link.st.lock();
            st.stop = true;
            link.cv.notify_all();
        }
        // The writer writes any BYE still queued, then shuts the socket down;
        // if it is stuck on a peer that stopped reading, its write timeout
        // (or the shutdown below at node close) ends it.
        if let Some(w) = writer {
            let _ = w.join();
        }
        link.kill();
        self.on_link_closed(&link, &reason);
        authenticated
    }

    fn note_error(&self, link: &Link, e: &ConnError) {
        match e {
            ConnError::AuthFailed => {
                self.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
                log!(Level::Warn, &self.name, "{}: authentication failed (wrong secret?); dropped", link.remote);
            }
            ConnError::RejectedByPeer { code, .. } if *code == ByeCode::AUTH_FAILED => {
                self.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
                log!(Level::Warn, &self.name, "{}: {e}", link.remote);
            }
            ConnError::SelfConnection => {
                if let Some(a) = &link.dialed {
                    if let Some(d) = self.reg.lock().addrs.get_mut(a) {
                        d.is_self = true;
                    }
                }
            }
            ConnError::PeerSilent(_) | ConnError::HandshakeTimeout => {
                log!(Level::Info, &self.name, "{}: {e}", link.remote);
            }
            _ => {
                self.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                log!(Level::Warn, &self.name, "{}: closing: {e}", link.remote);
            }
        }
    }

    fn write_loop(&self, link: &Link, mut stream: TcpStream) {
        let mut out = Vec::with_capacity(64 * 1024);
        let mut snapshot: Vec<(Box<[u8]>, u64)> = Vec::new();
        loop {
            let mut st = link.st.lock();
            // Wait for something to do.
            loop {
                let now = self.now_ms();
                if !st.conn.is_closed() {
                    if let Err(e) = st.conn.handle_timeout(now) {
                        self.note_error(link, &e);
                        st.stop = true;
                    }
                }
                let established = st.conn.is_established();
                let work = st.stop
                    || st.conn.is_closed()
                    || (established && (st.need_snapshot || !st.pending.is_empty() || st.peers.is_some()))
                    || st.conn.has_transmit();
                if work {
                    break;
                }
                let deadline = st.conn.poll_timeout().unwrap_or(now + 1000).max(now + 1);
                link.cv.wait_for(&mut st, Duration::from_millis(deadline - now));
            }
            let now = self.now_ms();
            if st.conn.is_established() && !st.conn.is_closed() {
                if std::mem::take(&mut st.need_snapshot) {
                    // Read the counts without holding the link (the flusher
                    // must not wait on a snapshot). Deltas queued meanwhile
                    // are sent after the snapshot, so nothing newer is lost.
                    drop(st);
                    snapshot.clear();
                    self.counter.for_each_nonzero(|t, n| snapshot.push((t.into(), n)));
                    st = link.st.lock();
                    if !st.conn.is_closed() {
                        let r = st.conn.send_snapshot(snapshot.iter().map(|(t, n)| (&t[..], *n)), now);
                        if let Err(e) = r {
                            self.note_error(link, &e);
                            st.conn.close(ByeCode::PROTOCOL_ERROR, &e.to_string(), now);
                        }
                        link.stats.snapshots_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    snapshot = Vec::new();
                }
                if !st.pending.is_empty() && st.conn.is_established() && st.conn.has_sent_snapshot() {
                    let pending = std::mem::take(&mut st.pending);
                    link.stats.pending.store(0, Ordering::Relaxed);
                    if let Err(e) = st.conn.send_delta(pending.iter().map(|(t, n)| (&t[..], *n)), now) {
                        self.note_error(link, &e);
                        st.conn.close(ByeCode::PROTOCOL_ERROR, &e.to_string(), now);
                    }
                }
                if let Some(addrs) = st.peers.take() {
                    let _ = st.conn.send_peers(&addrs, now);
                }
            } else {
                st.peers = None;
            }
            let mut frames = 0;
            // Entries and bytes of the state frames (SNAPSHOT, DELTA) in `out`.
            let (mut topics, mut state_bytes) = (0, 0);
            while let Some(f) = st.conn.poll_transmit() {
                let start = out.len();
                if let Err(e) = wire::encode_frame(&f, &mut out) {
                    // Our own frames always fit; should one not, fail the
                    // connection rather than send garbage.
                    log!(Level::Error, &self.name, "cannot encode {}: {e}", f.frame_type().name());
                    st.conn.close(ByeCode::PROTOCOL_ERROR, "internal encoding error", now);
                } else if let Frame::Snapshot(Snapshot { entries, .. }) | Frame::Delta(Delta { entries, .. }) = &f {
                    topics += entries.len() as u64;
                    state_bytes += (out.len() - start) as u64;
                }
                frames += 1;
            }
            let finish = st.stop || st.conn.is_closed();
            drop(st);
            if !out.is_empty() {
                match stream.write_all(&out) {
                    Ok(()) => {
                        link.stats.bytes_out.fetch_add(out.len() as u64, Ordering::Relaxed);
                        link.stats.frames_out.fetch_add(frames, Ordering::Relaxed);
                        link.stats.topics_out.fetch_add(topics, Ordering::Relaxed);
                        link.stats.state_bytes_out.fetch_add(state_bytes, Ordering::Relaxed);
                    }
                    Err(e) => {
                        log!(Level::Info, &self.name, "{}: write failed: {e}", link.remote);
                        break;
                    }
                }
                out.clear();
                if out.capacity() > 1 << 20 {
                    out = Vec::with_capacity(64 * 1024);
                }
            }
            if finish {
                break;
            }
        }
        link.finished.store(true, Ordering::Release);
        {
            let mut st = link.st.lock();
            st.stop = true;
        }
        let _ = stream.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::cluster::conn::{AuthKey, ConnParams, DEFAULT_ID_SOFT_CAP};

    fn params(id: u64) -> ConnParams {
        ConnParams {
            cluster: "t".into(),
            node_name: format!("n{id}"),
            node_id: id,
            incarnation: id,
            listen: String::new(),
            key: AuthKey::new(b"s"),
            handshake_timeout_ms: 1000,
            heartbeat_ms: 100,
            down_after_ms: 1000,
            id_soft_cap: DEFAULT_ID_SOFT_CAP,
        }
    }

    /// A link over a real loopback socket whose `Conn` is authenticated
    /// (handshake driven in memory against a second `Conn`).
    fn established_link() -> Link {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let mut a = Conn::new(&params(1), Role::Dialer, [1; 32], 0);
        let mut b = Conn::new(&params(2), Role::Acceptor, [2; 32], 0);
        for _ in 0..3 {
            while let Some(f) = a.poll_transmit() {
                b.handle_frame(f, 1).unwrap();
            }
            while let Some(f) = b.poll_transmit() {
                a.handle_frame(f, 1).unwrap();
            }
        }
        assert!(a.is_established());
        Link::new(1, Role::Dialer, l.local_addr().unwrap(), None, stream, a)
    }

    fn ch(list: &[(&str, u64)]) -> Vec<(Topic, u64)> {
        list.iter().map(|(t, n)| (Topic::from(t.as_bytes()), *n)).collect()
    }

    #[test]
    fn outbox_coalesces_to_the_latest_absolute_value() {
        let link = established_link();
        link.enqueue(&ch(&[("a", 1), ("b", 1)]), 10);
        link.enqueue(&ch(&[("a", 2)]), 10);
        link.enqueue(&ch(&[("a", 3), ("c", 0)]), 10);
        let st = link.st.lock();
        assert_eq!(st.pending.len(), 3);
        assert_eq!(st.pending.get(&b"a"[..]), Some(&3));
        assert_eq!(st.pending.get(&b"c"[..]), Some(&0));
        assert_eq!(link.stats.coalesced.load(Ordering::Relaxed), 2);
        assert!(!st.need_snapshot);
    }

    #[test]
    fn outbox_overflow_switches_to_a_snapshot_and_stays_bounded() {
        let link = established_link();
        let many: Vec<(Topic, u64)> = (0..100).map(|i| (Topic::from(format!("t{i}").as_bytes()), 1)).collect();
        link.enqueue(&many[..50], 64);
        assert_eq!(link.st.lock().pending.len(), 50);
        link.enqueue(&many[50..], 64);
        {
            let st = link.st.lock();
            assert!(st.pending.is_empty(), "dropped past the cap");
            assert!(st.need_snapshot, "a snapshot replaces the dropped changes");
        }
        assert_eq!(link.stats.overflows.load(Ordering::Relaxed), 1);
        // While a snapshot is pending, changes are not even buffered: the
        // snapshot (read later) includes them.
        for _ in 0..10 {
            link.enqueue(&many, 64);
        }
        assert!(link.st.lock().pending.is_empty());
        // A stopped link buffers nothing.
        let link = established_link();
        link.st.lock().stop = true;
        link.enqueue(&many, 1000);
        assert!(link.st.lock().pending.is_empty());
    }
}
