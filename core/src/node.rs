//! [`Node`]: a [`Counter`], the flusher thread that drains it, and (when
//! configured with `listen`, `seeds` or `secret`) the cluster runtime that
//! replicates local counts to peers ([`crate::cluster`]).
//!
//! Every `flush_interval_ms` the flusher drains the dirty topics *once*, hands
//! the changes to every peer's outbox (writes happen on per-peer writer
//! threads, never here and never on application threads), and runs topic GC.
//! A node without `listen`, `seeds` or `secret` is local-only: `count`
//! equals `count_local`.

use crate::cluster::conn::Topic;
use crate::cluster::runtime::Cluster;
use crate::config::Config;
use crate::counter::{Counter, CounterConfig};
use crate::error::{Error, Result};
use crate::sync::{Arc, AtomicBool, AtomicU64, Ordering};
use parking_lot::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A topic's cluster-wide count, with how fresh and complete it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicCount {
    /// Local count plus the last count of every counted peer.
    pub count: u64,
    /// This node's exact count.
    pub local: u64,
    /// Peers whose counts are summed into `count`: connected and synced (their
    /// snapshot arrived), or down but within `down_grace_ms`.
    pub peers_reporting: u32,
    /// Peers currently known: connected (synced or still syncing), or down
    /// within their grace. `peers_reporting < peers_known` means some peer's
    /// counts are not (yet) in `count`.
    pub peers_known: u32,
    /// Time since the least recently heard-from reporting peer sent anything,
    /// in milliseconds: every peer's share of `count` is at least this fresh
    /// (a peer's silence about a topic means "unchanged" only as of then).
    pub oldest_report_age_ms: u64,
}

/// One headcount node. `Send + Sync`; share it behind an `Arc` or a
/// reference. Dropping it closes it.
///
/// ```
/// let node = headcount::Node::start(&headcount::Config::new()).unwrap();
/// assert!(node.track(b"room:1", 7).unwrap());
/// assert_eq!(node.count(b"room:1").unwrap(), 1);
/// node.close();
/// assert!(node.count(b"room:1").is_err());
/// ```
#[derive(Debug)]
pub struct Node {
    name: String,
    counter: Counter,
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    cluster: Option<std::sync::Arc<Cluster>>,
}

#[derive(Debug)]
struct Shared {
    closed: AtomicBool,
    wake: Condvar,
    wake_lock: Mutex<()>,
    flushes: AtomicU64,
    flush_nanos_total: AtomicU64,
    flush_nanos_max: AtomicU64,
    topics_drained: AtomicU64,
    topics_collected: AtomicU64,
}

impl Node {
    /// Starts a node: validates `config` and spawns its flusher thread.
    pub fn start(config: &Config) -> Result<Node> {
        config.validate()?;
        let settings = Arc::new(config.settings().clone());
        let counter = Counter::with_config(CounterConfig {
            max_topic_len: settings.max_topic_len,
            gc_after: settings.gc_after,
            stripes: None,
        });
        let name = settings.node_name.clone().unwrap_or_else(|| format!("node-{:08x}", rand_u32()));
        // validate() refuses listen/seeds without a secret.
        let cluster = match &settings.secret {
            Some(secret) => Some(Cluster::start(settings.clone(), &name, secret, counter.clone())?),
            None => None,
        };
        let shared = Arc::new(Shared {
            closed: AtomicBool::new(false),
            wake: Condvar::new(),
            wake_lock: Mutex::new(()),
            flushes: AtomicU64::new(0),
            flush_nanos_total: AtomicU64::new(0),
            flush_nanos_max: AtomicU64::new(0),
            topics_drained: AtomicU64::new(0),
            topics_collected: AtomicU64::new(0),
        });
        let flusher = {
            let (counter, shared, interval) = (counter.clone(), shared.clone(), settings.flush_interval);
            let c = cluster.clone();
            std::thread::Builder::new()
                .name(format!("headcount-flush-{name}"))
                .spawn(move || flush_loop(&counter, &shared, interval, c.as_deref()))
        };
        let flusher = match flusher {
            Ok(f) => f,
            Err(e) => {
                if let Some(c) = &cluster {
                    c.close();
                }
                return Err(e.into());
            }
        };
        Ok(Node { name, counter, shared, flusher: Mutex::new(Some(flusher)), cluster })
    }

