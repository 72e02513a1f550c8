//! The networked half of a node: listener, dialers, one reader and one
//! writer thread per connection, the peer registry and the remote view.
//!
//! ```text
//!             flusher thread (node.rs): drain once ──▶ Cluster::distribute
//!                                                        │ one coalescing outbox per link
//!   listener ──accept──▶ reader thread ◀──────┐          ▼
//!   dialer (per address) ──connect──▶ reader   ├── Link { Mutex<{Conn, outbox}>, Condvar }
//!                          │ spawns/joins      │          │
//!                          ▼                   │          ▼
//!                      writer thread ──────────┘   encode + blocking write (SO_SNDTIMEO)
//!   reader: decode ─▶ Conn::handle_frame ─▶ events ─▶ Registry (peers) / View (counts)
//! ```
//!
//! Why blocking threads rather than an event loop: a full mesh has a few to a
//! few dozen peers, so two threads per peer are cheap; each peer's stalls stay
//! on its own writer thread (a peer that stops reading blocks nobody else);
//! and the code needs no runtime and no `unsafe`. See docs/CLUSTER.md.
//!
//! Lock order: `Cluster::reg` before any `Link::st`; `View` slot data before
//! view shards. A `Link::st` holder never takes `reg`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use sha2::{Digest, Sha256};

use super::conn::{AuthKey, Conn, ConnError, ConnParams, Event, PeerIdentity, Role, Topic, DEFAULT_ID_SOFT_CAP};
use super::log::{log, Level};
use super::view::{View, MAX_SLOTS};
use super::wire::{self, ByeCode, FrameDecoder, MAX_HANDSHAKE_FRAME_LEN, NONCE_LEN};
use crate::counter::Counter;
use crate::error::{Error, Result};

/// Coalesced outbox entries per link past which we drop them and send a
/// fresh snapshot instead (bounds per-peer memory whatever the peer does).
pub(crate) const OUTBOX_CAP: usize = 1 << 18;
/// Connections accepted but not yet authenticated, at most.
const MAX_HANDSHAKES: usize = 64;
/// How long a handshake may take.
const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// Dial timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// First and largest redial delay (before jitter).
const BACKOFF_MIN_MS: u64 = 50;
const BACKOFF_MAX_MS: u64 = 2_000;
/// A gossiped (non-seed) address that keeps failing this long is forgotten.
const FORGET_ADDR_AFTER_MS: u64 = 60_000;
/// A peer down this long (and past its grace) is forgotten.
const FORGET_PEER_AFTER_MS: u64 = 60_000;

/// Cluster settings, from [`crate::Config`].
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) node_name: String,
    pub(crate) cluster: String,
    pub(crate) secret: Vec<u8>,
    pub(crate) listen: Option<String>,
    /// Address to advertise instead of the bound one (NAT, proxies).
    pub(crate) advertise: Option<String>,
    pub(crate) seeds: Vec<String>,
    pub(crate) flush_interval_ms: u64,
    pub(crate) down_after_ms: u64,
    pub(crate) down_grace_ms: u64,
    /// Whether `node_name` was configured (then the node id derives from it,
    /// so a restarted node is recognised as a new incarnation of the same node).
    pub(crate) named: bool,
}

/// Fills `buf` from the OS's secure random source.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Io(std::io::Error::other(format!("no secure random source: {e}"))))
}

