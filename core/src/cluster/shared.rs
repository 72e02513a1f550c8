//! [`Shared`]: what every thread of the networked node shares (the
//! listener, the dialers, each connection's reader and writer, the flusher
//! through `Cluster`), behind methods.
//!
//! It holds the node's identity and settings, the local counter (for
//! snapshots), the remote [`View`], the [`Registry`] behind the rank-1 lock
//! of `lock.rs`, the pre-authentication gate (`gate.rs`), the lifecycle
//! (running, closing or aborting; wake-ups, the thread list) and the
//! node-wide connection counters. Every registry method below takes the
//! lock, applies one rule of `registry.rs`, releases it, and only then acts
//! on what the rule returned (closing a link, logging), so no caller can
//! hold the registry while doing anything else.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::addr::{canonical, listener_reaches};
use super::conn::{ConnError, ConnParams, PeerIdentity};
use super::gate::Gate;
use super::link::Link;
use super::lock::{Ranked, RankedCondvar, LEAF, REGISTRY};
use super::registry::{Admission, Claim, Registry};
use super::view::View;
use super::wire::ByeCode;
use super::xorshift::Rng;
use crate::config::Settings;
use crate::counter::Counter;
use crate::error::Result;
use crate::logging::{log, Level, NodeLog};
use crate::stats::{ClusterStats, PeerStats};
use crate::sync::{Arc, AtomicU32, AtomicU64, Ordering};
use crate::watch::Feed;

/// Node-wide connection counters.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) auth_failures: AtomicU64,
    pub(super) protocol_errors: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) dialed: AtomicU64,
    /// Closed at accept: the gate's total was reached.
    pub(super) refused_busy: AtomicU64,
    /// Peers refused for passing a per-peer limit (`ConnError::PeerTooLarge`).
    pub(super) peers_too_large: AtomicU64,
    /// Closed at accept: the gate's share of their source was reached.
    pub(super) refused_source: AtomicU64,
    /// Handshakes (accepted or dialed) not done in `handshake_timeout_ms`.
    pub(super) handshakes_timed_out: AtomicU64,
    /// Addresses learned and not kept (malformed, or the table full).
    pub(super) addresses_dropped: AtomicU64,
}

/// [`Shared`]'s lifecycle: running, then closing (gracefully) or aborting.
const RUNNING: u32 = 0;
const CLOSING: u32 = 1;
const ABORTING: u32 = 2;

/// See the module docs.
#[derive(Debug)]
pub(super) struct Shared {
    log: NodeLog,
    settings: Arc<Settings>,
    params: ConnParams,
    counter: Counter,
    view: View,
    reg: Ranked<Registry, REGISTRY>,
    /// [`RUNNING`], [`CLOSING`] or [`ABORTING`].
    lifecycle: AtomicU32,
    epoch: Instant,
    listen_addr: Option<SocketAddr>,
    wake_lock: Ranked<(), LEAF>,
    wake: RankedCondvar,
    threads: Ranked<Vec<JoinHandle<()>>, LEAF>,
    next_link: AtomicU64,
    counters: Counters,
    /// Accepted connections in their handshake (the listener's limits).
    gate: Arc<Gate>,
    /// Canonical spellings of where we listen and what we advertise.
    own_addrs: Vec<String>,
    /// Redial jitter (dial.rs), seeded from the incarnation.
    jitter: Ranked<Rng, LEAF>,
}

impl Shared {
    /// The shared state of a node whose connections speak with `params`.
    pub(super) fn new(
        name: &str,
        settings: Arc<Settings>,
        params: ConnParams,
        counter: Counter,
        feed: Feed,
        listen_addr: Option<SocketAddr>,
    ) -> Shared {
        let down_grace_ms = millis(settings.down_grace);
        let log = NodeLog::new(name, settings.log_format);
        let own_addrs = own_addrs(&params.listen, listen_addr);
        Shared {
            reg: Ranked::new(Registry::new(params.node_id, down_grace_ms, log.clone())),
            log,
            jitter: Ranked::new(Rng(params.incarnation | 1)),
            settings,
            params,
            counter,
            view: View::with_feed(Some(feed)),
            lifecycle: AtomicU32::new(RUNNING),
            epoch: Instant::now(),
            listen_addr,
            wake_lock: Ranked::new(()),
            wake: RankedCondvar::default(),
            threads: Ranked::new(Vec::new()),
            next_link: AtomicU64::new(1),
            counters: Counters::default(),
            gate: Arc::default(),
            own_addrs,
        }
    }

    // ---- identity and settings ------------------------------------------