    fn open(&self) -> Result<&Counter> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(&self.counter)
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The local counting core (for handles and iteration).
    pub fn counter(&self) -> Result<&Counter> {
        self.open()
    }

    /// See [`Counter::track`].
    pub fn track(&self, topic: &[u8], conn: u64) -> Result<bool> {
        self.open()?.track(topic, conn)
    }

    /// See [`Counter::untrack`].
    pub fn untrack(&self, topic: &[u8], conn: u64) -> Result<bool> {
        self.open()?.untrack(topic, conn)
    }

    /// See [`Counter::untrack_all`].
    pub fn untrack_all(&self, conn: u64) -> Result<usize> {
        Ok(self.open()?.untrack_all(conn))
    }

    /// See [`Counter::add`].
    pub fn add(&self, topic: &[u8], delta: i64) -> Result<()> {
        self.open()?.add(topic, delta)
    }

    /// The cluster-wide count of `topic`: the exact local count plus the last
    /// count reported by every counted peer. Takes no global lock.
    pub fn count(&self, topic: &[u8]) -> Result<u64> {
        let local = self.open()?.count_local(topic)?;
        Ok(match &self.cluster {
            Some(c) => local.saturating_add(c.remote_count(topic)),
            None => local,
        })
    }

    /// This node's exact count of `topic`.
    pub fn count_local(&self, topic: &[u8]) -> Result<u64> {
        self.open()?.count_local(topic)
    }

    /// The count of `topic` with its freshness and coverage.
    pub fn count_info(&self, topic: &[u8]) -> Result<TopicCount> {
        let local = self.open()?.count_local(topic)?;
        let Some(c) = &self.cluster else {
            return Ok(TopicCount { count: local, local, ..TopicCount::default() });
        };
        let (remote, peers_reporting, peers_known, oldest_report_age_ms) = c.remote_info(topic);
        Ok(TopicCount {
            count: local.saturating_add(remote),
            local,
            peers_reporting,
            peers_known: peers_known.max(peers_reporting),
            oldest_report_age_ms,
        })
    }

    /// The count of `topic` on each node: this one first, then every counted
    /// peer by name.
    pub fn count_by_node(&self, topic: &[u8]) -> Result<Vec<(String, u64)>> {
        let mut v = vec![(self.name.clone(), self.count_local(topic)?)];
        if let Some(c) = &self.cluster {
            v.extend(c.count_by_node(topic));
        }
        Ok(v)
    }

    /// The sum of all counts across the cluster (local total plus every
    /// counted peer's total).
    pub fn total(&self) -> Result<u64> {
        let local = self.open()?.total_local();
        Ok(match &self.cluster {
            Some(c) => local.saturating_add(c.remote_total()),
            None => local,
        })
    }

