//! The networked half of a node: [`Cluster`], the facade that the flusher and
//! [`crate::Node`] call, over the listener, dialers, links, registry and
//! remote view.
//!
//! ```text
//!             flusher thread (flush.rs): drain once ──▶ Cluster::distribute
//!                                                        │ one coalescing outbox per link
//!   Listener ──accept──▶ Reader ◀──────────────┐          ▼
//!   Dialer (per address) ──connect──▶ Reader    ├── Link { Ranked<{Conn, outbox}>, condvar }
//!                          │ spawns/joins       │          │
//!                          ▼                    │          ▼
//!                        Writer ────────────────┘   encode + blocking write (SO_SNDTIMEO)
//!   Reader: decode ─▶ Conn::handle_frame ─▶ events ─▶ Shared: Registry (peers) / View (counts)
//! ```
//!
//! | module        | what |
//! |---------------|------|
//! | `runtime`     | this facade: start, `distribute`, reads, stats, shutdown |
//! | [`super::shared`]   | [`Shared`]: what every cluster thread shares, behind methods |
//! | [`super::dial`]     | [`Listener`], one `Dialer` per address (backoff, jitter); runs each connection |
//! | [`super::reader`]   | `Reader`: a connection's reader, which runs it: frames -> `Conn` -> registry / view |
//! | [`super::writer`]   | `Writer`: a connection's writer thread: outbox / snapshot / gossip -> frames -> socket |
//! | [`super::link`]     | one connection's shared state: socket, `Conn`, outbox, traffic counters |
//! | [`super::registry`] | the membership rules: peers, addresses, view slots, the duplicate rule |
//! | [`super::lock`]     | ranked locks: the lock order, checked in debug builds |
//! | [`super::identity`] | node id, incarnation, secure randomness |
//! | [`super::xorshift`] | the non-secure generator behind redial jitter |
//! | [`super::view`]     | per peer, per topic, the last reported count (sans-IO) |
//!
//! Why blocking threads rather than an event loop: a full mesh has a few to a
//! few dozen peers, so two threads per peer are cheap; each peer's stalls stay
//! on its own writer thread (a peer that stops reading blocks nobody else);
//! and the code needs no runtime and no `unsafe`. See docs/CLUSTER.md.
//!
//! Lock order (`lock.rs`, checked on every acquisition in debug builds): the
//! registry before any link, one link at a time, a link holder never takes
//! the registry; the view is a leaf.

use crate::logging::{log, Level};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::conn::{AuthKey, ConnParams, Topic, DEFAULT_ID_SOFT_CAP};
use super::dial::{add_addr, Listener};
use super::identity::{node_id_for, random_u64};
use super::link::OUTBOX_CAP;
use super::shared::{millis, Shared};
use super::wire::ByeCode;
use crate::config::{Secret, Settings};
use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::stats::{ClusterStats, PeerStats};
use crate::sync::Arc;
use crate::watch::Feed;

/// The cluster side of a node: a handle on the [`Shared`] state of its
/// threads.
#[derive(Debug)]
pub(crate) struct Cluster {
    shared: Arc<Shared>,
}

impl Cluster {
    pub(crate) fn start(
        settings: Arc<Settings>,
        name: &str,
        secret: &Secret,
        counter: Counter,
        feed: Feed,
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
            handshake_timeout_ms: millis(s.handshake_timeout).max(1),
            heartbeat_ms: millis(s.flush_interval).min(down_after_ms / 4).max(1),
            id_soft_cap: DEFAULT_ID_SOFT_CAP,
        };
        let seeds = s.seeds.clone();
        let shared = Arc::new(Shared::new(name, settings, params, counter, feed, listen_addr));
        log!(
            Level::Info,
            shared.log(),
            "node id {node_id:016x} incarnation {incarnation:016x} {}",
            listen_addr.map_or_else(|| "not listening".to_owned(), |a| format!("listening on {a}"))
        );
        if let Some(l) = listener {
            Listener::spawn(&shared, l)?;
        }
        for seed in &seeds {
            add_addr(&shared, seed, true);
        }
        Ok(Arc::new(Cluster { shared }))
    }

    /// Our listener's address.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.listen_addr()
    }

    /// Starts dialing `addr` (an operator's `add_peer`: kept like a seed).
    pub(crate) fn add_addr(&self, addr: &str, seed: bool) {
        add_addr(&self.shared, addr, seed);
    }

    /// Hands one flush's changes to every connected peer's outbox.
    pub(crate) fn distribute(&self, changes: &[(Topic, u64)]) {
        if changes.is_empty() {
            return;
        }
        for l in self.shared.peer_links() {
            l.enqueue(changes, OUTBOX_CAP);
        }
    }

    /// Periodic upkeep (from the flusher): expires down peers past their
    /// grace, forgets long-gone peers.
    pub(crate) fn housekeeping(&self) {
        self.shared.expire_peers();
    }

    /// Remote part of a topic's count.
    pub(crate) fn remote_count(&self, topic: &[u8]) -> u64 {
        self.shared.view().count_only(topic)
    }

    /// Remote part with coverage.
    pub(crate) fn remote_info(&self, topic: &[u8]) -> (u64, u32, u32, u64) {
        let view = self.shared.view();
        let rc = view.count(topic, self.shared.now_ms());
        (rc.count, rc.reporting, view.known(), rc.oldest_age_ms)
    }

    /// Calls `f(topic, remote count)` for every topic with a non-zero
    /// remote count.
    pub(crate) fn for_each_remote(&self, f: impl FnMut(&[u8], u64)) {
        self.shared.view().for_each_topic(f);
    }

    /// Sum of all counted peers' counts.
    pub(crate) fn remote_total(&self) -> u64 {
        self.shared.view().total()
    }

    /// Each counted peer's count of `topic`, by name.
    pub(crate) fn count_by_node(&self, topic: &[u8]) -> Vec<(String, u64)> {
        self.shared.count_by_node(topic)
    }

    /// The cluster part of [`crate::Node::stats`]: node-wide state, and
    /// every peer by name.
    pub(crate) fn stats(&self) -> (ClusterStats, Vec<PeerStats>) {
        self.shared.stats()
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
        let shared = &self.shared;
        if !shared.set_closed(graceful) {
            return;
        }
        let now = shared.now_ms();
        let links = shared.links();
        if graceful {
            for l in &links {
                l.close(ByeCode::SHUTDOWN, "node closing", now);
            }
            // Give writers a moment to put their BYE on the wire.
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline && links.iter().any(|l| !l.is_finished()) {
                std::thread::sleep(Duration::from_millis(2));
            }
        } else {
            for l in &links {
                l.stop();
            }
        }
        for l in &links {
            l.kill();
        }
        shared.wake_all();
        if let Some(mut a) = shared.listen_addr() {
            // Wake the blocking accept().
            if a.ip().is_unspecified() {
                a.set_ip(if a.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
            }
            let _ = TcpStream::connect_timeout(&a, Duration::from_millis(200));
        }
        loop {
            let threads = shared.take_threads();
            if threads.is_empty() {
                break;
            }
            for t in threads {
                let _ = t.join();
            }
        }
        // Links that raced with close.
        for l in shared.links() {
            l.kill();
        }
    }
}
