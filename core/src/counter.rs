//! [`Counter`]: the local counting core, one per node.
//!
//! It ties together the [topic table](crate::table), the [striped
//! counters](crate::stripes), the [dirty bitmap](crate::dirty), the
//! [membership registry](crate::membership) and [topic GC](crate::gc).
//!
//! Every write follows the same path, all inside one epoch pin:
//!
//! 1. find the topic's entry (lock-free), inserting it if new (short lock);
//! 2. *enter* it: check it is `LIVE`, reviving it if GC marked it `DYING`,
//!    and starting over with a fresh lookup if it is `DEAD`;
//! 3. add to the calling CPU's cell of its id (one `lock xadd`);
//! 4. mark its dirty bit (usually a plain load: the bit is already set).

use crate::dirty::Dirty;
use crate::error::Result;
use crate::gc::{self, Gc};
use crate::handle::TopicHandle;
use crate::membership::{Membership, TopicKey};
use crate::shared::Core;
use crate::stripes::Stripes;
use crate::sync::{pin, Arc, Ordering};
use crate::table::Table;
use std::time::{Duration, Instant};

/// Topics `untrack_all` takes down per epoch pin.
const UNTRACK_ALL_CHUNK: usize = 4096;

/// Default for [`CounterConfig::max_topic_len`].
pub const DEFAULT_MAX_TOPIC_LEN: usize = 1024;
/// Default for [`CounterConfig::gc_after`].
pub const DEFAULT_GC_AFTER: Duration = Duration::from_secs(60);

/// Settings of a [`Counter`].
#[derive(Debug, Clone)]
pub struct CounterConfig {
    /// Longest topic name accepted, in bytes (default 1024).
    pub max_topic_len: usize,
    /// How long a topic must sit at zero before GC removes it (default 60 s).
    pub gc_after: Duration,
    /// Stripe count; `None` sizes for every CPU of the machine.
    pub stripes: Option<usize>,
}

impl Default for CounterConfig {
    fn default() -> Self {
        Self { max_topic_len: DEFAULT_MAX_TOPIC_LEN, gc_after: DEFAULT_GC_AFTER, stripes: None }
    }
}

/// The exact local count of users per topic on this node.
///
/// Cheap to clone (an `Arc`), `Send + Sync`; every method takes `&self` and
/// may be called from any number of threads at once.
///
/// ```
/// use headcount::Counter;
/// let counter = Counter::new();
/// assert!(counter.track(b"room:1", 42).unwrap());   // conn 42 joins
/// assert!(!counter.track(b"room:1", 42).unwrap());  // not counted twice
/// counter.track(b"room:2", 42).unwrap();
/// assert_eq!(counter.count_local(b"room:1").unwrap(), 1);
/// assert_eq!(counter.untrack_all(42), 2);            // conn 42 disconnects
/// assert_eq!(counter.total_local(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct Counter {
    pub(crate) core: Arc<Core>,
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

impl Counter {
    /// A counter with default settings.
    pub fn new() -> Self {
        Self::with_config(CounterConfig::default())
    }

    /// A counter with the given settings.
    pub fn with_config(config: CounterConfig) -> Self {
        let stripes = match config.stripes {
            Some(n) => Stripes::new(n),
            None => Stripes::for_this_machine(),
        };
        let shards = stripes.len() * 16;
        Self {
            core: Arc::new(Core {
                table: Table::new(),
                stripes,
                dirty: Dirty::new(),
                members: Membership::new(shards),
                gc: Gc::new(config.gc_after),
                max_topic_len: config.max_topic_len,
            }),
        }
    }

    /// Adds connection `conn` to `topic`. Returns `true` if it was not
    /// already there (only then is the count incremented).
    pub fn track(&self, topic: impl AsRef<[u8]>, conn: u64) -> Result<bool> {
        let topic = topic.as_ref();
        let core = &*self.core;
        core.write(topic, |entry| {
            let key = TopicKey { id: entry.id, gen: entry.gen };
            core.members.insert(conn, key, || core.add_to(entry.id, 1))
        })
    }

    /// Removes connection `conn` from `topic`. Returns `false` (and changes
    /// nothing) if it was not there.
    pub fn untrack(&self, topic: impl AsRef<[u8]>, conn: u64) -> Result<bool> {
        let topic = topic.as_ref();
        let core = &*self.core;
        core.check_topic(topic)?;
        let guard = pin();
        let hash = core.table.hash(topic);
        loop {
            let Some(entry) = core.table.find(topic, hash, &guard) else { return Ok(false) };
            if !core.enter(entry) {
                continue;
            }
            let key = TopicKey { id: entry.id, gen: entry.gen };
            return Ok(core.members.remove(conn, key, || core.add_to(entry.id, -1)));
        }
    }

