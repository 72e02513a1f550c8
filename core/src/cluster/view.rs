//! The remote view: for every peer, the last count it reported per topic.
//!
//! Reads (`count`, `total`, `count_info`) take no global lock. Two structures
//! hold the same facts, one shaped for reads and one for writes:
//!
//! ```text
//!  index:  64 shards of RwLock<HashMap<topic, [(slot, count)]>>   read by count(topic)
//!  slots:  [Slot; MAX_SLOTS], one per known peer node:
//!            counted (AtomicBool)  is this peer summed into counts now?
//!            sum     (AtomicU64)   sum of its counts (for total())
//!            last_rx (AtomicU64)   when we last heard from it (freshness)
//!            data    Mutex<{ owner link, topic -> count }>  writers only
//! ```
//!
//! A `count(topic)` locks one shard for reading, and adds the counts of the
//! slots whose `counted` flag is set, checked *while the shard lock is held*:
//! a slot is only released for reuse after all its index entries were removed
//! (which needs the shard's write lock), so an entry seen under the read lock
//! belongs to the slot's current peer.
//!
//! Writers (one connection reader thread per peer, plus housekeeping) take the
//! slot's `data` mutex, then shard write locks one shard at a time (the
//! changes of a frame grouped by shard, a bounded batch per hold). `data`
//! also names the connection (`owner`) allowed to write: when a peer's
//! connection is replaced, late frames from the old one are ignored.
//!
//! Every method that changes what `count` returns (a frame applied, a slot
//! counted or cleared) ends with one call to [`View::changed`], which hands
//! the topics it touched to the change feed ([`crate::watch`]) after the
//! change is visible; without watches that costs one atomic operation.

use std::collections::HashMap;
use std::hash::BuildHasher;

use smallvec::SmallVec;

use crate::sync::SharedBytes as Topic;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Mutex, Ordering, RandomState, RwLock};
use crate::watch::Feed;

/// Most peer nodes one node keeps state for (a few under loom, where every
/// slot's atomics and lock are modelled).
pub(crate) const MAX_SLOTS: usize = if cfg!(loom) { 4 } else { 1024 };
const SHARDS: usize = if cfg!(loom) { 2 } else { 64 };

type Hasher = foldhash::fast::FixedState;
type Reporters = SmallVec<[(u16, u64); 4]>;
/// One shard of the index: topic -> (slot, count) of every reporting slot.
type Index = HashMap<Topic, Reporters, RandomState>;
/// Index updates done under one hold of a shard's write lock, at most.
const INDEX_BATCH: usize = 4096;

/// One peer's last report of a topic.
#[derive(Debug, Clone, Copy)]
struct Reported {
    count: u64,
    /// The snapshot (`SlotData::epoch`) that last set it.
    epoch: u32,
}

#[derive(Debug, Default)]
struct SlotData {
    owner: u64,
    counts: HashMap<Topic, Reported, RandomState>,
    /// The exact sum of `counts` (2^24 topics of at most 2^64 - 1 cannot
    /// pass 2^88); `Slot::sum` publishes it saturated to `u64`.
    sum: u128,
    /// Number of the latest snapshot started (wraps; only equality matters).
    epoch: u32,
}

impl SlotData {
    /// The sum as readers see it: saturated, so never below any one count.
    fn published_sum(&self) -> u64 {
        u64::try_from(self.sum).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, Default)]
struct Slot {
    counted: AtomicBool,
    sum: AtomicU64,
    last_rx_ms: AtomicU64,
    data: Mutex<SlotData>,
}

/// What the remote view contributes to one topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RemoteCount {
    /// Sum of the counted peers' last reports.
    pub(crate) count: u64,
    /// Counted peers.
    pub(crate) reporting: u32,
    /// Largest `now - last_rx` over counted peers.
    pub(crate) oldest_age_ms: u64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct View {
    shards: Box<[RwLock<Index>]>,
    hasher: Hasher,
    slots: Box<[Slot]>,
    high_water: AtomicUsize,
    known: AtomicU32,
    feed: Option<Feed>,
}

