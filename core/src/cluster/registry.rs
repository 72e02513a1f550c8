//! Who the peers are: the peer registry, its view slots, the known
//! addresses, and the rules that change them (the duplicate rule above all).
//!
//! The [`Registry`] (behind the rank-1 lock of `shared.rs`) maps node id ->
//! [`Peer`] (name, incarnation, dialable address, status, current link, view
//! slot), listen address (canonical, `addr.rs`) -> [`Dial`] (the dialer's
//! bookkeeping; at most [`MAX_SLOTS`] learned ones, seeds beyond), and link
//! id -> every open link. Addresses that turned out to be our own are not in
//! that table: the last [`MAX_SELVES`] of them are remembered apart, so that
//! neither they nor dead addresses (forgotten by their dialers after a
//! minute) hold a place in it for ever. Its methods are the membership rules, applied under
//! that lock on the events that change membership: a link registered, a
//! peer authenticated ([`Registry::admit`]), its first snapshot arrived, it
//! said BYE SHUTDOWN, its link closed, time passed ([`Registry::expire`]).
//! They touch links only through `Link`'s own methods (rank 2, allowed under
//! the registry) and the view (a leaf), and return what must happen after
//! the lock is released (a link to close, an address to dial).
//!
//! | status    | counted in `count`                    | next |
//! |-----------|---------------------------------------|------|
//! | `Syncing` | only old counts still in grace        | first snapshot -> `Up` |
//! | `Up`      | yes                                   | link closes -> `Down`; BYE SHUTDOWN -> `Left` |
//! | `Down`    | for `down_grace_ms` (default 0: no)   | reconnect -> `Syncing`; forgotten after 60 s |
//! | `Left`    | no (dropped at once)                  | reconnect -> `Syncing` |
//!
//! Duplicates (PROTOCOL.md section 9.5): a link authenticating for a node
//! with a new incarnation replaces the old link and discards its counts; for
//! the same incarnation the link dialed by the smaller node id is kept (if
//! both were dialed by the same side, the older one). Only the current link
//! owns the peer's view slot, so late frames of a replaced link are ignored.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use super::addr::dialable;
use super::conn::{PeerIdentity, Role};
use super::link::Link;
use super::view::{View, MAX_SLOTS};
use super::wire::ByeCode;
use crate::logging::{log, Level, NodeLog};
use crate::stats::{PeerState as Status, PeerStats, Traffic};
use crate::sync::{Arc, Ordering};

/// A peer down this long (and past its grace) is forgotten.
const FORGET_PEER_AFTER_MS: u64 = 60_000;

#[derive(Debug)]
pub(super) struct Peer {
    name: String,
    incarnation: u64,
    /// Dialable listen address (empty if it does not listen).
    listen: String,
    slot: u16,
    link: Option<Arc<Link>>,
    /// What the stats keep of the last link once it closed.
    last: LastLink,
    status: Status,
    since_ms: u64,
    /// Traffic of earlier links to this peer.
    earlier: Traffic,
    connects: u64,
}

impl Peer {
    /// Whether `link` is this peer's current link.
    fn is_current(&self, link: &Link) -> bool {
        self.link.as_ref().is_some_and(|l| l.id == link.id)
    }
}

/// What a peer's stats keep of its last link once it closed: a few
/// numbers, not the link, so that a closed link's socket, `Conn` and topic-id
/// tables are released at once (the peer's counts stay in the view only per
/// `down_grace_ms`).
#[derive(Debug, Clone, Copy, Default)]
struct LastLink {
    overflows: u64,
    snapshots_sent: u64,
    last_rx_ms: Option<u64>,
}

impl LastLink {
    fn of(l: &Link) -> LastLink {
        LastLink {
            overflows: l.stats.overflows.load(Ordering::Relaxed),
            snapshots_sent: l.stats.snapshots_sent.load(Ordering::Relaxed),
            last_rx_ms: Some(l.last_rx_ms()),
        }
    }
}

/// A dialer's bookkeeping for one known address (`dial.rs`), keyed by
/// the address's canonical spelling (`addr.rs`).
#[derive(Debug)]
pub(super) struct Dial {
    node_id: Option<u64>,
    seed: bool,
    running: bool,
}

/// What [`Registry::claim_dial`] decided about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// It is new (or its dialer ended): the caller starts its dialer.
    Start,
    /// A dialer runs for it, or it is our own.
    Known,
    /// The address table is full: the address is dropped.
    Full,
}

