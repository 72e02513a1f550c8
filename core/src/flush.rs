//! The flush policy: when a node flushes, and what one flush does. This is
//! the only place local changes leave the node.
//!
//! # When: [`Schedule`]
//!
//! Two modes (`flush_mode`):
//!
//! * **fixed**: one flush every `flush_interval_ms`, the first one interval
//!   after the start. A flush that ends past the next deadline does not
//!   cause a burst of catch-up flushes: the next one is due one interval
//!   after it ends.
//! * **adaptive** (the default): a flush that ships changes starts at least
//!   one interval after the previous one that did (the trailing edge, so
//!   under load frames and bytes are those of fixed mode), and as soon as
//!   that allows once a change is pending: the first change after a quiet
//!   interval is shipped at once (the leading edge). With nothing pending,
//!   a flush still runs one interval after the last (housekeeping and GC
//!   keep fixed mode's pace). The flusher sleeps armed ([`crate::wake::Wake`]), so the
//!   first change wakes it; `Dirty::mark` notifies.
//!
//! [`Schedule`] is a pure value (time and "a change is pending" are passed
//! in, like `Conn`'s), so its tests use made-up instants.
//!
//! # What: [`Flush::run`]
//!
//! In this order, on the flusher thread:
//!
//! | step | what | where the work is |
//! |------|------|-------------------|
//! | drain | every dirty topic once, with its absolute count | `Counter::drain` |
//! | distribute | the same changes into every peer's outbox (which coalesces) | `Cluster::distribute`, `Link::enqueue` |
//! | publish | the same changes to the matching watches (nothing without watches) | `Feed::flushed` ([`crate::watch`]): counts read by id, before GC can recycle one |
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
use crate::config::FlushMode;
use crate::counter::Counter;
use crate::error::Result;
use crate::stats::{FlushDurations, FlushStats};
use crate::sync::{Arc, AtomicBool, AtomicU64, Mutex, Ordering};
use crate::watch::Feed;

/// When flushes are due (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    mode: FlushMode,
    interval: Duration,
    /// When the next flush is due with nothing pending (every flush, in
    /// fixed mode).
    next: Instant,
    /// Adaptive: the earliest a flush may ship changes.
    ship_at: Instant,
}

impl Schedule {
    /// A schedule started at `now`: a fixed one's first flush is due one
    /// `interval` later; an adaptive one ships a first change at once.
    pub(crate) fn new(mode: FlushMode, interval: Duration, now: Instant) -> Schedule {
        Schedule { mode, interval, next: now + interval, ship_at: now }
    }

    /// Whether the flusher should sleep armed, woken by the first change.
    pub(crate) fn wakes_on_change(&self) -> bool {
        self.mode == FlushMode::Adaptive
    }

    /// When the next flush is due, `pending` saying whether a change waits
    /// to be shipped (fixed mode ignores it).
    pub(crate) fn deadline(&self, pending: bool) -> Instant {
        match self.mode {
            FlushMode::Adaptive if pending => self.ship_at,
            _ => self.next,
        }
    }

