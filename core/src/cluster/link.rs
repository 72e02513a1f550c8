//! One connection to a peer: the [`Link`] shared by its two threads, its
//! traffic counters, and its outbox.
//!
//! A [`Link`] owns one TCP stream and the sans-IO [`Conn`] that speaks the
//! protocol on it, under one mutex with a condvar. Two threads serve it:
//!
//! * the **reader** (`reader.rs`, `Cluster::run_link`, on the thread that
//!   accepted or dialed the connection) decodes frames, feeds them to the
//!   `Conn`, and hands the resulting events to the registry (authentication,
//!   departure) and the view (snapshots, deltas);
//! * the **writer** (`writer.rs`) waits on the condvar for work (queued
//!   handshake frames, a snapshot to send, outbox entries, a gossip list, a
//!   timer), turns it into frames and does the blocking `write`, bounded by
//!   `SO_SNDTIMEO`.
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
use std::net::{Shutdown, SocketAddr, TcpStream};

use super::conn::{Conn, Role, Topic};
use super::wire::ByeCode;
use crate::stats::TrafficCounters;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering, RandomState};

/// Coalesced outbox entries per link past which we drop them and send a
/// fresh snapshot instead (bounds per-peer memory whatever the peer does).
pub(crate) const OUTBOX_CAP: usize = 1 << 18;

/// Per-connection counters.
#[derive(Debug, Default)]
pub(super) struct LinkStats {
    /// Cumulative traffic. A peer keeps the sum over its closed links, so
    /// that its stats cover every connection.
    pub(super) traffic: TrafficCounters,
    pub(super) overflows: AtomicU64,
    pub(super) snapshots_sent: AtomicU64,
    pub(super) pending: AtomicUsize,
}

#[derive(Debug)]
pub(super) struct LinkState {
    pub(super) conn: Conn,
    /// Latest absolute count per topic not yet handed to `conn`.
    pub(super) pending: HashMap<Topic, u64, RandomState>,
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
            self.stats.traffic.outbox_coalesces.fetch_add(coalesced, Ordering::Relaxed);
            self.stats.pending.store(st.pending.len(), Ordering::Relaxed);
        }
        self.cv.notify_all();
    }

    pub(super) fn kill(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::cluster::conn::{AuthKey, ConnParams, DEFAULT_ID_SOFT_CAP};

    fn params(id: u64) -> ConnParams {
        ConnParams {
            settings: crate::sync::Arc::new(crate::Config::builder().cluster("t").build().unwrap().settings().clone()),
            node_name: format!("n{id}"),
            node_id: id,
            incarnation: id,
            listen: String::new(),
            key: AuthKey::new(b"s"),
            handshake_timeout_ms: 1000,
            heartbeat_ms: 100,
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
        assert_eq!(link.stats.traffic.outbox_coalesces.load(Ordering::Relaxed), 2);
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