/// Addresses that reached this node itself remembered at most (the oldest
/// is forgotten first): a bounded memory, outside the address table.
const MAX_SELVES: usize = 16;

/// View slots: reused after a peer is forgotten.
#[derive(Debug, Default)]
struct Slots {
    free: Vec<u16>,
    next: u16,
}

impl Slots {
    fn alloc(&mut self) -> Option<u16> {
        if let Some(s) = self.free.pop() {
            return Some(s);
        }
        if usize::from(self.next) < MAX_SLOTS {
            self.next += 1;
            return Some(self.next - 1);
        }
        None
    }
}

/// What [`Registry::admit`] decided about an authenticated link.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// The link is the peer's current link and owns view slot `slot`.
    /// `dial`: the peer's listen address, not known to us before: dial it
    /// (and remember it is this peer's), so that we redial it if this
    /// connection drops, whichever side opened it.
    Admitted { slot: u16, dial: Option<String> },
    /// The node is closing: close the link with BYE SHUTDOWN.
    Closing,
    /// Every view slot is taken: close the link with a PROTOCOL_ERROR BYE.
    TooManyPeers,
    /// Another link to this peer is kept: close this one with BYE DUPLICATE.
    Duplicate,
}

/// The peers, the known addresses and the open links. See the module docs.
#[derive(Debug)]
pub(super) struct Registry {
    /// Our node id (the duplicate rule compares it).
    me: u64,
    /// How long a down peer's counts are still summed.
    down_grace_ms: u64,
    /// Where our log lines go.
    log: NodeLog,
    peers: HashMap<u64, Peer>,
    addrs: HashMap<String, Dial>,
    /// Addresses that turned out to be our own (canonical spelling, and
    /// where it resolved), oldest first; never dialed again while here.
    selves: VecDeque<(String, SocketAddr)>,
    links: HashMap<u64, Arc<Link>>,
    slots: Slots,
}

impl Registry {
    pub(super) fn new(me: u64, down_grace_ms: u64, log: NodeLog) -> Registry {
        Registry {
            me,
            down_grace_ms,
            log,
            peers: HashMap::new(),
            addrs: HashMap::new(),
            selves: VecDeque::new(),
            links: HashMap::new(),
            slots: Slots::default(),
        }
    }

    // ---- links ----------------------------------------------------------

    /// Records an open link (before its handshake). `false` if the node is
    /// `closing` (then the link must not run).
    pub(super) fn register(&mut self, link: &Arc<Link>, closing: bool) -> bool {
        if closing {
            return false;
        }
        self.links.insert(link.id, link.clone());
        true
    }

    /// Every open link.
    pub(super) fn links(&self) -> Vec<Arc<Link>> {
        self.links.values().cloned().collect()
    }

    /// The current link of every connected peer.
    pub(super) fn peer_links(&self) -> Vec<Arc<Link>> {
        self.peers.values().filter_map(|p| p.link.clone()).collect()
    }

    // ---- membership -----------------------------------------------------