fn random_u64() -> Result<u64> {
    let mut b = [0u8; 8];
    random_bytes(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// The node id: derived from cluster and node name when the name is
/// configured (stable across restarts), random otherwise. Never 0.
fn node_id_for(s: &Settings) -> Result<u64> {
    let id = if s.named {
        let mut h = Sha256::new();
        h.update(b"headcount node id\0");
        h.update(s.cluster.as_bytes());
        h.update([0]);
        h.update(s.node_name.as_bytes());
        let d = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        u64::from_le_bytes(b)
    } else {
        random_u64()?
    };
    Ok(id.max(1))
}

/// Per-connection counters.
#[derive(Debug, Default)]
struct LinkStats {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    coalesced: AtomicU64,
    overflows: AtomicU64,
    snapshots_sent: AtomicU64,
    pending: AtomicUsize,
}

#[derive(Debug)]
struct LinkState {
    conn: Conn,
    /// Latest absolute count per topic not yet handed to `conn`.
    pending: HashMap<Topic, u64, foldhash::fast::RandomState>,
    need_snapshot: bool,
    peers: Option<Vec<String>>,
    /// Set when the writer must stop (after writing what `conn` queued).
    stop: bool,
}

/// One TCP connection to a peer. See the module docs.
#[derive(Debug)]
struct Link {
    id: u64,
    role: Role,
    remote: SocketAddr,
    /// The address dialed, for dialed links.
    dialed: Option<String>,
    stream: TcpStream,
    st: Mutex<LinkState>,
    cv: Condvar,
    stats: LinkStats,
    /// Peer node id, once registered (0 before).
    peer_id: AtomicU64,
    finished: AtomicBool,
}

impl Link {
    /// Queues a BYE and makes the writer stop after writing it.
    fn close(&self, code: ByeCode, message: &str, now_ms: u64) {
        let mut st = self.st.lock();
        st.conn.close(code, message, now_ms);
        st.stop = true;
        self.cv.notify_all();
    }

    /// Merges one flush's changes into the outbox (latest value per topic).
    /// Past `cap` entries the outbox is dropped for a fresh snapshot.
    fn enqueue(&self, changes: &[(Topic, u64)], cap: usize) {
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

    fn kill(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Connected and authenticated; its first snapshot has not arrived.
    Syncing,
    /// Connected and synced.
    Up,
    /// Connection lost at `since_ms`.
    Down,
    /// Said BYE SHUTDOWN.
    Left,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Syncing => "syncing",
            Status::Up => "up",
            Status::Down => "down",
            Status::Left => "left",
        }
    }
}

#[derive(Debug)]
struct Peer {
    name: String,
    incarnation: u64,
    /// Dialable listen address (empty if it does not listen).
    listen: String,
    slot: u16,
    link: Option<Arc<Link>>,
    /// The last link, for stats after it closed.
    last_link: Option<Arc<Link>>,
    status: Status,
    since_ms: u64,
    /// Counters of earlier links to this peer.
    bytes_in: u64,
    bytes_out: u64,
    frames_in: u64,
    frames_out: u64,
    coalesced: u64,
    connects: u64,
}

#[derive(Debug)]
struct Dial {
    node_id: Option<u64>,
    seed: bool,
    running: bool,
    is_self: bool,
}

#[derive(Debug, Default)]
struct Registry {
    peers: HashMap<u64, Peer>,
    addrs: HashMap<String, Dial>,
    links: HashMap<u64, Arc<Link>>,
    free_slots: Vec<u16>,
    next_slot: u16,
}

impl Registry {
    fn alloc_slot(&mut self) -> Option<u16> {
        if let Some(s) = self.free_slots.pop() {
            return Some(s);
        }
        if usize::from(self.next_slot) < MAX_SLOTS {
            self.next_slot += 1;
            return Some(self.next_slot - 1);
        }
        None
    }

    /// Listen addresses of peers we are connected to (for PEERS).
    fn gossip(&self) -> Vec<String> {
        self.peers.values().filter(|p| p.link.is_some() && !p.listen.is_empty()).map(|p| p.listen.clone()).collect()
    }

    fn known(&self, now_ms: u64, grace_ms: u64) -> u32 {
        self.peers
            .values()
            .filter(|p| match p.status {
                Status::Syncing | Status::Up => true,
                Status::Down => now_ms.saturating_sub(p.since_ms) < grace_ms,
                Status::Left => false,
            })
            .count() as u32
    }
}

#[derive(Debug, Default)]
struct Stats {
    auth_failures: AtomicU64,
    protocol_errors: AtomicU64,
    accepted: AtomicU64,
    dialed: AtomicU64,
    refused_busy: AtomicU64,
    handshakes: AtomicUsize,
}

/// The cluster side of a node.
#[derive(Debug)]
pub(crate) struct Cluster {
    name: String,
    params: ConnParams,
    counter: Counter,
    view: View,
    reg: Mutex<Registry>,
    closed: AtomicBool,
    epoch: Instant,
    listen_addr: Option<SocketAddr>,
    down_grace_ms: u64,
    wake_lock: Mutex<()>,
    wake: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_link: AtomicU64,
    stats: Stats,
    jitter: AtomicU64,
}

/// One peer's line in [`Cluster::peers_json`].
fn peer_json(node_id: u64, p: &Peer, now_ms: u64, view: &View) -> serde_json::Value {
    let (mut bi, mut bo, mut fi, mut fo, mut co) = (p.bytes_in, p.bytes_out, p.frames_in, p.frames_out, p.coalesced);
    let mut pending = 0;
    let mut address = p.listen.clone();
    if let Some(l) = &p.link {
        let s = &l.stats;
        bi += s.bytes_in.load(Ordering::Relaxed);
        bo += s.bytes_out.load(Ordering::Relaxed);
        fi += s.frames_in.load(Ordering::Relaxed);
        fo += s.frames_out.load(Ordering::Relaxed);
        co += s.coalesced.load(Ordering::Relaxed);
        pending = s.pending.load(Ordering::Relaxed);
        if address.is_empty() {
            address = l.remote.to_string();
        }
    }
    let (overflows, snapshots) = p.last_link.as_ref().map_or((0, 0), |l| {
        (l.stats.overflows.load(Ordering::Relaxed), l.stats.snapshots_sent.load(Ordering::Relaxed))
    });
    let last_rx = p.link.as_ref().or(p.last_link.as_ref()).map(|l| l.st.lock().conn.last_rx_ms());
    serde_json::json!({
        "name": p.name,
        "node_id": format!("{node_id:016x}"),
        "address": address,
        "state": p.status.name(),
        "counted": view.is_counted(p.slot),
        "incarnation": format!("{:016x}", p.incarnation),
        "last_frame_age_ms": last_rx.map(|t| now_ms.saturating_sub(t)),
        "state_age_ms": now_ms.saturating_sub(p.since_ms),
        "topics": view.topics_of(p.slot),
        "total": view.sum_of(p.slot),
        "bytes_in": bi,
        "bytes_out": bo,
        "frames_in": fi,
        "frames_out": fo,
        "outbox_pending": pending,
        "outbox_coalesces": co,
        "outbox_overflows": overflows,
        "snapshots_sent": snapshots,
        "connects": p.connects,
    })
}

impl Cluster {
    /// Binds the listener (if any), then starts the listener and dialer
    /// threads.
    pub(crate) fn start(s: Settings, counter: Counter) -> Result<Arc<Cluster>> {
        let node_id = node_id_for(&s)?;
        let incarnation = random_u64()?;
        let listener = match &s.listen {
            Some(addr) => Some(
                TcpListener::bind(addr.as_str())
                    .map_err(|e| Error::Io(std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))))?,
            ),
            None => None,
        };
        let listen_addr = match &listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let down_after_ms = s.down_after_ms.max(1);
        let params = ConnParams {
            cluster: s.cluster.clone(),
            node_name: s.node_name.clone(),
            node_id,
            incarnation,
            listen: match (&s.advertise, listen_addr) {
                (Some(a), _) => a.clone(),
                (None, Some(a)) => a.to_string(),
                (None, None) => String::new(),
            },
            key: AuthKey::new(&s.secret),
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS,
            heartbeat_ms: s.flush_interval_ms.min(down_after_ms / 4).max(1),
            down_after_ms,
            id_soft_cap: DEFAULT_ID_SOFT_CAP,
        };
        let cluster = Arc::new(Cluster {
            name: s.node_name.clone(),
            params,
            counter,
            view: View::new(),
            reg: Mutex::new(Registry::default()),
            closed: AtomicBool::new(false),
            epoch: Instant::now(),
            listen_addr,
            down_grace_ms: s.down_grace_ms,
            wake_lock: Mutex::new(()),
            wake: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            next_link: AtomicU64::new(1),
            stats: Stats::default(),
            jitter: AtomicU64::new(incarnation | 1),
        });
        log!(
            Level::Info,
            &cluster.name,
            "node id {node_id:016x} incarnation {incarnation:016x} listening on {:?}",
            cluster.listen_addr
        );
        if let Some(l) = listener {
            let c = cluster.clone();
            cluster.spawn("listen", move || c.accept_loop(l))?;
        }
        for seed in &s.seeds {
            cluster.add_addr(seed, true);
        }
        Ok(cluster)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn spawn(&self, what: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let h = std::thread::Builder::new().name(format!("hc-{what}-{}", self.name)).spawn(f)?;
        let mut t = self.threads.lock();
        t.retain(|h| !h.is_finished());
        t.push(h);
        Ok(())
    }

    /// Our listener's address.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.listen_addr
    }

    /// Starts dialing `addr` (and keeps redialing it when its connection drops).
    pub(crate) fn add_addr(self: &Arc<Self>, addr: &str, seed: bool) {
        if self.is_closed()
            || addr.is_empty()
            || addr == self.params.listen
            || Some(addr) == self.listen_addr.map(|a| a.to_string()).as_deref()
        {
            return;
        }
        {
            let mut reg = self.reg.lock();
            if reg.addrs.len() >= MAX_SLOTS && !reg.addrs.contains_key(addr) {
                return;
            }
            let d = reg.addrs.entry(addr.to_owned()).or_insert(Dial {
                node_id: None,
                seed,
                running: false,
                is_self: false,
            });
            d.seed |= seed;
            if d.running || d.is_self {
                return;
            }
            d.running = true;
        }
        let c = self.clone();
        let a = addr.to_owned();
        if self.spawn("dial", move || c.dial_loop(&a)).is_err() {
            if let Some(d) = self.reg.lock().addrs.get_mut(addr) {
                d.running = false;
            }
        }
    }

    fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = listener.accept();
            if self.is_closed() {
                return;
            }
            match accepted {
                Ok((stream, remote)) => {
                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    if self.stats.handshakes.load(Ordering::Acquire) >= MAX_HANDSHAKES {
                        self.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
                        log!(Level::Warn, &self.name, "refusing {remote}: too many pending handshakes");
                        continue;
                    }
                    let c = self.clone();
                    if let Err(e) = self.spawn("conn", move || {
                        c.run_link(stream, remote, Role::Acceptor, None);
                    }) {
                        log!(Level::Error, &self.name, "cannot start a connection thread: {e}");
                    }
                }
                Err(e) => {
                    log!(Level::Warn, &self.name, "accept failed: {e}");
                    self.sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Sleeps up to `d`, waking early when the node closes or a link drops.
    fn sleep(&self, d: Duration) {
        let mut g = self.wake_lock.lock();
        if !self.is_closed() {
            self.wake.wait_for(&mut g, d);
        }
    }

    fn wake_all(&self) {
        let _g = self.wake_lock.lock();
        self.wake.notify_all();
    }

    fn jitter(&self, ms: u64) -> u64 {
        // xorshift; only spreads redials, so no need for secure randomness.
        let mut x = self.jitter.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter.store(x, Ordering::Relaxed);
        ms / 2 + x % (ms + 1)
    }

    fn dial_loop(self: Arc<Self>, addr: &str) {
        let mut backoff = BACKOFF_MIN_MS;
        let mut failing_since: Option<u64> = None;
        while !self.is_closed() {
            // Idle while this address's node is connected (by either side).
            let (connected, seed) = {
                let reg = self.reg.lock();
                let Some(d) = reg.addrs.get(addr) else { return };
                if d.is_self {
                    return;
                }
                let connected = d.node_id.and_then(|id| reg.peers.get(&id)).is_some_and(|p| p.link.is_some());
                (connected, d.seed)
            };
            if connected {
                backoff = BACKOFF_MIN_MS;
                failing_since = None;
                self.sleep(Duration::from_millis(1000));
                continue;
            }
            let now = self.now_ms();
            if !seed && failing_since.is_some_and(|t| now.saturating_sub(t) > FORGET_ADDR_AFTER_MS) {
                log!(Level::Info, &self.name, "forgetting {addr}: unreachable for a minute");
                self.reg.lock().addrs.remove(addr);
                return;
            }
            let stream = addr.to_socket_addrs().map_err(|e| e.to_string()).and_then(|mut it| {
                let sa = it.next().ok_or_else(|| "resolves to nothing".to_owned())?;
                TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT).map(|s| (s, sa)).map_err(|e| e.to_string())
            });
            let authenticated = match stream {
                Ok((s, sa)) => {
                    self.stats.dialed.fetch_add(1, Ordering::Relaxed);
                    self.run_link(s, sa, Role::Dialer, Some(addr.to_owned()))
                }
                Err(e) => {
                    log!(Level::Debug, &self.name, "dial {addr}: {e}");
                    false
                }
            };
            if authenticated {
                backoff = BACKOFF_MIN_MS;
                failing_since = None;
            } else {
                failing_since.get_or_insert(now);
                backoff = (backoff * 2).min(BACKOFF_MAX_MS);
            }
            let d = self.jitter(backoff);
            self.sleep(Duration::from_millis(d));
        }
        if let Some(d) = self.reg.lock().addrs.get_mut(addr) {
            d.running = false;
        }
    }

    /// Runs one connection to its end on this thread (reading), with a
    /// writer thread beside it. Returns whether the peer authenticated.
    fn run_link(self: &Arc<Self>, stream: TcpStream, remote: SocketAddr, role: Role, dialed: Option<String>) -> bool {
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
        let link = Arc::new(Link {
            id: self.next_link.fetch_add(1, Ordering::Relaxed),
            role,
            remote,
            dialed,
            stream,
            st: Mutex::new(LinkState {
                conn: Conn::new(&self.params, role, nonce, now),
                pending: HashMap::default(),
                need_snapshot: false,
                peers: None,
                stop: false,
            }),
            cv: Condvar::new(),
            stats: LinkStats::default(),
            peer_id: AtomicU64::new(0),
            finished: AtomicBool::new(false),
        });
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
            while let Some(f) = st.conn.poll_transmit() {
                if let Err(e) = wire::encode_frame(&f, &mut out) {
                    // Our own frames always fit; should one not, fail the
                    // connection rather than send garbage.
                    log!(Level::Error, &self.name, "cannot encode {}: {e}", f.frame_type().name());
                    st.conn.close(ByeCode::PROTOCOL_ERROR, "internal encoding error", now);
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

    /// Registers an authenticated link (section 9.5 of PROTOCOL.md for
    /// duplicates). Returns the peer's view slot, or `None` if this link
    /// lost to another one and is closing.
    fn on_authenticated(self: &Arc<Self>, link: &Arc<Link>, id: &PeerIdentity) -> Option<u16> {
        let now = self.now_ms();
        let me = self.params.node_id;
        let listen = if id.listen.is_empty() { String::new() } else { dialable(&id.listen, link.remote) };
        let mut reg = self.reg.lock();
        if self.is_closed() {
            link.close(ByeCode::SHUTDOWN, "node closing", now);
            return None;
        }
        if let Some(a) = &link.dialed {
            if let Some(d) = reg.addrs.get_mut(a) {
                d.node_id = Some(id.node_id);
            }
        }
        if !listen.is_empty() {
            if let Some(d) = reg.addrs.get_mut(&listen) {
                d.node_id = Some(id.node_id);
            }
        }
        let slot = match reg.peers.get(&id.node_id).map(|p| p.slot) {
            None => {
                let Some(slot) = reg.alloc_slot() else {
                    drop(reg);
                    log!(Level::Warn, &self.name, "{}: too many peers; refusing {}", link.remote, id.node_name);
                    link.close(ByeCode::PROTOCOL_ERROR, "too many peers", now);
                    return None;
                };
                self.view.clear(slot);
                self.view.activate(slot);
                reg.peers.insert(
                    id.node_id,
                    Peer {
                        name: id.node_name.clone(),
                        incarnation: id.incarnation,
                        listen: listen.clone(),
                        slot,
                        link: None,
                        last_link: None,
                        status: Status::Syncing,
                        since_ms: now,
                        bytes_in: 0,
                        bytes_out: 0,
                        frames_in: 0,
                        frames_out: 0,
                        coalesced: 0,
                        connects: 0,
                    },
                );
                slot
            }
            Some(slot) => slot,
        };
        let p = reg.peers.get_mut(&id.node_id)?;
        if p.incarnation != id.incarnation {
            log!(
                Level::Info,
                &self.name,
                "{} restarted (incarnation {:016x} -> {:016x}); dropping its old counts",
                id.node_name,
                p.incarnation,
                id.incarnation
            );
            if let Some(old) = p.link.take() {
                old.close(ByeCode::DUPLICATE, "superseded by a new incarnation", now);
            }
            self.view.clear(slot);
            p.incarnation = id.incarnation;
            p.status = Status::Syncing;
        } else if let Some(old) = &p.link {
            let dialer_of = |l: &Link| if l.role == Role::Dialer { me } else { id.node_id };
            let keep_new = dialer_of(link) < dialer_of(old);
            if !keep_new {
                drop(reg);
                log!(Level::Debug, &self.name, "{}: duplicate connection to {}; closing it", link.remote, id.node_name);
                link.close(ByeCode::DUPLICATE, "duplicate connection", now);
                return None;
            }
            log!(Level::Debug, &self.name, "{}: replacing duplicate connection to {}", link.remote, id.node_name);
            old.close(ByeCode::DUPLICATE, "duplicate connection", now);
        }
        p.name = id.node_name.clone();
        if !listen.is_empty() {
            p.listen = listen.clone();
        }
        p.link = Some(link.clone());
        p.last_link = Some(link.clone());
        p.connects += 1;
        if p.status != Status::Up {
            p.status = Status::Syncing;
        }
        p.since_ms = now;
        self.view.set_owner(slot, link.id);
        link.peer_id.store(id.node_id, Ordering::Release);
        let gossip = reg.gossip();
        {
            let mut st = link.st.lock();
            st.need_snapshot = true;
            st.peers = Some(gossip.clone());
            link.cv.notify_all();
        }
        for (nid, other) in reg.peers.iter() {
            if *nid != id.node_id {
                if let Some(l) = &other.link {
                    let mut st = l.st.lock();
                    st.peers = Some(gossip.clone());
                    l.cv.notify_all();
                }
            }
        }
        self.view.set_known(reg.known(now, self.down_grace_ms));
        let dial_listen = !listen.is_empty() && !reg.addrs.contains_key(&listen);
        drop(reg);
        log!(Level::Info, &self.name, "{}: peer {} ({:016x}) authenticated", link.remote, id.node_name, id.node_id);
        if dial_listen {
            // Remember where it listens, so that we redial it if this
            // connection drops (whichever side opened it).
            self.add_addr(&listen, false);
            if let Some(d) = self.reg.lock().addrs.get_mut(&listen) {
                d.node_id = Some(id.node_id);
            }
        }
        Some(slot)
    }

    fn on_synced(&self, link: &Link, slot: u16) {
        let mut reg = self.reg.lock();
        let peer_id = link.peer_id.load(Ordering::Acquire);
        if let Some(p) = reg.peers.get_mut(&peer_id) {
            if p.link.as_ref().is_some_and(|l| l.id == link.id) {
                if p.status == Status::Syncing {
                    p.status = Status::Up;
                    p.since_ms = self.now_ms();
                }
                self.view.set_counted(slot, true);
            }
        }
    }

    fn on_left(&self, link: &Link) {
        let now = self.now_ms();
        let mut reg = self.reg.lock();
        let peer_id = link.peer_id.load(Ordering::Acquire);
        if let Some(p) = reg.peers.get_mut(&peer_id) {
            if p.link.as_ref().is_some_and(|l| l.id == link.id) {
                log!(Level::Info, &self.name, "peer {} left", p.name);
                p.status = Status::Left;
                p.since_ms = now;
                self.view.set_owner(p.slot, 0);
                self.view.clear(p.slot);
            }
        }
        // It said it is leaving: stop redialing the addresses we learned for
        // it (their dialer threads see the entry gone and end). Seeds and
        // add_peer addresses stay, since an operator asked for them.
        reg.addrs.retain(|_, d| d.seed || d.node_id != Some(peer_id));
        let known = reg.known(now, self.down_grace_ms);
        self.view.set_known(known);
    }

    fn on_link_closed(&self, link: &Link, reason: &str) {
        let now = self.now_ms();
        let mut reg = self.reg.lock();
        reg.links.remove(&link.id);
        let peer_id = link.peer_id.load(Ordering::Acquire);
        let mut changed = false;
        if let Some(p) = reg.peers.get_mut(&peer_id) {
            if p.link.as_ref().is_some_and(|l| l.id == link.id) {
                p.link = None;
                let s = &link.stats;
                p.bytes_in += s.bytes_in.load(Ordering::Relaxed);
                p.bytes_out += s.bytes_out.load(Ordering::Relaxed);
                p.frames_in += s.frames_in.load(Ordering::Relaxed);
                p.frames_out += s.frames_out.load(Ordering::Relaxed);
                p.coalesced += s.coalesced.load(Ordering::Relaxed);
                self.view.set_owner(p.slot, 0);
                if p.status != Status::Left {
                    log!(Level::Info, &self.name, "peer {} down: {reason}", p.name);
                    p.status = Status::Down;
                    p.since_ms = now;
                    if self.down_grace_ms == 0 {
                        self.view.clear(p.slot);
                    }
                }
                changed = true;
            }
        }
        if changed {
            let gossip = reg.gossip();
            for other in reg.peers.values() {
                if let Some(l) = &other.link {
                    let mut st = l.st.lock();
                    st.peers = Some(gossip.clone());
                    l.cv.notify_all();
                }
            }
        }
        let known = reg.known(now, self.down_grace_ms);
        self.view.set_known(known);
        drop(reg);
        self.wake_all();
    }

    /// Hands one flush's changes to every connected peer's outbox.
    pub(crate) fn distribute(&self, changes: &[(Topic, u64)]) {
        if changes.is_empty() {
            return;
        }
        let links: Vec<Arc<Link>> = self.reg.lock().peers.values().filter_map(|p| p.link.clone()).collect();
        for l in links {
            l.enqueue(changes, OUTBOX_CAP);
        }
    }

    /// Periodic upkeep (from the flusher): expires down peers past their
    /// grace, forgets long-gone peers.
    pub(crate) fn housekeeping(&self) {
        let now = self.now_ms();
        let mut reg = self.reg.lock();
        let mut forget = Vec::new();
        for (id, p) in reg.peers.iter() {
            if p.link.is_some() {
                continue;
            }
            let age = now.saturating_sub(p.since_ms);
            if p.status == Status::Down && age >= self.down_grace_ms && self.view.is_counted(p.slot) {
                self.view.clear(p.slot);
            }
            if age > FORGET_PEER_AFTER_MS.max(self.down_grace_ms) {
                forget.push(*id);
            }
        }
        for id in forget {
            if let Some(p) = reg.peers.remove(&id) {
                self.view.clear(p.slot);
                reg.free_slots.push(p.slot);
            }
        }
        let known = reg.known(now, self.down_grace_ms);
        self.view.set_known(known);
    }

    /// Remote part of a topic's count.
    pub(crate) fn remote_count(&self, topic: &[u8]) -> u64 {
        self.view.count_only(topic)
    }

    /// Remote part with coverage.
    pub(crate) fn remote_info(&self, topic: &[u8]) -> (u64, u32, u32, u64) {
        let rc = self.view.count(topic, self.now_ms());
        (rc.count, rc.reporting, self.view.known(), rc.oldest_age_ms)
    }

    /// Sum of all counted peers' counts.
    pub(crate) fn remote_total(&self) -> u64 {
        self.view.total()
    }

    /// Each counted peer's count of `topic`, by name.
    pub(crate) fn count_by_node(&self, topic: &[u8]) -> Vec<(String, u64)> {
        let reg = self.reg.lock();
        let mut v: Vec<(String, u64)> = reg
            .peers
            .values()
            .filter(|p| self.view.is_counted(p.slot))
            .map(|p| (p.name.clone(), self.view.count_of(p.slot, topic)))
            .collect();
        v.sort();
        v
    }

    /// Cluster part of `stats_json`.
    pub(crate) fn stats(&self) -> serde_json::Value {
        let now = self.now_ms();
        let reg = self.reg.lock();
        let mut peers: Vec<(&u64, &Peer)> = reg.peers.iter().collect();
        peers.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        let peers: Vec<serde_json::Value> =
            peers.into_iter().map(|(id, p)| peer_json(*id, p, now, &self.view)).collect();
        serde_json::json!({
            "node_id": format!("{:016x}", self.params.node_id),
            "incarnation": format!("{:016x}", self.params.incarnation),
            "cluster": self.params.cluster,
            "listen": self.listen_addr.map(|a| a.to_string()),
            "peers": peers,
            "peers_known": self.view.known(),
            "remote_topics": self.view.topics(),
            "remote_total": self.view.total(),
            "connections_open": reg.links.len(),
            "connections_accepted": self.stats.accepted.load(Ordering::Relaxed),
            "connections_dialed": self.stats.dialed.load(Ordering::Relaxed),
            "connections_refused_busy": self.stats.refused_busy.load(Ordering::Relaxed),
            "auth_failures": self.stats.auth_failures.load(Ordering::Relaxed),
            "protocol_errors": self.stats.protocol_errors.load(Ordering::Relaxed),
            "known_addresses": reg.addrs.len(),
        })
    }

    /// Graceful close: BYE to every peer, then stop every thread.
    pub(crate) fn close(&self) {
        self.shutdown(true);
    }

    /// Crash-like stop: every connection is cut without BYE (as the kernel
    /// does for a killed process), then every thread stops.
    pub(crate) fn abort(&self) {
        self.shutdown(false);
    }

    fn shutdown(&self, graceful: bool) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let now = self.now_ms();
        let links: Vec<Arc<Link>> = self.reg.lock().links.values().cloned().collect();
        if graceful {
            for l in &links {
                l.close(ByeCode::SHUTDOWN, "node closing", now);
            }
            // Give writers a moment to put their BYE on the wire.
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline && links.iter().any(|l| !l.finished.load(Ordering::Acquire)) {
                std::thread::sleep(Duration::from_millis(2));
            }
        } else {
            for l in &links {
                let mut st = l.st.lock();
                st.stop = true;
                l.cv.notify_all();
            }
        }
        for l in &links {
            l.kill();
        }
        self.wake_all();
        if let Some(mut a) = self.listen_addr {
            // Wake the blocking accept().
            if a.ip().is_unspecified() {
                a.set_ip(if a.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
            }
            let _ = TcpStream::connect_timeout(&a, Duration::from_millis(200));
        }
        loop {
            let threads: Vec<JoinHandle<()>> = std::mem::take(&mut *self.threads.lock());
            if threads.is_empty() {
                break;
            }
            for t in threads {
                let _ = t.join();
            }
        }
        // Links that raced with close.
        let rest: Vec<Arc<Link>> = self.reg.lock().links.values().cloned().collect();
        for l in rest {
            l.kill();
        }
    }
}

/// The address to dial for a peer's advertised `listen`: its own host, or
/// the connection's source IP when it advertised an unspecified host.
fn dialable(listen: &str, remote: SocketAddr) -> String {
    match listen.parse::<SocketAddr>() {
        Ok(mut a) if a.ip().is_unspecified() => {
            a.set_ip(remote.ip());
            a.to_string()
        }
        _ => listen.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        Link {
            id: 1,
            role: Role::Dialer,
            remote: l.local_addr().unwrap(),
            dialed: None,
            stream,
            st: Mutex::new(LinkState {
                conn: a,
                pending: HashMap::default(),
                need_snapshot: false,
                peers: None,
                stop: false,
            }),
            cv: Condvar::new(),
            stats: LinkStats::default(),
            peer_id: AtomicU64::new(2),
            finished: AtomicBool::new(false),
        }
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

    #[test]
    fn dialable_substitutes_unspecified_hosts() {
        let remote: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        assert_eq!(dialable("0.0.0.0:7000", remote), "10.1.2.3:7000");
        assert_eq!(dialable("127.0.0.1:7000", remote), "127.0.0.1:7000");
        assert_eq!(dialable("db.local:7000", remote), "db.local:7000");
    }

    #[test]
    fn node_ids_are_stable_for_a_name_and_random_without() {
        let s = |name: &str, named| Settings {
            node_name: name.into(),
            cluster: "c".into(),
            secret: b"s".to_vec(),
            listen: None,
            advertise: None,
            seeds: vec![],
            flush_interval_ms: 100,
            down_after_ms: 1000,
            down_grace_ms: 0,
            named,
        };
        assert_eq!(node_id_for(&s("a", true)).unwrap(), node_id_for(&s("a", true)).unwrap());
        assert_ne!(node_id_for(&s("a", true)).unwrap(), node_id_for(&s("b", true)).unwrap());
        assert_ne!(node_id_for(&s("a", false)).unwrap(), node_id_for(&s("a", false)).unwrap());
    }
}
