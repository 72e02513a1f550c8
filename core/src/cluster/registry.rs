//! Who the peers are: the peer registry, its view slots, the known
//! addresses, and the rule for duplicate connections.
//!
//! The [`Registry`] (one mutex in [`Cluster`]) maps node id -> [`Peer`]
//! (name, incarnation, dialable address, status, current link, view slot),
//! listen address -> [`Dial`] (the dialer's bookkeeping), and link id ->
//! every open link. The reader threads call into it on the events that
//! change membership: a peer authenticated, its first snapshot arrived, it
//! said BYE SHUTDOWN, its link closed.
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

use std::collections::HashMap;
use std::net::SocketAddr;

use super::conn::{PeerIdentity, Role};
use super::link::Link;
use super::log::{log, Level};
use super::runtime::Cluster;
use super::view::{View, MAX_SLOTS};
use super::wire::ByeCode;
use crate::stats::{PeerState as Status, PeerStats, Traffic};
use crate::sync::{Arc, Ordering};

/// A peer down this long (and past its grace) is forgotten.
const FORGET_PEER_AFTER_MS: u64 = 60_000;

#[derive(Debug)]
pub(super) struct Peer {
    pub(super) name: String,
    pub(super) incarnation: u64,
    /// Dialable listen address (empty if it does not listen).
    pub(super) listen: String,
    pub(super) slot: u16,
    pub(super) link: Option<Arc<Link>>,
    /// The last link, for stats after it closed.
    pub(super) last_link: Option<Arc<Link>>,
    pub(super) status: Status,
    pub(super) since_ms: u64,
    /// Traffic of earlier links to this peer.
    pub(super) earlier: Traffic,
    pub(super) connects: u64,
}

#[derive(Debug)]
pub(super) struct Dial {
    pub(super) node_id: Option<u64>,
    pub(super) seed: bool,
    pub(super) running: bool,
    pub(super) is_self: bool,
}

#[derive(Debug, Default)]
pub(super) struct Registry {
    pub(super) peers: HashMap<u64, Peer>,
    pub(super) addrs: HashMap<String, Dial>,
    pub(super) links: HashMap<u64, Arc<Link>>,
    pub(super) free_slots: Vec<u16>,
    pub(super) next_slot: u16,
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

    /// Queues the current gossip list (PEERS) on every connected peer's link
    /// and wakes its writer: called whenever the set of connected peers
    /// changes.
    fn share_gossip(&self) {
        let gossip = self.gossip();
        for l in self.peers.values().filter_map(|p| p.link.as_ref()) {
            let mut st = l.st.lock();
            st.peers = Some(gossip.clone());
            l.cv.notify_all();
        }
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

/// One peer's entry in the `peers` of [`Cluster::stats`].
pub(super) fn peer_stats(node_id: u64, p: &Peer, now_ms: u64, view: &View) -> PeerStats {
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
    let (overflows, snapshots) = p.last_link.as_ref().map_or((0, 0), |l| {
        (l.stats.overflows.load(Ordering::Relaxed), l.stats.snapshots_sent.load(Ordering::Relaxed))
    });
    let last_rx = p.link.as_ref().or(p.last_link.as_ref()).map(|l| l.st.lock().conn.last_rx_ms());
    PeerStats {
        name: p.name.clone(),
        node_id,
        incarnation: p.incarnation,
        address,
        state: p.status,
        counted: view.is_counted(p.slot),
        last_frame_age_ms: last_rx.map(|t| now_ms.saturating_sub(t)),
        state_age_ms: now_ms.saturating_sub(p.since_ms),
        topics: view.topics_of(p.slot),
        total: view.sum_of(p.slot),
        traffic: t,
        outbox_pending: pending,
        outbox_overflows: overflows,
        snapshots_sent: snapshots,
        connects: p.connects,
    }
}

impl Cluster {
    /// Registers an authenticated link (section 9.5 of PROTOCOL.md for
    /// duplicates). Returns the peer's view slot, or `None` if this link
    /// lost to another one and is closing.
    pub(super) fn on_authenticated(self: &Arc<Self>, link: &Arc<Link>, id: &PeerIdentity) -> Option<u16> {
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
                        earlier: Traffic::default(),
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
        // The new link starts with a snapshot; it and every other link get
        // the new gossip list (share_gossip wakes their writers).
        link.st.lock().need_snapshot = true;
        reg.share_gossip();
        self.view.set_known(reg.known(now, self.down_grace_ms()));
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

    pub(super) fn on_synced(&self, link: &Link, slot: u16) {
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

    pub(super) fn on_left(&self, link: &Link) {
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
        let known = reg.known(now, self.down_grace_ms());
        self.view.set_known(known);
    }

    pub(super) fn on_link_closed(&self, link: &Link, reason: &str) {
        let now = self.now_ms();
        let mut reg = self.reg.lock();
        reg.links.remove(&link.id);
        let peer_id = link.peer_id.load(Ordering::Acquire);
        let mut changed = false;
        if let Some(p) = reg.peers.get_mut(&peer_id) {
            // Every link registered for this peer adds its traffic once, when
            // it ends, also one replaced by a duplicate or a new incarnation:
            // the peer's counters never go back.
            p.earlier = p.earlier + link.stats.traffic.load();
            if p.link.as_ref().is_some_and(|l| l.id == link.id) {
                p.link = None;
                self.view.set_owner(p.slot, 0);
                if p.status != Status::Left {
                    log!(Level::Info, &self.name, "peer {} down: {reason}", p.name);
                    p.status = Status::Down;
                    p.since_ms = now;
                    if self.down_grace_ms() == 0 {
                        self.view.clear(p.slot);
                    }
                }
                changed = true;
            }
        }
        if changed {
            reg.share_gossip();
        }
        let known = reg.known(now, self.down_grace_ms());
        self.view.set_known(known);
        drop(reg);
        self.wake_all();
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
            if p.status == Status::Down && age >= self.down_grace_ms() && self.view.is_counted(p.slot) {
                self.view.clear(p.slot);
            }
            if age > FORGET_PEER_AFTER_MS.max(self.down_grace_ms()) {
                forget.push(*id);
            }
        }
        for id in forget {
            if let Some(p) = reg.peers.remove(&id) {
                self.view.clear(p.slot);
                reg.free_slots.push(p.slot);
            }
        }
        let known = reg.known(now, self.down_grace_ms());
        self.view.set_known(known);
    }
}

/// The address to dial for a peer's advertised `listen`: its own host, or
/// the connection's source IP when it advertised an unspecified host.
pub(super) fn dialable(listen: &str, remote: SocketAddr) -> String {
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

    #[test]
    fn dialable_substitutes_unspecified_hosts() {
        let remote: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        assert_eq!(dialable("0.0.0.0:7000", remote), "10.1.2.3:7000");
        assert_eq!(dialable("127.0.0.1:7000", remote), "127.0.0.1:7000");
        assert_eq!(dialable("db.local:7000", remote), "db.local:7000");
    }
}
