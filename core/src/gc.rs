//! Topic garbage collection: removing topics that sat at zero, and recycling
//! their ids, without ever losing a concurrent write.
//!
//! A server that sees millions of short-lived topics ("match:8812…") must
//! not grow forever, so a topic whose local count has been zero for
//! `gc_after` is removed and its id reused. The danger is a writer that found
//! the entry just before GC decided to remove it: its `+1` must not land on a
//! removed topic (lost) or on the id's next owner (counted on the wrong
//! topic). The protocol uses the entry's `state` word and two epoch grace
//! periods:
//!
//! | state   | writers (pinned, see [`crate::counter`])        | set by            |
//! |---------|------------------------------------------------|-------------------|
//! | `LIVE`  | write                                          | insert, revival   |
//! | `DYING` | CAS it back to `LIVE` ("revive"), then write   | GC step 1         |
//! | `DEAD`  | never write; look the topic up again           | GC step 2         |
//!
//! 1. **Mark.** A topic that drains at zero is remembered with the time; once
//!    it has been zero for `gc_after` (and has no handles), GC CASes it
//!    `LIVE -> DYING` and defers step 2 past a grace period.
//! 2. **Decide** (after every thread pinned during step 1 has unpinned). Any
//!    writer that saw `LIVE` has finished, so the cells now hold every write
//!    that will ever be made without first reviving the entry. GC reads the
//!    handle count, then the cells' sum. If either is non-zero, it puts the
//!    entry back to `LIVE`. Otherwise it CASes `DYING -> DEAD`: this fails if
//!    a writer revived the entry meanwhile, and once it succeeds no writer can
//!    write again. Then it unlinks the entry from the table and defers step 3.
//! 3. **Recycle** (after another grace period: no thread still holds the
//!    entry). The id's cells (whose sum is zero) are reset and the id goes
//!    back to the free list; the entry's memory is freed by the collector.
//!
//! **Invariant (the loom model `gc_never_loses_a_racing_track`): a write that
//! returns success is counted on its topic, whatever GC does meanwhile, and
//! no id is reused while a writer may still add to it.**

use crate::membership::TopicKey;
use crate::stripes::Stripes;
use crate::sync::{pin, Arc, Mutex, Ordering, RandomState};
use crate::table::{Table, Unlinked, DEAD, DYING, LIVE};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What a GC pass works on: the table and the counters of a
/// [`Core`](crate::shared::Core) (which holds the [`Gc`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub(crate) table: &'a Table,
    pub(crate) stripes: &'a Stripes,
}

#[derive(Debug)]
pub(crate) struct Gc {
    gc_after: Duration,
    zeros: Mutex<Zeros>,
    /// Step-1 entries whose grace period has passed (filled by the collector).
    decide: Arc<Mutex<Vec<TopicKey>>>,
    /// Ids unlinked a grace period ago (filled by the collector).
    recycle: Arc<Mutex<Vec<u32>>>,
}

/// Topics last drained at zero, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Zeros {
    since: HashMap<TopicKey, Instant, RandomState>,
    queue: VecDeque<(Instant, TopicKey)>,
}

impl Zeros {
    /// Records a drained count.
    pub(crate) fn observe(&mut self, key: TopicKey, count: u64, now: Instant) {
        if count != 0 {
            self.since.remove(&key);
        } else if let std::collections::hash_map::Entry::Vacant(slot) = self.since.entry(key) {
            slot.insert(now);
            self.queue.push_back((now, key));
        }
    }

    /// Removes and returns the topics at zero since `cutoff` or earlier.
    fn expired(&mut self, cutoff: Instant) -> Vec<TopicKey> {
        let mut out = Vec::new();
        while let Some(&(at, key)) = self.queue.front() {
            if at > cutoff {
                break;
            }
            self.queue.pop_front();
            // A queue entry is stale if the topic went non-zero since.
            if self.since.get(&key) == Some(&at) {
                self.since.remove(&key);
                out.push(key);
            }
        }
        // After a wave of millions of topics the tables would keep their
        // peak capacity for good: give it back once mostly empty.
        if self.since.capacity() > 4 * self.since.len().max(1024) {
            self.since.shrink_to(2 * self.since.len());
            self.queue.shrink_to(2 * self.queue.len());
        }
        out
    }
}

impl Gc {
    pub(crate) fn new(gc_after: Duration) -> Self {
        Self { gc_after, zeros: Mutex::default(), decide: Arc::default(), recycle: Arc::default() }
    }

    pub(crate) fn lock_zeros(&self) -> impl std::ops::DerefMut<Target = Zeros> + '_ {
        self.zeros.lock()
    }

    /// One GC pass: step 3, then step 2, then step 1 (see the module doc).
    /// Returns the number of topics unlinked. Callers serialise passes.
    pub(crate) fn collect(&self, core: Parts<'_>, now: Instant) -> usize {
        let recycle: Vec<u32> = std::mem::take(&mut *self.recycle.lock());
        for id in recycle {
            core.stripes.reset(id);
            core.table.release_id(id);
        }

        let guard = pin();
        let mut unlinked = Vec::new();
        let mut entries = Unlinked::default();
        let decide: Vec<TopicKey> = std::mem::take(&mut *self.decide.lock());
        for key in decide {
            let Some(entry) = core.table.by_id(key.id, &guard) else { continue };
            if entry.gen != key.gen || entry.state.load(Ordering::Acquire) != DYING {
                continue; // revived
            }
            // Handles first: a dropped handle's writes happen before its
            // `Release` decrement, so reading zero here makes them visible to
            // the sum below.
            if entry.handles.load(Ordering::Acquire) != 0 || core.stripes.sum(key.id) != 0 {
                let _ = entry.state.compare_exchange(DYING, LIVE, Ordering::AcqRel, Ordering::Relaxed);
                continue;
            }
            if entry.state.compare_exchange(DYING, DEAD, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                continue; // a writer revived it just now
            }
            core.table.remove(entry, &mut entries);
            unlinked.push(key.id);
        }
        let removed = unlinked.len();
        entries.free_after(&guard);
        if !unlinked.is_empty() {
            // One deferred closure per pass, not per topic: a pass over
            // millions of topics must not queue millions of them.
            let recycle = self.recycle.clone();
            guard.defer(move || recycle.lock().extend(unlinked));
        }

        let cutoff = now.checked_sub(self.gc_after);
        let expired = cutoff.map(|c| self.zeros.lock().expired(c)).unwrap_or_default();
        let mut dying = Vec::new();
        for key in expired {
            let Some(entry) = core.table.by_id(key.id, &guard) else { continue };
            if entry.gen != key.gen || entry.handles.load(Ordering::Relaxed) != 0 {
                continue;
            }
            if entry.state.compare_exchange(LIVE, DYING, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                dying.push(key);
            }
        }
        if !dying.is_empty() {
            let decide = self.decide.clone();
            guard.defer(move || decide.lock().extend(dying));
        }
        // Hand our deferred work to the global collector so it runs without
        // waiting for this thread's next 128 pins.
        guard.flush();
        removed
    }
}
