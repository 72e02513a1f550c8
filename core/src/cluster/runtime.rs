//! The networked half of a node: [`Cluster`], the facade that the flusher and
//! [`crate::Node`] call, over the listener, dialers, links, registry and
//! remote view.
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
//! | module        | what |
//! |---------------|------|
//! | `runtime`     | this facade: start, `distribute`, reads, stats, shutdown |
//! | [`super::dial`]     | listener, one dialer per address, backoff and jitter |
//! | [`super::link`]     | one connection's shared state: outbox, traffic counters |
//! | [`super::reader`]   | a connection's reader thread: frames -> `Conn` -> registry / view |
//! | [`super::writer`]   | a connection's writer thread: outbox / snapshot / gossip -> frames -> socket |
//! | [`super::registry`] | peers, addresses, view slots, the duplicate rule, per-peer stats |
//! | [`super::identity`] | node id, incarnation, secure randomness |
//! | [`super::xorshift`] | the non-secure generator behind redial jitter |
//! | [`super::view`]     | per peer, per topic, the last reported count (sans-IO) |
//!
//! Why blocking threads rather than an event loop: a full mesh has a few to a
//! few dozen peers, so two threads per peer are cheap; each peer's stalls stay
//! on its own writer thread (a peer that stops reading blocks nobody else);
//! and the code needs no runtime and no `unsafe`. See docs/CLUSTER.md.
//!
//! Lock order: `Cluster::reg` before any `Link::st`; `View` slot data before
//! view shards. A `Link::st` holder never takes `reg`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::conn::{AuthKey, ConnParams, Topic, DEFAULT_ID_SOFT_CAP};
use super::identity::{node_id_for, random_u64};
use super::link::{Link, OUTBOX_CAP};
use super::log::{log, Level};
use super::registry::{peer_stats, Peer, Registry};
use super::view::View;
use super::wire::ByeCode;
use super::xorshift::Rng;
use crate::config::{Secret, Settings};
use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::stats::{ClusterStats, PeerStats};
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};

/// How long a handshake may take.
const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

/// Node-wide connection counters, for [`Cluster::stats`].
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) auth_failures: AtomicU64,
    pub(super) protocol_errors: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) dialed: AtomicU64,
    pub(super) refused_busy: AtomicU64,
    pub(super) handshakes: AtomicUsize,
}

/// The cluster side of a node.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(super) name: String,
    /// The node's settings (the one value the node, this runtime and every
    /// connection read).
    pub(super) settings: Arc<Settings>,
    pub(super) params: ConnParams,
    pub(super) counter: Counter,
    pub(super) view: View,
    pub(super) reg: Mutex<Registry>,
    pub(super) closed: AtomicBool,
    pub(super) epoch: Instant,
    pub(super) listen_addr: Option<SocketAddr>,
    pub(super) wake_lock: Mutex<()>,
    pub(super) wake: Condvar,
    pub(super) threads: Mutex<Vec<JoinHandle<()>>>,
    pub(super) next_link: AtomicU64,
    pub(super) stats: Stats,
    /// Redial jitter (dial.rs), seeded from the incarnation.
    pub(super) jitter: Mutex<Rng>,
}

impl Cluster {
    /// Binds the listener (if any), then starts the listener and dialer
    /// threads. `name` is the node's name (configured or generated); `secret`
    /// is the configured one.
    pub(crate) fn start(
        settings: Arc<Settings>,
        name: &str,
        secret: &Secret,
        counter: Counter,
    ) -> Result<Arc<Cluster>> {
        let s = &*settings;
        let node_id = node_id_for(s)?;
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
        let down_after_ms = millis(s.down_after).max(1);
        let params = ConnParams {
            settings: settings.clone(),
            node_name: name.to_owned(),
            node_id,
            incarnation,
            listen: match (&s.advertise, listen_addr) {
                (Some(a), _) => a.clone(),
                (None, Some(a)) => a.to_string(),
                (None, None) => String::new(),
            },
            key: AuthKey::new(secret.as_bytes()),
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS,
            heartbeat_ms: millis(s.flush_interval).min(down_after_ms / 4).max(1),
            id_soft_cap: DEFAULT_ID_SOFT_CAP,
        };
        let seeds = s.seeds.clone();
        let cluster = Arc::new(Cluster {
            name: name.to_owned(),
            settings,
            params,
            counter,
            view: View::new(),
            reg: Mutex::new(Registry::default()),
            closed: AtomicBool::new(false),
            epoch: Instant::now(),
            listen_addr,
            wake_lock: Mutex::new(()),
            wake: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            next_link: AtomicU64::new(1),
            stats: Stats::default(),
            jitter: Mutex::new(Rng(incarnation | 1)),
        });
        log!(
            Level::Info,
            &cluster.name,
            "node id {node_id:016x} incarnation {incarnation:016x} {}",
            cluster.listen_addr.map_or_else(|| "not listening".to_owned(), |a| format!("listening on {a}"))
        );
        if let Some(l) = listener {
            let c = cluster.clone();
            cluster.spawn("listen", move || c.accept_loop(l))?;
        }
        for seed in &seeds {
            cluster.add_addr(seed, true);
        }
        Ok(cluster)
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// How long a down peer's counts are still summed (`down_grace_ms`).
    pub(super) fn down_grace_ms(&self) -> u64 {
        millis(self.settings.down_grace)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(super) fn spawn(&self, what: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
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

    /// Sleeps up to `d`, waking early when the node closes or a link drops.
    pub(super) fn sleep(&self, d: Duration) {
        let mut g = self.wake_lock.lock();
        if !self.is_closed() {
            self.wake.wait_for(&mut g, d);
        }
    }

    pub(super) fn wake_all(&self) {
        let _g = self.wake_lock.lock();
        self.wake.notify_all();
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

    /// The cluster part of [`crate::Node::stats`]: node-wide state, and
    /// every peer by name.
    pub(crate) fn stats(&self) -> (ClusterStats, Vec<PeerStats>) {
        let now = self.now_ms();
        let reg = self.reg.lock();
        let mut peers: Vec<(&u64, &Peer)> = reg.peers.iter().collect();
        peers.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        let peers = peers.into_iter().map(|(id, p)| peer_stats(*id, p, now, &self.view)).collect();
        let stats = ClusterStats {
            node_id: self.params.node_id,
            incarnation: self.params.incarnation,
            cluster: self.settings.cluster.clone(),
            listen: self.listen_addr,
            peers_known: self.view.known(),
            remote_topics: self.view.topics(),
            remote_total: self.view.total(),
            connections_open: reg.links.len(),
            connections_accepted: self.stats.accepted.load(Ordering::Relaxed),
            connections_dialed: self.stats.dialed.load(Ordering::Relaxed),
            connections_refused_busy: self.stats.refused_busy.load(Ordering::Relaxed),
            auth_failures: self.stats.auth_failures.load(Ordering::Relaxed),
            protocol_errors: self.stats.protocol_errors.load(Ordering::Relaxed),
            known_addresses: reg.addrs.len(),
        };
        (stats, peers)
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

/// A configured duration in whole milliseconds (what the protocol counts in).
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