    /// The node's name (for logs and thread names).
    pub(super) fn name(&self) -> &str {
        self.log.node()
    }

    /// Where the node's log lines go (`log!(level, shared.log(), ...)`).
    pub(super) fn log(&self) -> &NodeLog {
        &self.log
    }

    pub(super) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What every connection is created with.
    pub(super) fn params(&self) -> &ConnParams {
        &self.params
    }

    /// The listener's bound address.
    pub(super) fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen_addr
    }

    /// The local counter (writers read snapshots from it).
    pub(super) fn counter(&self) -> &Counter {
        &self.counter
    }

    /// The remote view (a leaf: callable with any lock held).
    pub(super) fn view(&self) -> &View {
        &self.view
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The pre-authentication gate of accepted connections.
    pub(super) fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// Milliseconds since the node started (the clock of every `Conn`).
    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A fresh link id.
    pub(super) fn next_link_id(&self) -> u64 {
        self.next_link.fetch_add(1, Ordering::Relaxed)
    }

    // ---- lifecycle ------------------------------------------------------

    pub(super) fn is_closed(&self) -> bool {
        self.lifecycle.load(Ordering::Acquire) != RUNNING
    }

    /// Marks the node closed, `graceful`ly (`close`: BYE SHUTDOWN to every
    /// peer) or not (`abort`: no BYE, as a killed process); `false` if it
    /// already was.
    pub(super) fn set_closed(&self, graceful: bool) -> bool {
        let to = if graceful { CLOSING } else { ABORTING };
        self.lifecycle.compare_exchange(RUNNING, to, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Runs `f` on a new thread named after `what` and the node, joined at
    /// shutdown.
    pub(super) fn spawn(&self, what: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let h = std::thread::Builder::new().name(format!("hc-{what}-{}", self.name())).spawn(f)?;
        let mut t = self.threads.lock();
        t.retain(|h| !h.is_finished());
        t.push(h);
        Ok(())
    }

    /// Every thread started by [`Shared::spawn`] so far (the list empties).
    pub(super) fn take_threads(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.threads.lock())
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

    /// `ms` times a factor from 0.5 to 1.5. Only spreads redials, so no
    /// need for secure randomness.
    pub(super) fn jitter(&self, ms: u64) -> u64 {
        ms / 2 + self.jitter.lock().next() % (ms + 1)
    }

    // ---- the registry's rules, each under the registry lock ------------

    /// Records a new link; `false` if the node is closing (checked under
    /// the registry lock, so shutdown sees every link that runs).
    pub(super) fn register_link(&self, link: &Arc<Link>) -> bool {
        let mut reg = self.reg.lock();
        reg.register(link, self.is_closed())
    }

    /// Registers an authenticated link ([`Registry::admit`]). Returns the
    /// peer's view slot and a listen address to dial, or `None` if the link
    /// lost (to another link, a full registry or shutdown) and is closing.
    pub(super) fn admit(&self, link: &Arc<Link>, id: &PeerIdentity) -> Option<(u16, Option<String>)> {
        let now = self.now_ms();
        let admission = {
            let mut reg = self.reg.lock();
            let closing = self.is_closed();
            let a = reg.admit(&self.view, now, closing, link, id);
            if a == Admission::Closing {
                // Under the lock, as shutdown collects the links to close.
                // An abort sends no BYE: the peer learns of it when the
                // socket closes, as for a killed process.
                if self.lifecycle.load(Ordering::Acquire) == ABORTING {
                    link.stop();
                } else {
                    link.close(ByeCode::SHUTDOWN, "node closing", now);
                }
            }
            a
        };
        match admission {
            Admission::Admitted { slot, dial } => {
                log!(
                    Level::Info,
                    &self.log,
                    "{}: peer {} ({:016x}) authenticated",
                    link.remote,
                    id.node_name,
                    id.node_id
                );
                Some((slot, dial))
            }
            Admission::Closing => None,
            Admission::TooManyPeers => {
                log!(Level::Warn, &self.log, "{}: too many peers; refusing {}", link.remote, id.node_name);
                link.close(ByeCode::PROTOCOL_ERROR, "too many peers", now);
                None
            }
            Admission::Duplicate => {
                log!(Level::Debug, &self.log, "{}: duplicate connection to {}; closing it", link.remote, id.node_name);
                link.close(ByeCode::DUPLICATE, "duplicate connection", now);
                None
            }
        }
    }

    /// `link`'s first complete snapshot arrived (in `slot`).
    pub(super) fn synced(&self, link: &Link, slot: u16) {
        let mut reg = self.reg.lock();
        reg.synced(&self.view, self.now_ms(), link, slot);
    }

    /// `link`'s peer said BYE SHUTDOWN.
    pub(super) fn left(&self, link: &Link) {
        let now = self.now_ms();
        self.reg.lock().left(&self.view, now, link);
    }

    /// `link` ended; wakes the dialers (one may redial its peer).
    pub(super) fn link_closed(&self, link: &Link, reason: &str) {
        let now = self.now_ms();
        self.reg.lock().closed(&self.view, now, link, reason);
        self.wake_all();
    }

    /// Periodic upkeep (from the flusher, through `Cluster`).
    pub(super) fn expire_peers(&self) {
        let now = self.now_ms();
        self.reg.lock().expire(&self.view, now);
    }

    /// Counts and logs a connection error; marks our own address on
    /// SELF_CONNECTION so that its dialer stops; drops the counts of a peer
    /// that passed a per-peer limit.
    pub(super) fn note_error(&self, link: &Link, e: &ConnError) {
        match e {
            ConnError::AuthFailed => {
                self.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
                log!(Level::Warn, &self.log, "{}: authentication failed (wrong secret?); dropped", link.remote);
            }
            ConnError::RejectedByPeer { code, .. } if *code == ByeCode::AUTH_FAILED => {
                self.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
                log!(Level::Warn, &self.log, "{}: {e}", link.remote);
            }
            ConnError::SelfConnection => {
                if let Some(a) = &link.dialed {
                    self.mark_self(a, link.remote);
                }
            }
            ConnError::PeerTooLarge { .. } => {
                self.counters.peers_too_large.fetch_add(1, Ordering::Relaxed);
                self.reg.lock().too_large(&self.view, link);
                log!(Level::Warn, &self.log, "{}: refusing the peer, its counts dropped: {e}", link.remote);
            }
            ConnError::HandshakeTimeout => {
                self.counters.handshakes_timed_out.fetch_add(1, Ordering::Relaxed);
                log!(Level::Debug, &self.log, "{}: {e}", link.remote);
            }
            ConnError::PeerSilent(_) => {
                log!(Level::Info, &self.log, "{}: {e}", link.remote);
            }
            _ => {
                self.counters.protocol_errors.fetch_add(1, Ordering::Relaxed);
                log!(Level::Warn, &self.log, "{}: closing: {e}", link.remote);
            }
        }
    }

    /// Every open link.
    pub(super) fn links(&self) -> Vec<Arc<Link>> {
        self.reg.lock().links()
    }

    /// The current link of every connected peer.
    pub(super) fn peer_links(&self) -> Vec<Arc<Link>> {
        self.reg.lock().peer_links()
    }

    // ---- the dialers' bookkeeping (dial.rs) ----------------------------

    /// See [`Registry::claim_dial`].
    pub(super) fn claim_dial(&self, addr: &str, seed: bool) -> Claim {
        self.reg.lock().claim_dial(addr, seed)
    }

    /// Whether `addr` (canonical) is known to be this node without a dial:
    /// the address we advertise, or a numeric address that
    /// [`Shared::reaches_self`].
    pub(super) fn is_own_addr(&self, addr: &str) -> bool {
        self.own_addrs.iter().any(|a| a == addr) || addr.parse().is_ok_and(|sa| self.reaches_self(sa))
    }

    /// Whether dialing `target` would reach this node: our listener
    /// ([`listener_reaches`]), or a target that reached us before.
    pub(super) fn reaches_self(&self, target: SocketAddr) -> bool {
        self.listen_addr.is_some_and(|l| listener_reaches(l, target)) || self.reg.lock().is_self_target(target)
    }

    /// `addr`, resolved to `target`, reached this node itself (by node id,
    /// or [`Shared::reaches_self`]): it is never dialed again.
    pub(super) fn mark_self(&self, addr: &str, target: SocketAddr) {
        log!(Level::Info, &self.log, "{addr} ({target}) is this node; not dialing it");
        self.reg.lock().mark_self(addr, target);
    }

    /// Counts an address learned and not kept (`why`); logged at the 1st,
    /// 2nd, 4th, 8th... so that a flood of gossip cannot flood the log.
    pub(super) fn drop_addr(&self, addr: &str, why: &str) {
        let n = self.counters.addresses_dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            log!(Level::Warn, &self.log, "dropping address {addr:?}: {why} ({n} dropped so far)");
        }
    }

    /// See [`Registry::dial_status`].
    pub(super) fn dial_status(&self, addr: &str) -> Option<(bool, bool)> {
        self.reg.lock().dial_status(addr)
    }

    /// See [`Registry::release_dial`].
    pub(super) fn release_dial(&self, addr: &str) {
        self.reg.lock().release_dial(addr);
    }

    /// See [`Registry::forget_addr`].
    pub(super) fn forget_addr(&self, addr: &str) {
        self.reg.lock().forget_addr(addr);
    }

    /// See [`Registry::set_dial_node`].
    pub(super) fn set_dial_node(&self, addr: &str, node_id: u64) {
        self.reg.lock().set_dial_node(addr, node_id);
    }

    // ---- reads ----------------------------------------------------------

    /// Each counted peer's count of `topic`, by name.
    pub(super) fn count_by_node(&self, topic: &[u8]) -> Vec<(String, u64)> {
        self.reg.lock().count_by_node(&self.view, topic)
    }

    /// Node-wide cluster state, and every peer by name.
    pub(super) fn stats(&self) -> (ClusterStats, Vec<PeerStats>) {
        let now = self.now_ms();
        let reg = self.reg.lock();
        let peers = reg.peer_stats(&self.view, now);
        let c = &self.counters;
        let stats = ClusterStats {
            node_id: self.params.node_id,
            incarnation: self.params.incarnation,
            cluster: self.settings.cluster.clone(),
            listen: self.listen_addr,
            peers_known: self.view.known(),
            remote_topics: self.view.topics(),
            remote_total: self.view.total(),
            connections_open: reg.open_links(),
            connections_accepted: c.accepted.load(Ordering::Relaxed),
            connections_dialed: c.dialed.load(Ordering::Relaxed),
            connections_refused_busy: c.refused_busy.load(Ordering::Relaxed),
            connections_refused_source: c.refused_source.load(Ordering::Relaxed),
            handshakes_pending: self.gate.pending(),
            handshakes_timed_out: c.handshakes_timed_out.load(Ordering::Relaxed),
            auth_failures: c.auth_failures.load(Ordering::Relaxed),
            protocol_errors: c.protocol_errors.load(Ordering::Relaxed),
            peers_too_large: c.peers_too_large.load(Ordering::Relaxed),
            known_addresses: reg.known_addresses(),
            addresses_dropped: c.addresses_dropped.load(Ordering::Relaxed),
        };
        (stats, peers)
    }
}

/// The canonical spellings of `advertised` and of `listen_addr`.
fn own_addrs(advertised: &str, listen_addr: Option<SocketAddr>) -> Vec<String> {
    let bound = listen_addr.map(|a| a.to_string());
    [Some(advertised), bound.as_deref()].into_iter().flatten().filter_map(canonical).collect()
}

/// A configured duration in whole milliseconds (what the protocol counts in).
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::super::conn::{tests::params, Conn, Role};
    use super::super::wire::Frame;
    use super::*;

    /// A node's shared state, and a link (over a loopback socket) that has
    /// just authenticated a peer.
    fn node_and_link() -> (Shared, Arc<Link>, PeerIdentity) {
        let p = params("me", 1, b"s");
        let counter = Counter::new();
        let feed = Feed::new(counter.clone());
        let shared = Shared::new("me", p.settings.clone(), p.clone(), counter, feed, None);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (stream, remote) = l.accept().unwrap();
        let conn = Conn::new(&p, Role::Acceptor, [3; 32], 0);
        let link = Arc::new(Link::new(1, Role::Acceptor, remote, None, stream, conn));
        let id = PeerIdentity {
            node_id: 2,
            incarnation: 1,
            node_name: "peer".into(),
            listen: String::new(),
            role: Role::Dialer,
        };
        (shared, link, id)
    }

    /// The BYE codes queued on `link`.
    fn byes(link: &Link) -> Vec<ByeCode> {
        let mut st = link.lock();
        std::iter::from_fn(|| st.conn.poll_transmit())
            .filter_map(|f| if let Frame::Bye { code, .. } = f { Some(code) } else { None })
            .collect()
    }

    #[test]
    fn a_link_authenticating_during_close_gets_bye_shutdown_and_during_abort_no_bye() {
        let (shared, link, id) = node_and_link();
        assert!(shared.set_closed(true));
        assert!(!shared.set_closed(false), "closed once");
        assert_eq!(shared.admit(&link, &id), None);
        assert_eq!(byes(&link), [ByeCode::SHUTDOWN]);

        let (shared, link, id) = node_and_link();
        assert!(shared.set_closed(false));
        assert_eq!(shared.admit(&link, &id), None);
        assert_eq!(byes(&link), []);
        assert!(link.lock().stop, "the writer must still stop");
    }
}
