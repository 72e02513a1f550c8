//! [`Node`]: the facade over a [`Counter`], its flusher ([`crate::flush`]:
//! when changes are drained and shipped) and, when configured with a
//! `secret`, the cluster runtime that replicates local counts to peers
//! ([`crate::cluster`]).
//!
//! A node without `listen`, `seeds` or `secret` is local-only: `count`
//! equals `count_local`. With `metrics_listen` it also runs the metrics and
//! health server ([`crate::metrics`]), which reads the same [`Stats`] as
//! [`Node::stats`] through a [`StatsReader`].

use crate::cluster::runtime::Cluster;
use crate::config::Config;
use crate::counter::{Counter, CounterConfig};
use crate::error::{Error, Result};
use crate::flush::{FlushCounters, Flusher};
use crate::metrics;
use crate::stats::Stats;
use crate::sync::{Arc, AtomicBool, Ordering};
use crate::top::Top;
use crate::watch::{Feed, Watch};
use std::net::SocketAddr;
use std::time::Instant;

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
    closed: AtomicBool,
    flusher: Flusher,
    cluster: Option<Arc<Cluster>>,
    feed: Feed,
    stats: StatsReader,
    metrics: Option<metrics::Server>,
}

impl Node {
    /// Starts a node: validates `config`, binds its listeners (peers and
    /// metrics), and spawns its threads.
    pub fn start(config: &Config) -> Result<Node> {
        config.validate()?;
        let settings = Arc::new(config.settings().clone());
        let counter = Counter::with_config(CounterConfig {
            max_topic_len: settings.max_topic_len,
            gc_after: settings.gc_after,
            stripes: None,
        });
        let name = settings.node_name.clone().unwrap_or_else(|| format!("node-{:08x}", rand_u32()));
        let metrics_listener = settings.metrics_listen.as_deref().map(metrics::bind).transpose()?;
        let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let feed = Feed::new(counter.clone());
        // validate() refuses listen/seeds without a secret.
        let cluster = match &settings.secret {
            Some(secret) => Some(Cluster::start(settings.clone(), &name, secret, counter.clone(), feed.clone())?),
            None => None,
        };
        let close_cluster = |e| {
            if let Some(c) = &cluster {
                c.close();
            }
            e
        };
        let flusher = Flusher::start(
            &name,
            settings.flush_mode,
            settings.flush_interval,
            counter.clone(),
            cluster.clone(),
            feed.clone(),
        )
        .map_err(close_cluster)?;
        let stats = StatsReader {
            name: name.clone(),
            counter: counter.clone(),
            flush: flusher.counters(),
            cluster: cluster.clone(),
            feed: feed.clone(),
            metrics_listen: metrics_addr,
        };
        let metrics = match metrics_listener {
            Some(l) => {
                let read = stats.clone();
                let started = metrics::Server::start(l, &name, Box::new(move || read.read()), settings.clone());
                Some(started.map_err(|e| {
                    flusher.stop();
                    close_cluster(e)
                })?)
            }
            None => None,
        };
        Ok(Node { name, counter, closed: AtomicBool::new(false), flusher, cluster, feed, stats, metrics })
    }

