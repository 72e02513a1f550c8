//! The flush policy: when a node flushes, and what one flush does. This is
//! the only place local changes leave the node.
//!
//! # When: [`Schedule`]
//!
//! Fixed-rate: one flush every `flush_interval_ms`, the first one interval
//! after the start. A flush that ends past the next deadline does not cause a
//! burst of catch-up flushes: the next one is due one interval after it ends.
//! [`Schedule`] is a pure value (time is passed in, like `Conn`'s), so its
//! tests use made-up instants; a different policy (an adaptive one that
//! ships the first change after a quiet period at once) replaces this type
//! and its use in [`Flusher::run`], nothing else.
//!
//! # What: [`Flush::run`]
//!
//! In this order, on the flusher thread:
//!
//! | step | what | where the work is |
//! |------|------|-------------------|
//! | drain | every dirty topic once, with its absolute count | `Counter::drain` |
//! | distribute | the same changes into every peer's outbox (which coalesces) | `Cluster::distribute`, `Link::enqueue` |
//! | publish | the same changes to the matching watches (nothing without watches) | `Feed::changed` ([`crate::watch`]) |
//! | housekeeping | expire down peers past their grace, forget long-gone ones | `Cluster::housekeeping` |
//! | GC | collect topics at zero for `gc_after_ms` | `Counter::collect_garbage` |
//! | stats | count the flush, its duration (into the fixed buckets of [`FlushDurations`]), topics drained and collected | [`FlushCounters`] |
//!
//! A flush never writes to a socket: each peer's writer thread sends its
//! outbox when it has one (`cluster/writer.rs`), so a slow peer delays
//! nobody's flush. Chunking into frames is the connection's
//! (`Conn::send_delta`).

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cluster::conn::Topic;
use crate::cluster::runtime::Cluster;
use crate::counter::Counter;
use crate::error::Result;
use crate::stats::{FlushDurations, FlushStats};
use crate::sync::{Arc, AtomicBool, AtomicU64, Condvar, Mutex, Ordering};
use crate::watch::Feed;

/// When flushes are due (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    interval: Duration,
    next: Instant,
}

impl Schedule {
    /// A schedule whose first flush is due one `interval` after `now`.
    pub(crate) fn new(interval: Duration, now: Instant) -> Schedule {
        Schedule { interval, next: now + interval }
    }

    /// When the next flush is due.
    pub(crate) fn deadline(&self) -> Instant {
        self.next
    }

    /// Records a flush that ended at `now`: the next is due one interval
    /// after the last deadline, or one interval after `now` if that is
    /// already past.
    pub(crate) fn flushed(&mut self, now: Instant) {
        self.next += self.interval;
        if self.next < now {
            self.next = now + self.interval;
        }
    }
}

/// The flusher's running totals, read by [`crate::Node::stats`]. Written by
/// the flusher thread alone, read by anyone: plain relaxed atomics (a reader
/// may see one flush half recorded, never a torn value). The number of
/// flushes is the sum of the duration buckets.
#[derive(Debug, Default)]
pub(crate) struct FlushCounters {
    /// Flushes per duration bucket ([`FlushDurations::BOUNDS_US`]).
    buckets: [AtomicU64; FlushDurations::BUCKETS],
    nanos_total: AtomicU64,
    nanos_max: AtomicU64,
    topics_drained: AtomicU64,
    topics_collected: AtomicU64,
}

impl FlushCounters {
    fn record(&self, took: Duration, drained: usize, collected: usize) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[FlushDurations::bucket_of(took)].fetch_add(1, Ordering::Relaxed);
        self.nanos_total.fetch_add(took, Ordering::Relaxed);
        self.nanos_max.fetch_max(took, Ordering::Relaxed);
        self.topics_drained.fetch_add(drained as u64, Ordering::Relaxed);
        self.topics_collected.fetch_add(collected as u64, Ordering::Relaxed);
    }

    /// The totals now.
    pub(crate) fn load(&self) -> FlushStats {
        let durations = FlushDurations {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_ns: self.nanos_total.load(Ordering::Relaxed),
        };
        let flushes = durations.count();
        FlushStats {
            flushes,
            flush_us_avg: durations.sum_ns / flushes.max(1) / 1000,
            flush_us_max: self.nanos_max.load(Ordering::Relaxed) / 1000,
            topics_drained: self.topics_drained.load(Ordering::Relaxed),
            topics_collected: self.topics_collected.load(Ordering::Relaxed),
            durations,
        }
    }
}

/// What one flush does (see the module docs), with the buffer it reuses.
#[derive(Debug)]
struct Flush {
    counter: Counter,
    cluster: Option<Arc<Cluster>>,
    feed: Feed,
    changes: Vec<(Topic, u64)>,
    /// The id of each of `changes`, for the feed.
    ids: Vec<u32>,
    counters: Arc<FlushCounters>,
}

impl Flush {
    /// One flush, started at `start`.
    fn run(&mut self, start: Instant) {
        // Collected even on a local-only node: the feed decides only after
        // the drain whether anyone watches (see `watch::hub` for why).
        let drained = self.counter.drain_ids(start, |t, id, n| {
            self.changes.push((t.into(), n));
            self.ids.push(id);
        });
        if let Some(c) = &self.cluster {
            // One drain, one delta per peer: each peer's outbox coalesces.
            c.distribute(&self.changes);
        }
        let remote = |t: &[u8]| self.cluster.as_ref().map_or(0, |c| c.remote_count(t));
        self.feed.flushed(self.changes.iter().map(|(t, _)| t).zip(self.ids.iter().copied()), remote);
        self.changes.clear();
        self.ids.clear();
        if self.changes.capacity() > 1 << 16 {
            (self.changes, self.ids) = (Vec::new(), Vec::new());
        }
        if let Some(c) = &self.cluster {
            c.housekeeping();
        }
        let collected = self.counter.collect_garbage(start);
        self.counters.record(start.elapsed(), drained, collected);
    }
}