    /// Removes connection `conn` from every topic it is in (the "connection
    /// went away" case). Returns how many topics that was.
    ///
    /// The connection's memberships go at once; its counts are then taken
    /// down topic by topic, without holding anything other connections
    /// wait on, so a connection in millions of topics blocks only its own
    /// caller. Until the call returns, a `count` may still include `conn`
    /// in some of its topics, and a `track` of `conn` made meanwhile is a
    /// new membership (counted once, as it should be, when the call ends).
    pub fn untrack_all(&self, conn: u64) -> usize {
        let core = &*self.core;
        let mut keys = core.members.remove_all(conn).peekable();
        let mut removed = 0;
        while keys.peek().is_some() {
            // Pinned per chunk: one pin for all of a huge connection would
            // hold back every GC grace period (and so memory reuse) as long.
            let guard = pin();
            for key in keys.by_ref().take(UNTRACK_ALL_CHUNK) {
                match core.table.by_id(key.id, &guard) {
                    Some(entry) if entry.gen == key.gen && core.enter(entry) => {
                        core.add_to(key.id, -1);
                        removed += 1;
                    }
                    // The topic was collected after a raw `add` drove it to
                    // zero under this member: nothing left to subtract.
                    _ => {}
                }
            }
        }
        removed
    }

    /// Adds `delta` to `topic`'s count without membership: for callers that
    /// keep membership themselves. Counts are never reported below zero, but
    /// a negative total stays negative internally until enough is added back.
    pub fn add(&self, topic: impl AsRef<[u8]>, delta: i64) -> Result<()> {
        let topic = topic.as_ref();
        let core = &*self.core;
        core.write(topic, |entry| core.add_to(entry.id, delta))
    }

    /// Resolves `topic` once, for counting by handle on hot paths. The topic
    /// is never garbage-collected while a handle to it exists.
    pub fn topic(&self, topic: impl AsRef<[u8]>) -> Result<TopicHandle> {
        let topic = topic.as_ref();
        let core = &*self.core;
        core.write(topic, |entry| {
            entry.handles.fetch_add(1, Ordering::Relaxed);
            TopicHandle::new(self.core.clone(), entry)
        })
    }

    /// The exact number of local members of `topic` (0 if unknown).
    pub fn count_local(&self, topic: impl AsRef<[u8]>) -> Result<u64> {
        let topic = topic.as_ref();
        let core = &*self.core;
        core.check_topic(topic)?;
        let guard = pin();
        Ok(core.table.find(topic, core.table.hash(topic), &guard).map_or(0, |e| core.count(e.id)))
    }

    /// The exact local count of the topic with id `id`, from
    /// [`Counter::drain_ids`]: no table lookup.
    pub(crate) fn count_of_id(&self, id: u32) -> u64 {
        self.core.count(id)
    }

    /// The sum of all local counts. Costs O(topics x stripes).
    pub fn total_local(&self) -> u64 {
        let core = &*self.core;
        let guard = pin();
        (0..core.table.high_water()).filter(|&id| core.table.by_id(id, &guard).is_some()).map(|id| core.count(id)).sum()
    }

    /// Calls `f(topic, count)` for every topic whose local count is non-zero.
    pub fn for_each_nonzero(&self, f: impl FnMut(&[u8], u64)) {
        self.for_each_nonzero_in(0..self.id_high_water(), f);
    }

    /// One past the highest topic id ever handed out: the end of the id
    /// range [`Counter::for_each_nonzero_in`] needs to cover every topic
    /// that exists now.
    pub(crate) fn id_high_water(&self) -> u32 {
        self.core.table.high_water()
    }

    /// [`Counter::for_each_nonzero`] over the topics with ids in `ids` only,
    /// so that a caller can read a large counter in bounded pieces (a
    /// snapshot for a peer, with heartbeats in between).
    pub(crate) fn for_each_nonzero_in(&self, ids: std::ops::Range<u32>, mut f: impl FnMut(&[u8], u64)) {
        let core = &*self.core;
        let guard = pin();
        for id in ids.start..ids.end.min(core.table.high_water()) {
            if let Some(entry) = core.table.by_id(id, &guard) {
                let n = core.count(id);
                if n > 0 {
                    f(&entry.name, n);
                }
            }
        }
    }