    /// Registers an authenticated link (section 9.5 of PROTOCOL.md for
    /// duplicates). The node is `closing` if it is shutting down.
    pub(super) fn admit(
        &mut self,
        view: &View,
        now: u64,
        closing: bool,
        link: &Arc<Link>,
        id: &PeerIdentity,
    ) -> Admission {
        if closing {
            return Admission::Closing;
        }
        // A listen address that is not one we would dial is ignored.
        let listen = dialable(&id.listen, link.remote).unwrap_or_default();
        if let Some(a) = &link.dialed {
            if let Some(d) = self.addrs.get_mut(a) {
                d.node_id = Some(id.node_id);
            }
        }
        if !listen.is_empty() {
            if let Some(d) = self.addrs.get_mut(&listen) {
                d.node_id = Some(id.node_id);
            }
        }
        let p = match self.peers.entry(id.node_id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let Some(slot) = self.slots.alloc() else { return Admission::TooManyPeers };
                view.clear(slot);
                view.activate(slot);
                e.insert(Peer {
                    name: id.node_name.clone(),
                    incarnation: id.incarnation,
                    listen: listen.clone(),
                    slot,
                    link: None,
                    last: LastLink::default(),
                    status: Status::Syncing,
                    since_ms: now,
                    earlier: Traffic::default(),
                    connects: 0,
                })
            }
        };
        let slot = p.slot;
        if p.incarnation != id.incarnation {
            log!(
                Level::Info,
                &self.log,
                "{} restarted (incarnation {:016x} -> {:016x}); dropping its old counts",
                id.node_name,
                p.incarnation,
                id.incarnation
            );
            if let Some(old) = p.link.take() {
                old.close(ByeCode::DUPLICATE, "superseded by a new incarnation", now);
            }
            view.clear(slot);
            p.incarnation = id.incarnation;
            p.status = Status::Syncing;
        } else if let Some(old) = &p.link {
            let me = self.me;
            let dialer_of = |l: &Link| if l.role == Role::Dialer { me } else { id.node_id };
            let keep_new = dialer_of(link) < dialer_of(old);
            if !keep_new {
                return Admission::Duplicate;
            }
            log!(Level::Debug, &self.log, "{}: replacing duplicate connection to {}", link.remote, id.node_name);
            old.close(ByeCode::DUPLICATE, "duplicate connection", now);
        }
        p.name = id.node_name.clone();
        if !listen.is_empty() {
            p.listen = listen.clone();
        }
        p.link = Some(link.clone());
        p.connects += 1;
        if p.status != Status::Up {
            p.status = Status::Syncing;
        }
        p.since_ms = now;
        view.set_owner(slot, link.id);
        link.set_peer_id(id.node_id);
        // The new link starts with a snapshot; it and every other link get
        // the new gossip list (share_gossip wakes their writers).
        link.request_snapshot();
        self.share_gossip();
        view.set_known(self.known(now));
        let dial = (!listen.is_empty() && !self.addrs.contains_key(&listen)).then_some(listen);
        Admission::Admitted { slot, dial }
    }

    /// `link`'s first complete snapshot arrived: its peer is up and counted.
    pub(super) fn synced(&mut self, view: &View, now: u64, link: &Link, slot: u16) {
        if let Some(p) = self.peers.get_mut(&link.peer_id()) {
            if p.is_current(link) {
                if p.status == Status::Syncing {
                    p.status = Status::Up;
                    p.since_ms = now;
                }
                view.set_counted(slot, true);
            }
        }
    }

    /// `link`'s peer said BYE SHUTDOWN: it left, its counts go at once.
    pub(super) fn left(&mut self, view: &View, now: u64, link: &Link) {
        let peer_id = link.peer_id();
        if let Some(p) = self.peers.get_mut(&peer_id) {
            if p.is_current(link) {
                log!(Level::Info, &self.log, "peer {} left", p.name);
                p.status = Status::Left;
                p.since_ms = now;
                view.set_owner(p.slot, 0);
                view.clear(p.slot);
            }
        }
        // It said it is leaving: stop redialing the addresses we learned for
        // it (their dialer threads see the entry gone and end). Seeds and
        // add_peer addresses stay, since an operator asked for them.
        self.addrs.retain(|_, d| d.seed || d.node_id != Some(peer_id));
        view.set_known(self.known(now));
    }

    /// `link`'s peer passed a per-peer limit (the link is closing): its
    /// counts go at once, whatever `down_grace_ms`.
    pub(super) fn too_large(&mut self, view: &View, link: &Link) {
        if let Some(p) = self.peers.get(&link.peer_id()) {
            if p.is_current(link) {
                view.clear(p.slot);
            }
        }
    }

    /// `link` ended (`reason` for the log): its peer is down at once.
    pub(super) fn closed(&mut self, view: &View, now: u64, link: &Link, reason: &str) {
        self.links.remove(&link.id);
        let mut changed = false;
        if let Some(p) = self.peers.get_mut(&link.peer_id()) {
            // Every link registered for this peer adds its traffic once, when
            // it ends, also one replaced by a duplicate or a new incarnation:
            // the peer's counters never go back.
            p.earlier = p.earlier + link.stats.traffic.load();
            if p.is_current(link) {
                p.link = None;
                p.last = LastLink::of(link);
                view.set_owner(p.slot, 0);
                if p.status != Status::Left {
                    log!(Level::Info, &self.log, "peer {} down: {reason}", p.name);
                    p.status = Status::Down;
                    p.since_ms = now;
                    if self.down_grace_ms == 0 {
                        view.clear(p.slot);
                    }
                }
                changed = true;
            }
        }
        if changed {
            self.share_gossip();
        }
        view.set_known(self.known(now));
    }

    /// Periodic upkeep: expires down peers past their grace, forgets
    /// long-gone peers (and frees their view slots).
    pub(super) fn expire(&mut self, view: &View, now: u64) {
        let mut forget = Vec::new();
        for (id, p) in self.peers.iter() {
            if p.link.is_some() {
                continue;
            }
            let age = now.saturating_sub(p.since_ms);
            if p.status == Status::Down && age >= self.down_grace_ms && view.is_counted(p.slot) {
                view.clear(p.slot);
            }
            if age > FORGET_PEER_AFTER_MS.max(self.down_grace_ms) {
                forget.push(*id);
            }
        }
        for id in forget {
            if let Some(p) = self.peers.remove(&id) {
                view.clear(p.slot);
                self.slots.free.push(p.slot);
            }
        }
        view.set_known(self.known(now));
    }

    /// Listen addresses of peers we are connected to (for PEERS).
    fn gossip(&self) -> Vec<String> {
        self.peers.values().filter(|p| p.link.is_some() && !p.listen.is_empty()).map(|p| p.listen.clone()).collect()
    }

    /// Queues the current gossip list (PEERS) on every connected peer's link
    /// and wakes its writer: called whenever the set of connected peers
    /// changes.
    fn share_gossip(&self) {
        let gossip = self.gossip();
        for l in self.peers.values().filter_map(|p| p.link.as_ref()) {
            l.share_peers(gossip.clone());
        }
    }

    /// Peers connected, syncing, or down within grace.
    fn known(&self, now_ms: u64) -> u32 {
        self.peers
            .values()
            .filter(|p| match p.status {
                Status::Syncing | Status::Up => true,
                Status::Down => now_ms.saturating_sub(p.since_ms) < self.down_grace_ms,
                Status::Left => false,
            })
            .count() as u32
    }

    // ---- addresses (the dialers' bookkeeping) ---------------------------

    /// Claims `addr` (canonical) for a new dialer. Learned addresses past
    /// [`MAX_SLOTS`] are refused ([`Claim::Full`]); seeds and `add_peer`
    /// addresses, which an operator asked for, are not.
    pub(super) fn claim_dial(&mut self, addr: &str, seed: bool) -> Claim {
        if self.selves.iter().any(|(a, _)| a == addr) {
            return Claim::Known;
        }
        if !seed && self.addrs.len() >= MAX_SLOTS && !self.addrs.contains_key(addr) {
            return Claim::Full;
        }
        let d = self.addrs.entry(addr.to_owned()).or_insert(Dial { node_id: None, seed, running: false });
        d.seed |= seed;
        if d.running {
            return Claim::Known;
        }
        d.running = true;
        Claim::Start
    }

    /// For `addr`'s dialer: `None` if it must end (the address was
    /// forgotten, or is our own), else (its node is connected by either
    /// side, it is a seed).
    pub(super) fn dial_status(&self, addr: &str) -> Option<(bool, bool)> {
        let d = self.addrs.get(addr)?;
        let connected = d.node_id.and_then(|id| self.peers.get(&id)).is_some_and(|p| p.link.is_some());
        Some((connected, d.seed))
    }

    /// `addr`'s dialer ended (or never started).
    pub(super) fn release_dial(&mut self, addr: &str) {
        if let Some(d) = self.addrs.get_mut(addr) {
            d.running = false;
        }
    }

    /// Forgets `addr` (its dialer sees it gone and ends).
    pub(super) fn forget_addr(&mut self, addr: &str) {
        self.addrs.remove(addr);
    }

    /// `addr`, resolved to `target`, turned out to be our own: it leaves
    /// the address table (its dialer ends) and is remembered, with
    /// `target`, among the last [`MAX_SELVES`] such addresses, which are
    /// never dialed.
    pub(super) fn mark_self(&mut self, addr: &str, target: SocketAddr) {
        self.addrs.remove(addr);
        if !self.selves.iter().any(|(a, t)| a == addr && *t == target) {
            if self.selves.len() >= MAX_SELVES {
                self.selves.pop_front();
            }
            self.selves.push_back((addr.to_owned(), target));
        }
    }

    /// Whether a dial of `target` has reached ourselves before.
    pub(super) fn is_self_target(&self, target: SocketAddr) -> bool {
        self.selves.iter().any(|(_, t)| *t == target)
    }

    /// `addr` is where node `node_id` listens.
    pub(super) fn set_dial_node(&mut self, addr: &str, node_id: u64) {
        if let Some(d) = self.addrs.get_mut(addr) {
            d.node_id = Some(node_id);
        }
    }

    // ---- reads ----------------------------------------------------------

    /// Each counted peer's count of `topic`, by name.
    pub(super) fn count_by_node(&self, view: &View, topic: &[u8]) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .peers
            .values()
            .filter(|p| view.is_counted(p.slot))
            .map(|p| (p.name.clone(), view.count_of(p.slot, topic)))
            .collect();
        v.sort();
        v
    }

    /// Every known peer's stats, by name.
    pub(super) fn peer_stats(&self, view: &View, now: u64) -> Vec<PeerStats> {
        let mut peers: Vec<(&u64, &Peer)> = self.peers.iter().collect();
        peers.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        peers.into_iter().map(|(id, p)| peer_stats(*id, p, now, view)).collect()
    }

    /// Open links (handshaking or not).
    pub(super) fn open_links(&self) -> usize {
        self.links.len()
    }

    /// Addresses known to the dialers.
    pub(super) fn known_addresses(&self) -> usize {
        self.addrs.len()
    }
}