impl View {
    /// A view that publishes its changes to `feed` (if any).
    pub(crate) fn with_feed(feed: Option<Feed>) -> View {
        View {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::default())).collect(),
            hasher: Hasher::with_seed(0x5eed),
            slots: (0..MAX_SLOTS).map(|_| Slot::default()).collect(),
            high_water: AtomicUsize::new(0),
            known: AtomicU32::new(0),
            feed,
        }
    }

    /// Publishes `topics`, whose counts may have changed, to the change feed.
    fn changed<'a>(&self, topics: impl IntoIterator<Item = &'a Topic>) {
        if let Some(f) = &self.feed {
            f.changed(topics, |t| self.count_only(t));
        }
    }

    fn shard_of(&self, topic: &[u8]) -> usize {
        (self.hasher.hash_one(topic) as usize) % SHARDS
    }

    fn shard(&self, topic: &[u8]) -> &RwLock<Index> {
        &self.shards[self.shard_of(topic)]
    }

    fn slot(&self, slot: u16) -> &Slot {
        &self.slots[usize::from(slot) % MAX_SLOTS]
    }

    /// Notes that `slot` is in use (extends the range reads scan).
    pub(crate) fn activate(&self, slot: u16) {
        self.high_water.fetch_max(usize::from(slot) + 1, Ordering::AcqRel);
    }

    /// Sets the number of peers known (up, syncing or within grace).
    pub(crate) fn set_known(&self, n: u32) {
        self.known.store(n, Ordering::Release);
    }

    pub(crate) fn known(&self) -> u32 {
        self.known.load(Ordering::Acquire)
    }

    /// Whether `slot`'s counts are summed.
    pub(crate) fn set_counted(&self, slot: u16, counted: bool) {
        let s = self.slot(slot);
        if s.counted.swap(counted, Ordering::AcqRel) != counted && self.feed.is_some() {
            let topics: Vec<Topic> = s.data.lock().counts.keys().cloned().collect();
            self.changed(&topics);
        }
    }

    pub(crate) fn is_counted(&self, slot: u16) -> bool {
        self.slot(slot).counted.load(Ordering::Acquire)
    }

    pub(crate) fn touch(&self, slot: u16, now_ms: u64) {
        self.slot(slot).last_rx_ms.fetch_max(now_ms, Ordering::AcqRel);
    }

    /// Makes `link` the only connection allowed to write `slot`.
    pub(crate) fn set_owner(&self, slot: u16, link: u64) {
        self.slot(slot).data.lock().owner = link;
    }

    /// Writes `slot`'s new counts of `changed` topics into the index, in
    /// order, taking each shard's write lock once per batch of
    /// [`INDEX_BATCH`] (bounds how long a reader of a shard waits). The
    /// topics move into the index; returns them for the change feed if
    /// there is one (else nothing, and no copy).
    fn set_index(&self, slot: u16, mut changed: Vec<(usize, Topic, u64)>) -> Vec<Topic> {
        let mut feed = Vec::new();
        if self.feed.is_some() {
            feed.extend(changed.iter().map(|c| c.1.clone()));
        }
        for batch in changed.chunks_mut(INDEX_BATCH) {
            // Stable: a topic listed twice keeps its order (the last wins).
            batch.sort_by_key(|c| c.0);
        }
        let mut changed = changed.into_iter().peekable();
        let mut in_batch = 0;
        while let Some((shard_ix, topic, count)) = changed.next() {
            let mut shard = self.shards[shard_ix].write();
            set_reporter(&mut shard, topic, slot, count);
            in_batch += 1;
            // The rest of this shard's group in the batch, under one hold.
            while in_batch % INDEX_BATCH != 0 {
                match changed.next_if(|c| c.0 == shard_ix) {
                    Some((_, topic, count)) => set_reporter(&mut shard, topic, slot, count),
                    None => break,
                }
                in_batch += 1;
            }
        }
        feed
    }

    /// Sets `slot`'s counts of `entries` (the last entry for a topic wins),
    /// marked as reported in the current snapshot epoch, and updates the sum
    /// and the index. Returns the topics whose count changed (for the feed,
    /// if any).
    fn set_counts(&self, d: &mut SlotData, slot: u16, entries: impl IntoIterator<Item = (Topic, u64)>) -> Vec<Topic> {
        let epoch = d.epoch;
        let entries = entries.into_iter();
        let mut changed = Vec::with_capacity(entries.size_hint().0);
        for (topic, count) in entries {
            let old = if count == 0 {
                d.counts.remove(&topic[..]).map_or(0, |r| r.count)
            } else {
                d.counts.insert(topic.clone(), Reported { count, epoch }).map_or(0, |r| r.count)
            };
            if old != count {
                d.sum = d.sum - u128::from(old) + u128::from(count);
                changed.push((self.shard_of(&topic), topic, count));
            }
        }
        self.set_index(slot, changed)
    }

    /// Runs `f` on `slot`'s data if `link` owns it, then publishes the sum
    /// and hands the topics `f` changed to the feed. `false` (nothing done)
    /// if `link` is not the owner.
    fn write(&self, slot: u16, link: u64, f: impl FnOnce(&mut SlotData) -> Vec<Topic>) -> bool {
        let s = self.slot(slot);
        let mut d = s.data.lock();
        if d.owner != link {
            return false;
        }
        let changed = f(&mut d);
        s.sum.store(d.published_sum(), Ordering::Release);
        drop(d);
        self.changed(&changed);
        true
    }

    /// Applies a delta from connection `link`. Returns `false` (and changes
    /// nothing) if `link` does not own the slot.
    pub(crate) fn apply(&self, slot: u16, link: u64, entries: Vec<(Topic, u64)>) -> bool {
        self.write(slot, link, |d| self.set_counts(d, slot, entries))
    }

    /// Applies one frame of a snapshot from `link` (`first`: it starts one;
    /// `last`: it completes it). A snapshot is applied frame by frame, so no
    /// call does more than one frame's work, except the one for `last`,
    /// which also zeroes the topics the snapshot did not list (the topics
    /// left over from before it). What readers see meanwhile: each topic
    /// shows either its old or its new count (updated in place, never
    /// removed and re-added), so a topic listed again never drops out;
    /// topics left over keep their old count until `last`. A peer's first
    /// snapshot is invisible until complete: the peer is counted only once
    /// it is synced. Returns `false` (nothing done) if `link` does not own
    /// the slot.
    pub(crate) fn snapshot_part(
        &self,
        slot: u16,
        link: u64,
        first: bool,
        last: bool,
        entries: Vec<(Topic, u64)>,
    ) -> bool {
        self.write(slot, link, |d| {
            if first {
                d.epoch = d.epoch.wrapping_add(1);
            }
            let mut changed = self.set_counts(d, slot, entries);
            if last {
                let epoch = d.epoch;
                let stale: Vec<(Topic, u64)> =
                    d.counts.iter().filter(|(_, r)| r.epoch != epoch).map(|(t, _)| (t.clone(), 0)).collect();
                changed.extend(self.set_counts(d, slot, stale));
            }
            changed
        })
    }

    /// A whole snapshot in one call (tests and the loom models).
    #[cfg(test)]
    pub(crate) fn replace(&self, slot: u16, link: u64, snapshot: Vec<(Topic, u64)>) -> bool {
        self.snapshot_part(slot, link, true, true, snapshot)
    }

    /// Forgets everything `slot` reported (and stops counting it).
    pub(crate) fn clear(&self, slot: u16) {
        let s = self.slot(slot);
        s.counted.store(false, Ordering::Release);
        let mut d = s.data.lock();
        let all: Vec<(usize, Topic, u64)> = d.counts.drain().map(|(t, _)| (self.shard_of(&t), t, 0)).collect();
        let all = self.set_index(slot, all);
        d.sum = 0;
        s.sum.store(0, Ordering::Release);
        drop(d);
        self.changed(&all);
    }

    /// Topics `slot` reports non-zero.
    pub(crate) fn topics_of(&self, slot: u16) -> usize {
        self.slot(slot).data.lock().counts.len()
    }

    /// Sum of `slot`'s counts.
    pub(crate) fn sum_of(&self, slot: u16) -> u64 {
        self.slot(slot).sum.load(Ordering::Acquire)
    }

    /// The remote contribution to `topic`.
    pub(crate) fn count(&self, topic: &[u8], now_ms: u64) -> RemoteCount {
        let mut rc = RemoteCount::default();
        {
            let shard = self.shard(topic).read();
            if let Some(r) = shard.get(topic) {
                for &(slot, n) in r.iter() {
                    if self.is_counted(slot) {
                        rc.count = rc.count.saturating_add(n);
                    }
                }
            }
        }
        let hw = self.high_water.load(Ordering::Acquire).min(MAX_SLOTS);
        for s in &self.slots[..hw] {
            if s.counted.load(Ordering::Acquire) {
                rc.reporting += 1;
                rc.oldest_age_ms = rc.oldest_age_ms.max(now_ms.saturating_sub(s.last_rx_ms.load(Ordering::Acquire)));
            }
        }
        rc
    }

    /// Just the summed count of `topic` (the hot read path).
    pub(crate) fn count_only(&self, topic: &[u8]) -> u64 {
        let shard = self.shard(topic).read();
        shard.get(topic).map_or(0, |r| self.counted_sum(r))
    }

    /// The sum of the counted slots' reports in `r` (call with its shard
    /// lock held: see the module docs).
    fn counted_sum(&self, r: &Reporters) -> u64 {
        r.iter().filter(|(s, _)| self.is_counted(*s)).fold(0u64, |a, &(_, n)| a.saturating_add(n))
    }

    /// A broken [`View::count_only`], for the loom model's check that it
    /// catches a broken protocol: it checks the `counted` flags after
    /// releasing the shard lock, so it can count a slot's previous peer.
    #[cfg(all(loom, test))]
    pub(crate) fn count_only_flags_after_unlock(&self, topic: &[u8]) -> u64 {
        let entries: Reporters = self.shard(topic).read().get(topic).cloned().unwrap_or_default();
        entries.iter().filter(|(s, _)| self.is_counted(*s)).fold(0u64, |a, &(_, n)| a.saturating_add(n))
    }

    /// Calls `f(topic, count)` for every topic some counted peer reports
    /// non-zero, with the sum of the counted peers' reports.
    pub(crate) fn for_each_topic(&self, mut f: impl FnMut(&[u8], u64)) {
        for shard in self.shards.iter() {
            for (topic, r) in shard.read().iter() {
                let n = self.counted_sum(r);
                if n > 0 {
                    f(topic, n);
                }
            }
        }
    }

    /// `slot`'s last report for `topic`.
    pub(crate) fn count_of(&self, slot: u16, topic: &[u8]) -> u64 {
        let shard = self.shard(topic).read();
        shard.get(topic).and_then(|r| r.iter().find(|(s, _)| *s == slot)).map_or(0, |&(_, n)| n)
    }

    /// Sum over counted peers of all their counts.
    pub(crate) fn total(&self) -> u64 {
        let hw = self.high_water.load(Ordering::Acquire).min(MAX_SLOTS);
        self.slots[..hw]
            .iter()
            .filter(|s| s.counted.load(Ordering::Acquire))
            .fold(0u64, |a, s| a.saturating_add(s.sum.load(Ordering::Acquire)))
    }

    /// Distinct topics in the index.
    pub(crate) fn topics(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

/// Sets `slot`'s count of `topic` in one shard of the index (0 removes it).
fn set_reporter(shard: &mut Index, topic: Topic, slot: u16, count: u64) {
    if count == 0 {
        if let Some(r) = shard.get_mut(&topic[..]) {
            r.retain(|(s, _)| *s != slot);
            if r.is_empty() {
                shard.remove(&topic[..]);
            }
        }
        return;
    }
    let r = shard.entry(topic).or_default();
    match r.iter_mut().find(|(s, _)| *s == slot) {
        Some(e) => e.1 = count,
        None => r.push((slot, count)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Topic {
        Topic::from(s.as_bytes())
    }

    #[test]
    fn counts_sum_counted_slots_only() {
        let v = View::with_feed(None);
        for s in 0..3 {
            v.activate(s);
            v.set_owner(s, 10 + u64::from(s));
        }
        assert!(v.replace(0, 10, vec![(t("a"), 2), (t("b"), 1)]));
        assert!(v.replace(1, 11, vec![(t("a"), 5)]));
        assert!(v.replace(2, 12, vec![(t("a"), 7)]));
        v.set_counted(0, true);
        v.set_counted(1, true);
        assert_eq!(v.count_only(b"a"), 7);
        assert_eq!(v.total(), 8);
        assert_eq!(v.count(b"a", 0).reporting, 2);
        assert_eq!(v.count_of(2, b"a"), 7);
        // A delta from a connection that does not own the slot is ignored.
        assert!(!v.apply(0, 99, vec![(t("a"), 100)]));
        assert!(v.apply(0, 10, vec![(t("a"), 3), (t("b"), 0), (t("c"), 4)]));
        assert_eq!(v.count_only(b"a"), 8);
        assert_eq!(v.count_only(b"b"), 0);
        assert_eq!(v.sum_of(0), 7);
        // A snapshot replaces: "c" disappears.
        assert!(v.replace(0, 10, vec![(t("a"), 1), (t("a"), 2), (t("d"), 0)]));
        assert_eq!(v.count_only(b"c"), 0);
        assert_eq!(v.count_only(b"d"), 0);
        assert_eq!(v.topics_of(0), 1);
        assert_eq!(v.sum_of(0), 2);
        v.clear(1);
        assert_eq!(v.count_only(b"a"), 2);
        assert_eq!(v.total(), 2);
        v.clear(0);
        v.clear(2);
        assert_eq!(v.topics(), 0);
    }

    #[test]
    fn sums_saturate_so_total_is_never_below_a_count() {
        let v = View::with_feed(None);
        v.activate(0);
        v.set_owner(0, 1);
        let half = u64::MAX / 2 + 1;
        assert!(v.replace(0, 1, vec![(t("a"), u64::MAX), (t("b"), half)]));
        v.set_counted(0, true);
        assert_eq!(v.count_only(b"a"), u64::MAX);
        assert_eq!(v.sum_of(0), u64::MAX);
        assert!(v.total() >= v.count_only(b"a"), "total {} below a count", v.total());
        // The exact sum survives saturation: taking "a" away leaves b's.
        assert!(v.apply(0, 1, vec![(t("a"), 0)]));
        assert_eq!(v.total(), half);
        assert!(v.apply(0, 1, vec![(t("c"), u64::MAX), (t("b"), 0)]));
        assert_eq!((v.total(), v.count_only(b"c")), (u64::MAX, u64::MAX));
    }

    #[test]
    fn a_snapshot_in_parts_updates_in_place_and_zeroes_leftovers_at_last() {
        let v = View::with_feed(None);
        v.activate(0);
        v.set_owner(0, 1);
        assert!(v.replace(0, 1, vec![(t("a"), 1), (t("b"), 2), (t("c"), 3)]));
        v.set_counted(0, true);
        // A resynchronisation in three parts: "a" and "d" listed, "b" and
        // "c" left over.
        assert!(v.snapshot_part(0, 1, true, false, vec![(t("a"), 5)]));
        assert_eq!((v.count_only(b"a"), v.count_only(b"b"), v.count_only(b"c")), (5, 2, 3));
        assert!(v.snapshot_part(0, 1, false, false, vec![(t("d"), 4), (t("c"), 0)]));
        assert_eq!((v.count_only(b"c"), v.count_only(b"d"), v.total()), (0, 4, 11));
        // Another link's parts are ignored.
        assert!(!v.snapshot_part(0, 2, false, true, vec![(t("z"), 9)]));
        assert!(v.snapshot_part(0, 1, false, true, vec![]));
        assert_eq!((v.count_only(b"a"), v.count_only(b"b"), v.count_only(b"d")), (5, 0, 4));
        assert_eq!((v.total(), v.topics_of(0), v.topics()), (9, 2, 2));
        // A delta after it, then another snapshot that lists only "d".
        assert!(v.apply(0, 1, vec![(t("e"), 1)]));
        assert!(v.snapshot_part(0, 1, true, true, vec![(t("d"), 4)]));
        assert_eq!((v.count_only(b"a"), v.count_only(b"e"), v.total()), (0, 0, 4));
    }

    #[test]
    fn freshness_is_the_oldest_counted_report() {
        let v = View::with_feed(None);
        v.activate(1);
        v.activate(0);
        v.set_counted(0, true);
        v.set_counted(1, true);
        v.touch(0, 100);
        v.touch(1, 40);
        let rc = v.count(b"x", 150);
        assert_eq!((rc.reporting, rc.oldest_age_ms), (2, 110));
    }
}