    /// The listener's address (with the real port when `listen` had port 0),
    /// if this node listens.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.cluster.as_ref().and_then(|c| c.local_addr())
    }

    /// Connects to another node at `addr` (`host:port`), and keeps
    /// reconnecting to it whenever the connection drops. Needs a `secret`.
    pub fn add_peer(&self, addr: &str) -> Result<()> {
        self.open()?;
        let addr = crate::config::address(addr).map_err(Error::InvalidArgument)?;
        match &self.cluster {
            Some(c) => {
                c.add_addr(&addr, true);
                Ok(())
            }
            None => Err(Error::InvalidArgument(format!(
                "cannot add peer {addr:?}: this node is local-only (set secret, listen or seeds)"
            ))),
        }
    }

    /// Counters and state as one line of JSON.
    pub fn stats_json(&self) -> Result<String> {
        let c = self.open()?;
        let s = &self.shared;
        let flushes = s.flushes.load(Ordering::Relaxed);
        let mut json = serde_json::json!({
            "node": self.name,
            "topics": c.topics(),
            "tracked_pairs": c.pairs(),
            "connections": c.connections(),
            "total_local": c.total_local(),
            "stripes": c.stripes(),
            "flushes": flushes,
            "flush_us_avg": s.flush_nanos_total.load(Ordering::Relaxed) / flushes.max(1) / 1000,
            "flush_us_max": s.flush_nanos_max.load(Ordering::Relaxed) / 1000,
            "topics_drained": s.topics_drained.load(Ordering::Relaxed),
            "topics_collected": s.topics_collected.load(Ordering::Relaxed),
            "peers": [],
        });
        if let (Some(cl), Some(obj)) = (&self.cluster, json.as_object_mut()) {
            if let serde_json::Value::Object(extra) = cl.stats() {
                obj.extend(extra);
            }
        }
        Ok(json.to_string())
    }

    /// Stops the flusher and closes the node. Idempotent; later calls on the
    /// node return [`Error::Closed`].
    pub fn close(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let _g = self.shared.wake_lock.lock();
            self.shared.wake.notify_all();
        }
        if let Some(flusher) = self.flusher.lock().take() {
            let _ = flusher.join();
        }
        // Then say BYE to every peer (they drop our counts at once) and stop
        // the network threads.
        if let Some(c) = &self.cluster {
            c.close();
        }
    }
}

impl Node {
    /// Stops the node as a crash would: connections are cut without BYE, so
    /// peers notice only through the closed sockets (what `kill -9` looks
    /// like from outside). For failure tests and benchmarks; use
    /// [`Node::close`] otherwise.
    #[doc(hidden)]
    pub fn abort(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(c) = &self.cluster {
            c.abort();
        }
        {
            let _g = self.shared.wake_lock.lock();
            self.shared.wake.notify_all();
        }
        if let Some(flusher) = self.flusher.lock().take() {
            let _ = flusher.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.close();
    }
}

fn flush_loop(counter: &Counter, shared: &Shared, interval: Duration, cluster: Option<&Cluster>) {
    let mut next = Instant::now() + interval;
    let mut changes: Vec<(Topic, u64)> = Vec::new();
    loop {
        {
            let mut g = shared.wake_lock.lock();
            while !shared.closed.load(Ordering::Acquire) && Instant::now() < next {
                shared.wake.wait_until(&mut g, next);
            }
        }
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        let start = Instant::now();
        let drained = match cluster {
            Some(_) => counter.drain(start, |t, n| changes.push((t.into(), n))),
            None => counter.drain(start, |_, _| {}),
        };
        if let Some(c) = cluster {
            // One drain, one delta per peer: each peer's outbox coalesces.
            c.distribute(&changes);
            changes.clear();
            if changes.capacity() > 1 << 16 {
                changes = Vec::new();
            }
            c.housekeeping();
        }
        let collected = counter.collect_garbage(start);
        let took = start.elapsed().as_nanos() as u64;
        shared.flushes.fetch_add(1, Ordering::Relaxed);
        shared.flush_nanos_total.fetch_add(took, Ordering::Relaxed);
        shared.flush_nanos_max.fetch_max(took, Ordering::Relaxed);
        shared.topics_drained.fetch_add(drained as u64, Ordering::Relaxed);
        shared.topics_collected.fetch_add(collected as u64, Ordering::Relaxed);
        next += interval;
        if next < Instant::now() {
            next = Instant::now() + interval;
        }
    }
}

/// A random 32-bit value from the standard library's per-process random
/// hash keys (no extra dependency for a name suffix).
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now()) as u32
}