/// One peer's entry in the `peers` of `Cluster::stats`.
fn peer_stats(node_id: u64, p: &Peer, now_ms: u64, view: &View) -> PeerStats {
    let mut t = p.earlier;
    let mut pending = 0;
    let mut address = p.listen.clone();
    if let Some(l) = &p.link {
        t = t + l.stats.traffic.load();
        pending = l.stats.pending.load(Ordering::Relaxed);
        if address.is_empty() {
            address = l.remote.to_string();
        }
    }
    let last = p.link.as_deref().map_or(p.last, LastLink::of);
    PeerStats {
        name: p.name.clone(),
        node_id,
        incarnation: p.incarnation,
        address,
        state: p.status,
        counted: view.is_counted(p.slot),
        last_frame_age_ms: last.last_rx_ms.map(|t| now_ms.saturating_sub(t)),
        state_age_ms: now_ms.saturating_sub(p.since_ms),
        topics: view.topics_of(p.slot),
        total: view.sum_of(p.slot),
        traffic: t,
        outbox_pending: pending,
        outbox_overflows: last.overflows,
        snapshots_sent: last.snapshots_sent,
        connects: p.connects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::LogFormat;

    fn registry() -> Registry {
        Registry::new(1, 0, NodeLog::new("t", LogFormat::Text))
    }

    #[test]
    fn learned_addresses_past_the_table_are_refused_and_seeds_are_not() {
        let mut r = registry();
        for i in 0..MAX_SLOTS {
            assert_eq!(r.claim_dial(&format!("10.0.{}.{}:1", i / 256, i % 256), false), Claim::Start);
        }
        assert_eq!(r.claim_dial("10.0.0.0:1", false), Claim::Known);
        assert_eq!(r.claim_dial("10.9.9.9:1", false), Claim::Full);
        assert_eq!(r.claim_dial("10.9.9.9:1", true), Claim::Start);
        assert_eq!(r.known_addresses(), MAX_SLOTS + 1);
        // A forgotten address frees its place.
        r.forget_addr("10.0.0.0:1");
        r.forget_addr("10.9.9.9:1");
        assert_eq!(r.claim_dial("10.9.9.8:1", false), Claim::Start);
        assert_eq!(r.claim_dial("10.9.9.7:1", false), Claim::Full);
    }

    #[test]
    fn our_own_addresses_leave_the_table_and_are_remembered_boundedly() {
        let mut r = registry();
        let me: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert_eq!(r.claim_dial("localhost:7000", false), Claim::Start);
        r.mark_self("localhost:7000", me);
        assert_eq!(r.known_addresses(), 0);
        assert_eq!(r.dial_status("localhost:7000"), None);
        assert_eq!(r.claim_dial("localhost:7000", false), Claim::Known);
        assert!(r.is_self_target(me));
        // Marking again changes nothing; past MAX_SELVES the oldest goes.
        r.mark_self("localhost:7000", me);
        for i in 0..MAX_SELVES {
            r.mark_self(&format!("h{i}:7000"), me);
        }
        assert_eq!(r.selves.len(), MAX_SELVES);
        assert_eq!(r.claim_dial("localhost:7000", false), Claim::Start);
        assert_eq!(r.claim_dial("h1:7000", false), Claim::Known);
        assert!(r.is_self_target(me));
    }
}