    /// Records a flush that started at `start` and ended at `end`,
    /// `shipped` saying whether it drained any change. Fixed: the next is
    /// due one interval after the last deadline; adaptive: one interval
    /// after `start`; both one interval after `end` if that is already
    /// past. An adaptive flush that shipped also holds the next shipment
    /// back until then.
    pub(crate) fn flushed(&mut self, start: Instant, end: Instant, shipped: bool) {
        let base = match self.mode {
            FlushMode::Fixed => self.next,
            _ => start,
        };
        self.next = base + self.interval;
        if self.next < end {
            self.next = end + self.interval;
        }
        if shipped {
            self.ship_at = self.next;
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
    /// One flush, started at `start`; returns how many topics it drained.
    fn run(&mut self, start: Instant) -> usize {
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
        drained
    }
}

/// Stop request for the flusher thread; it sleeps on its counter's [`crate::wake::Wake`].
#[derive(Debug)]
struct Signal {
    stop: AtomicBool,
    counter: Counter,
}

impl Signal {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps until `deadline`, a stop request or (`armed`) the first
    /// change; may return early.
    fn sleep_until(&self, deadline: Instant, armed: bool) {
        let wake = self.counter.wake();
        if armed {
            wake.sleep_until(deadline, || self.stopped() || self.counter.has_changes());
        } else if !self.stopped() {
            wake.rest_until(deadline);
        }
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
        mode: FlushMode,
        interval: Duration,
        counter: Counter,
        cluster: Option<Arc<Cluster>>,
        feed: Feed,
    ) -> Result<Flusher> {
        let signal = Arc::new(Signal { stop: AtomicBool::new(false), counter: counter.clone() });
        let counters = Arc::new(FlushCounters::default());
        let flush = Flush { counter, cluster, feed, changes: Vec::new(), ids: Vec::new(), counters: counters.clone() };
        let schedule = Schedule::new(mode, interval, Instant::now());
        let s = signal.clone();
        let thread = std::thread::Builder::new()
            .name(format!("headcount-flush-{name}"))
            .spawn(move || Flusher::run(schedule, flush, &s))?;
        Ok(Flusher { signal, counters, thread: Mutex::new(Some(thread)) })
    }

    fn run(mut schedule: Schedule, mut flush: Flush, signal: &Signal) {
        // Registered before the first check of `stop`, so a stop request
        // either is seen or unparks this thread.
        signal.counter.wake().register();
        let armed = schedule.wakes_on_change();
        while !signal.stopped() {
            let pending = armed && signal.counter.has_changes();
            let deadline = schedule.deadline(pending);
            if Instant::now() < deadline {
                signal.sleep_until(deadline, armed && !pending);
                continue;
            }
            let start = Instant::now();
            let drained = flush.run(start);
            schedule.flushed(start, Instant::now(), drained > 0);
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
        self.signal.stop.store(true, Ordering::SeqCst);
        self.signal.counter.wake().wake_up();
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

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn fixed(t0: Instant) -> Schedule {
        Schedule::new(FlushMode::Fixed, MS(100), t0)
    }

    fn adaptive(t0: Instant) -> Schedule {
        Schedule::new(FlushMode::Adaptive, MS(100), t0)
    }

    #[test]
    fn fixed_flushes_are_one_interval_apart_from_the_start_changes_or_not() {
        let t0 = Instant::now();
        let mut s = fixed(t0);
        assert!(!s.wakes_on_change());
        assert_eq!((s.deadline(false), s.deadline(true)), (t0 + MS(100), t0 + MS(100)));
        // A flush that ends early or a little late keeps the fixed rate.
        s.flushed(t0 + MS(100), t0 + MS(103), true);
        assert_eq!(s.deadline(true), t0 + MS(200));
        s.flushed(t0 + MS(249), t0 + MS(250), false);
        assert_eq!(s.deadline(true), t0 + MS(300));
    }

    #[test]
    fn a_late_fixed_flush_does_not_cause_a_burst() {
        let t0 = Instant::now();
        let mut s = fixed(t0);
        // The flush due at 100 ended at 450: the next is due at 550, not at
        // 200, 300 and 400 in a row.
        s.flushed(t0 + MS(100), t0 + MS(450), true);
        assert_eq!(s.deadline(true), t0 + MS(550));
    }

    #[test]
    fn adaptive_ships_a_change_after_a_quiet_interval_at_once() {
        let t0 = Instant::now();
        let mut s = adaptive(t0);
        assert!(s.wakes_on_change());
        // Nothing pending: housekeeping one interval after the start; a
        // first change may ship at once.
        assert_eq!(s.deadline(false), t0 + MS(100));
        assert!(s.deadline(true) <= t0);
        // A housekeeping flush that drained nothing does not hold back the
        // next change.
        s.flushed(t0 + MS(100), t0 + MS(101), false);
        assert_eq!(s.deadline(false), t0 + MS(200));
        assert!(s.deadline(true) <= t0 + MS(130), "a change at 130 waits");
        // A lone change at 130 shipped at once; the next housekeeping is an
        // interval after that flush.
        s.flushed(t0 + MS(130), t0 + MS(131), true);
        assert_eq!(s.deadline(false), t0 + MS(230));
        // A change at 500, after a quiet interval, goes at once too.
        s.flushed(t0 + MS(230), t0 + MS(231), false);
        s.flushed(t0 + MS(330), t0 + MS(331), false);
        assert!(s.deadline(true) <= t0 + MS(500));
    }

    #[test]
    fn adaptive_ships_at_most_once_per_interval_under_load() {
        let t0 = Instant::now();
        let mut s = adaptive(t0);
        // The first change of a burst at 10 goes at once; every later one
        // waits for the trailing edge, one interval after the last shipment.
        let mut start = t0 + MS(10);
        for _ in 0..5 {
            assert!(s.deadline(true) <= start);
            s.flushed(start, start + MS(2), true);
            assert_eq!(s.deadline(true), start + MS(100));
            start += MS(100);
        }
        // A shipment that took longer than an interval: the next one is an
        // interval after it ended, not at once.
        s.flushed(start, start + MS(150), true);
        assert_eq!(s.deadline(true), start + MS(250));
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