/// Stop request and wake-up for the flusher thread.
#[derive(Debug, Default)]
struct Signal {
    stop: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Signal {
    /// Waits until `deadline` or a stop request; `false` on a stop.
    fn wait_until(&self, deadline: Instant) -> bool {
        let mut g = self.lock.lock();
        while !self.stop.load(Ordering::Acquire) && Instant::now() < deadline {
            self.wake.wait_until(&mut g, deadline);
        }
        !self.stop.load(Ordering::Acquire)
    }
}

/// A node's flusher thread: [`Schedule`] decides when, [`Flush`] does it.
#[derive(Debug)]
pub(crate) struct Flusher {
    signal: Arc<Signal>,
    counters: Arc<FlushCounters>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Flusher {
    /// Starts the flusher thread of node `name`.
    pub(crate) fn start(
        name: &str,
        interval: Duration,
        counter: Counter,
        cluster: Option<Arc<Cluster>>,
        feed: Feed,
    ) -> Result<Flusher> {
        let signal = Arc::new(Signal::default());
        let counters = Arc::new(FlushCounters::default());
        let flush = Flush { counter, cluster, feed, changes: Vec::new(), ids: Vec::new(), counters: counters.clone() };
        let schedule = Schedule::new(interval, Instant::now());
        let s = signal.clone();
        let thread = std::thread::Builder::new()
            .name(format!("headcount-flush-{name}"))
            .spawn(move || Flusher::run(schedule, flush, &s))?;
        Ok(Flusher { signal, counters, thread: Mutex::new(Some(thread)) })
    }

    fn run(mut schedule: Schedule, mut flush: Flush, signal: &Signal) {
        while signal.wait_until(schedule.deadline()) {
            flush.run(Instant::now());
            schedule.flushed(Instant::now());
        }
    }

    /// The flusher's running totals (what [`crate::Node::stats`] and the
    /// metrics server read).
    pub(crate) fn counters(&self) -> Arc<FlushCounters> {
        self.counters.clone()
    }

    /// Asks the thread to stop after the flush it may be starting or
    /// running; does not wait.
    pub(crate) fn request_stop(&self) {
        let _g = self.signal.lock.lock();
        self.signal.stop.store(true, Ordering::Release);
        self.signal.wake.notify_all();
    }

    /// Stops the thread and waits for it. Idempotent.
    pub(crate) fn stop(&self) {
        self.request_stop();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_are_one_interval_apart_from_the_start() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Schedule::new(ms(100), t0);
        assert_eq!(s.deadline(), t0 + ms(100));
        // A flush that ends early or a little late keeps the fixed rate.
        s.flushed(t0 + ms(103));
        assert_eq!(s.deadline(), t0 + ms(200));
        s.flushed(t0 + ms(250));
        assert_eq!(s.deadline(), t0 + ms(300));
    }

    #[test]
    fn a_late_flush_does_not_cause_a_burst() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Schedule::new(ms(100), t0);
        // The flush due at 100 ended at 450: the next is due at 550, not at
        // 200, 300 and 400 in a row.
        s.flushed(t0 + ms(450));
        assert_eq!(s.deadline(), t0 + ms(550));
    }

    #[test]
    fn each_flush_is_counted_in_its_duration_bucket() {
        let c = FlushCounters::default();
        c.record(Duration::from_micros(30), 3, 0);
        c.record(Duration::from_micros(50), 0, 1);
        c.record(Duration::from_secs(2), 0, 0);
        let s = c.load();
        let mut buckets = [0; FlushDurations::BUCKETS];
        (buckets[2], buckets[FlushDurations::BUCKETS - 1]) = (2, 1);
        assert_eq!(s.durations.buckets, buckets);
        assert_eq!(s.durations.sum_ns, 2_000_080_000);
        assert_eq!((s.flushes, s.flush_us_avg, s.flush_us_max), (3, 666_693, 2_000_000));
        assert_eq!((s.topics_drained, s.topics_collected), (3, 1));
    }

    #[test]
    fn a_local_flush_drains_collects_and_counts() {
        let counter = Counter::with_config(crate::CounterConfig { gc_after: Duration::ZERO, ..Default::default() });
        let counters = Arc::new(FlushCounters::default());
        let feed = Feed::new(counter.clone());
        let mut f = Flush {
            counter: counter.clone(),
            cluster: None,
            feed,
            changes: Vec::new(),
            ids: Vec::new(),
            counters: counters.clone(),
        };
        counter.add(b"a", 1).unwrap();
        counter.add(b"b", 1).unwrap();
        counter.add(b"b", -1).unwrap();
        f.run(Instant::now());
        let s = counters.load();
        assert_eq!((s.flushes, s.topics_drained), (1, 2));
        assert_eq!(s.durations.count(), 1);
        assert_eq!(s.durations.sum_ns / 1000 / s.flushes, s.flush_us_avg);
        // "b" is at zero and gc_after is 0: GC removes it within a few
        // flushes (it waits for epoch grace periods).
        let deadline = Instant::now() + Duration::from_secs(5);
        while counters.load().topics_collected == 0 {
            assert!(Instant::now() < deadline, "GC did not collect \"b\"");
            std::thread::sleep(Duration::from_millis(1));
            f.run(Instant::now());
        }
        let s = counters.load();
        assert_eq!((s.topics_drained, s.topics_collected), (2, 1));
        assert_eq!(counter.topics(), 1);
    }
}
