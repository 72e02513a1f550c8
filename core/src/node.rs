//! [`Node`]: a [`Counter`] plus the flusher thread that drains it.
//!
//! A node without `listen` or `seeds` is local-only: its flusher still runs
//! every `flush_interval_ms`, draining the dirty topics and running topic GC,
//! and `count` equals `count_local`.

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
    /// Local count plus the last count of every live peer.
    pub count: u64,
    /// This node's exact count.
    pub local: u64,
    /// Live peers that have reported this topic.
    pub peers_reporting: u32,
    /// Peers currently known (up or within their down grace).
    pub peers_known: u32,
    /// Age of the oldest report summed into `count`, in milliseconds.
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
        if config.is_clustered() {
            return Err(Error::Config {
                key: "listen".into(),
                message: "clustering is not available in this build yet".into(),
            });
        }
        let counter = Counter::with_config(CounterConfig {
            max_topic_len: config.max_topic_len,
            gc_after: config.gc_after,
            stripes: None,
        });
        let name = config.node_name.clone().unwrap_or_else(|| format!("node-{:08x}", rand_u32()));
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
            let (counter, shared, interval) = (counter.clone(), shared.clone(), config.flush_interval);
            std::thread::Builder::new()
                .name(format!("headcount-flush-{name}"))
                .spawn(move || flush_loop(&counter, &shared, interval))?
        };
        Ok(Node { name, counter, shared, flusher: Mutex::new(Some(flusher)) })
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

    /// The cluster-wide count of `topic`.
    pub fn count(&self, topic: &[u8]) -> Result<u64> {
        Ok(self.count_info(topic)?.count)
    }

    /// This node's exact count of `topic`.
    pub fn count_local(&self, topic: &[u8]) -> Result<u64> {
        self.open()?.count_local(topic)
    }

    /// The count of `topic` with its freshness and coverage.
    pub fn count_info(&self, topic: &[u8]) -> Result<TopicCount> {
        let local = self.open()?.count_local(topic)?;
        Ok(TopicCount { count: local, local, ..TopicCount::default() })
    }

    /// The count of `topic` on each node, this one first.
    pub fn count_by_node(&self, topic: &[u8]) -> Result<Vec<(String, u64)>> {
        Ok(vec![(self.name.clone(), self.count_local(topic)?)])
    }

    /// The sum of all counts across the cluster.
    pub fn total(&self) -> Result<u64> {
        Ok(self.open()?.total_local())
    }

    /// The listener's address, if this node listens.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }

    /// Connects to another node at `addr` (`host:port`).
    pub fn add_peer(&self, addr: &str) -> Result<()> {
        self.open()?;
        Err(Error::InvalidArgument(format!("cannot add peer {addr:?}: this node is local-only")))
    }

    /// Counters and state as one line of JSON.
    pub fn stats_json(&self) -> Result<String> {
        let c = self.open()?;
        let s = &self.shared;
        let flushes = s.flushes.load(Ordering::Relaxed);
        Ok(serde_json::json!({
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
        })
        .to_string())
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
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.close();
    }
}

fn flush_loop(counter: &Counter, shared: &Shared, interval: Duration) {
    let mut next = Instant::now() + interval;
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
        let drained = counter.drain(start, |_, _| {});
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