    fn open(&self) -> Result<&Counter> {
        if self.closed.load(Ordering::Acquire) {
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
    pub fn track(&self, topic: impl AsRef<[u8]>, conn: u64) -> Result<bool> {
        let topic = topic.as_ref();
        self.open()?.track(topic, conn)
    }

    /// See [`Counter::untrack`].
    pub fn untrack(&self, topic: impl AsRef<[u8]>, conn: u64) -> Result<bool> {
        let topic = topic.as_ref();
        self.open()?.untrack(topic, conn)
    }

    /// See [`Counter::untrack_all`].
    pub fn untrack_all(&self, conn: u64) -> Result<usize> {
        Ok(self.open()?.untrack_all(conn))
    }

    /// See [`Counter::add`].
    pub fn add(&self, topic: impl AsRef<[u8]>, delta: i64) -> Result<()> {
        let topic = topic.as_ref();
        self.open()?.add(topic, delta)
    }

    /// The cluster-wide count of `topic`: the exact local count plus the last
    /// count reported by every counted peer. Takes no global lock.
    pub fn count(&self, topic: impl AsRef<[u8]>) -> Result<u64> {
        let topic = topic.as_ref();
        let local = self.open()?.count_local(topic)?;
        Ok(match &self.cluster {
            Some(c) => local.saturating_add(c.remote_count(topic)),
            None => local,
        })
    }

    /// This node's exact count of `topic`.
    pub fn count_local(&self, topic: impl AsRef<[u8]>) -> Result<u64> {
        let topic = topic.as_ref();
        self.open()?.count_local(topic)
    }

    /// The count of `topic` with its freshness and coverage.
    pub fn count_info(&self, topic: impl AsRef<[u8]>) -> Result<TopicCount> {
        let topic = topic.as_ref();
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
    pub fn count_by_node(&self, topic: impl AsRef<[u8]>) -> Result<Vec<(String, u64)>> {
        let topic = topic.as_ref();
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

    /// Watches every topic starting with `prefix` (empty: every topic): the
    /// returned [`Watch`] is told, in coalesced batches, each time one of
    /// their cluster-wide counts changes (local changes with the flush that
    /// ships them, remote ones as their frames arrive, a peer's whole share
    /// when it goes down, is expired or comes back). With `initial`, its
    /// first batch holds every matching topic whose count is non-zero.
    /// Dropping the watch ends it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let node = headcount::Node::start(&headcount::Config::new())?;
    /// node.track("room:1", 7)?;
    /// let mut w = node.watch("room:", false)?;
    /// node.track("room:1", 8)?;
    /// node.track("lobby", 8)?;
    /// let batch = w.next_batch(Duration::from_secs(5))?; // after the next flush
    /// assert_eq!((batch[0].topic.as_slice(), batch[0].count), (&b"room:1"[..], 2));
    /// # Ok::<(), headcount::Error>(())
    /// ```
    pub fn watch(&self, prefix: impl AsRef<[u8]>, initial: bool) -> Result<Watch> {
        let prefix = self.prefix(prefix.as_ref())?;
        self.feed.watch(prefix, initial, |emit| self.for_each_count(prefix, |t, n| emit(t, n)))
    }

    /// The `k` topics starting with `prefix` with the highest cluster-wide
    /// counts, highest first, ties broken by topic bytes ascending; topics
    /// at zero are never listed. Exact, by a scan of every topic (O(topics)).
    pub fn top(&self, k: usize, prefix: impl AsRef<[u8]>) -> Result<Vec<(Vec<u8>, u64)>> {
        let prefix = self.prefix(prefix.as_ref())?;
        let mut top = Top::new(k);
        if k > 0 {
            self.for_each_count(prefix, |t, n| top.offer(t, n));
        }
        Ok(top.into_vec())
    }

    /// Checks a watch or top prefix (at most a topic long; empty is fine).
    fn prefix<'a>(&self, prefix: &'a [u8]) -> Result<&'a [u8]> {
        let max = self.open()?.max_topic_len();
        if prefix.len() > max {
            return Err(Error::InvalidArgument(format!(
                "prefix is {} bytes; topics are at most {max} bytes",
                prefix.len()
            )));
        }
        Ok(prefix)
    }

    /// Calls `f(topic, count)` for every topic starting with `prefix` whose
    /// cluster-wide count is non-zero (local topics first, then those only
    /// peers report). Counts changing meanwhile can make one topic appear
    /// in both passes.
    fn for_each_count(&self, prefix: &[u8], mut f: impl FnMut(&[u8], u64)) {
        let c = &self.counter;
        let Some(cl) = &self.cluster else {
            return c.for_each_nonzero(|t, n| {
                if t.starts_with(prefix) {
                    f(t, n)
                }
            });
        };
        c.for_each_nonzero(|t, n| {
            if t.starts_with(prefix) {
                f(t, n.saturating_add(cl.remote_count(t)))
            }
        });
        cl.for_each_remote(|t, n| {
            if t.starts_with(prefix) && c.count_local(t).unwrap_or(0) == 0 {
                f(t, n)
            }
        });
    }

    /// The listener's address (with the real port when `listen` had port 0),
    /// if this node listens.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.cluster.as_ref().and_then(|c| c.local_addr())
    }

    /// The metrics server's address (with the real port when
    /// `metrics_listen` had port 0), if it runs.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.stats.metrics_listen
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

    /// Counters and state: the node's, its flusher's, and (on a node with a
    /// `secret`) the cluster's and every peer's.
    ///
    /// ```
    /// let node = headcount::Node::start(&headcount::Config::new())?;
    /// node.track(b"room:1", 7)?;
    /// let stats = node.stats()?;
    /// assert_eq!((stats.topics, stats.tracked_pairs), (1, 1));
    /// assert!(stats.cluster.is_none() && stats.peers.is_empty());
    /// # Ok::<(), headcount::Error>(())
    /// ```
    pub fn stats(&self) -> Result<Stats> {
        self.open()?;
        Ok(self.stats.read())
    }

    /// [`Node::stats`] as one line of JSON ([`Stats::to_json`]).
    pub fn stats_json(&self) -> Result<String> {
        Ok(self.stats()?.to_json())
    }

    /// Stops the metrics server and the flusher and closes the node.
    /// Idempotent; later calls on the node return [`Error::Closed`].
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stop_metrics();
        self.flusher.stop();
        self.feed.hub().close();
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
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stop_metrics();
        self.flusher.request_stop();
        if let Some(c) = &self.cluster {
            c.abort();
        }
        self.flusher.stop();
        self.feed.hub().close();
    }
}

impl Node {
    fn stop_metrics(&self) {
        if let Some(m) = &self.metrics {
            m.stop();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.close();
    }
}

/// Reads a node's [`Stats`] from its parts: what [`Node::stats`] returns
/// and what the metrics server renders at each scrape.
#[derive(Debug, Clone)]
pub(crate) struct StatsReader {
    name: String,
    counter: Counter,
    flush: Arc<FlushCounters>,
    cluster: Option<Arc<Cluster>>,
    feed: Feed,
    metrics_listen: Option<SocketAddr>,
}

impl StatsReader {
    /// The stats now.
    pub(crate) fn read(&self) -> Stats {
        let c = &self.counter;
        let (cluster, peers) = match &self.cluster {
            Some(cl) => {
                let (s, peers) = cl.stats();
                (Some(s), peers)
            }
            None => (None, Vec::new()),
        };
        Stats {
            node: self.name.clone(),
            topics: c.topics(),
            tracked_pairs: c.pairs(),
            connections: c.connections(),
            total_local: c.total_local(),
            stripes: c.stripes(),
            flush: self.flush.load(),
            watches: self.feed.hub().watches(),
            watch_backlog: self.feed.hub().backlog(),
            cluster,
            peers,
            metrics_listen: self.metrics_listen,
        }
    }
}

/// A random 32-bit value from the standard library's per-process random
/// hash keys (no extra dependency for a name suffix).
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now()) as u32
}