    /// Calls `f(topic, count)` once for every topic written since the last
    /// drain, with its exact local count now (possibly 0). Costs O(changed
    /// topics). Meant for one flusher thread: concurrent drains are
    /// serialised. Also feeds topic GC its list of topics at zero.
    pub fn drain(&self, now: Instant, mut f: impl FnMut(&[u8], u64)) -> usize {
        self.drain_ids(now, |name, _, n| f(name, n))
    }

    /// [`Counter::drain`], with each topic's id: valid for
    /// [`Counter::count_of_id`] until the next [`Counter::collect_garbage`]
    /// (only GC recycles ids).
    pub(crate) fn drain_ids(&self, now: Instant, mut f: impl FnMut(&[u8], u32, u64)) -> usize {
        let core = &*self.core;
        let mut zeros = core.gc.lock_zeros();
        let guard = pin();
        let mut changed = 0;
        core.dirty.drain(self.segments(), |id| {
            let Some(entry) = core.table.by_id(id, &guard) else { return };
            let n = core.count(id);
            zeros.observe(TopicKey { id, gen: entry.gen }, n, now);
            f(&entry.name, id, n);
            changed += 1;
        });
        changed
    }

    /// The segments topics have been created in.
    fn segments(&self) -> usize {
        (self.core.table.high_water() as usize).div_ceil(crate::segvec::SEGMENT_LEN)
    }

    /// Whether a topic changed since the last drain (what the flusher
    /// checks once armed to sleep, see `wake.rs`).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn has_changes(&self) -> bool {
        self.core.dirty.any(self.segments())
    }

    /// The flusher's sleep, which the first change ends (`wake.rs`).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn wake(&self) -> &crate::wake::Wake {
        &self.core.dirty.wake
    }

    /// Runs one step of topic GC (see `docs/ARCHITECTURE.md`, "topic GC"): topics at zero for
    /// `gc_after` start dying; topics that died a grace period ago are
    /// removed and their ids recycled. Returns how many topics were removed.
    /// The flusher calls it after each drain.
    pub fn collect_garbage(&self, now: Instant) -> usize {
        self.core.gc.collect(gc::Parts { table: &self.core.table, stripes: &self.core.stripes }, now)
    }

    /// Topics currently known (including those at zero not yet collected).
    pub fn topics(&self) -> usize {
        self.core.table.len()
    }

    /// Tracked (connection, topic) pairs.
    pub fn pairs(&self) -> usize {
        self.core.members.pairs()
    }

    /// Connections tracked in at least one topic.
    pub fn connections(&self) -> usize {
        self.core.members.connections()
    }

    /// The longest topic accepted, in bytes.
    pub fn max_topic_len(&self) -> usize {
        self.core.max_topic_len
    }

    /// Number of counter stripes.
    pub fn stripes(&self) -> usize {
        self.core.stripes.len()
    }
}

#[cfg(all(test, not(loom)))]
mod wake_tests {
    //! Who wakes the flusher when (`wake.rs`), seen through the counter.
    use super::Counter;
    use std::time::Instant;

    #[test]
    fn the_first_change_of_a_clean_topic_notifies_a_later_one_does_not() {
        let c = Counter::new();
        c.add(b"t", 1).unwrap();
        c.drain(Instant::now(), |_, _| {});
        c.wake().arm();
        c.add(b"t", 1).unwrap();
        assert!(!c.wake().is_armed(), "the first change after a drain did not notify");
        // Its bit is still set: the next write costs no notify.
        c.wake().arm();
        c.add(b"t", 1).unwrap();
        assert!(c.wake().is_armed(), "a write to a dirty topic notified");
    }

    /// A new topic is born dirty; a flusher woken by that birth would ship
    /// the topic's 0 and the first add only an interval later. The notify
    /// must come after the first write.
    #[test]
    fn a_new_topic_notifies_only_once_its_first_write_is_in() {
        let c = Counter::new();
        let core = &*c.core;
        c.wake().arm();
        let armed_during_write = core.write(b"new", |e| {
            let armed = c.wake().is_armed();
            core.add_to(e.id, 1);
            armed
        });
        assert!(armed_during_write.unwrap(), "the flusher was woken before the new topic's first write");
        assert!(!c.wake().is_armed(), "nobody woke the flusher for the new topic");
        let mut shipped = Vec::new();
        c.drain(Instant::now(), |t, n| shipped.push((t.to_vec(), n)));
        assert_eq!(shipped, [(b"new".to_vec(), 1)]);
    }
}
