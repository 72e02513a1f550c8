//! The topic table: topic bytes -> dense topic id, with a lock-free read path.
//!
//! An open-addressing array of `AtomicPtr<Entry>`, probed linearly. Entries
//! are immutable once published (hash, id, generation, name), except for two
//! atomics (`state`, `handles`) that the topic GC protocol uses.
//!
//! ```text
//!  Table.slots ──▶ Slots { mask, [ null | TOMBSTONE | *Entry ] x 2^k }
//!                                             │
//!                                             ▼
//!                          Entry { hash, id, gen, state, handles, name (inline up to 24 B) }
//!  Table.by_id[id] ─────────────────────────────┘   (id -> entry, for drains)
//! ```
//!
//! | slot value  | meaning                                                  |
//! |-------------|----------------------------------------------------------|
//! | null        | never used: a probe for any key stops here               |
//! | `TOMBSTONE` | an entry was removed by GC: probes continue past it       |
//! | entry ptr   | a topic; compared by hash, then by bytes                  |
//!
//! **Reads** ([`Table::find`]) take no lock and write nothing shared: an
//! `Acquire` load of the array pointer, then `Acquire` loads of slots. The
//! caller holds an epoch guard, which keeps the array and entries it may
//! reach alive.
//!
//! **Inserts and removals** take the `writer` mutex (short, and rare: once
//! per new topic). A new entry is fully built, its id's counter segments are
//! allocated, and only then is it published by one `Release` store into an
//! empty (or tombstone) slot. When the array passes half full (live entries +
//! tombstones), a larger array is built privately, published with one
//! `Release` store of the array pointer, and the old one is retired through
//! the epoch collector.
//!
//! **Invariant (the loom model `lookup_during_growth_never_misses`): a lookup
//! of a topic whose insert finished before the lookup started finds it, even
//! while the table grows.** A reader on the old array sees every entry that
//! was in it (growth never removes from the old array); an entry inserted
//! after the swap is only in the new array, but then its insert did not finish
//! before the reader loaded the array pointer... unless the reader loaded the
//! old pointer before the swap, in which case the insert started after the
//! load: a miss then is a linearizable "not yet". Callers that need
//! certainty (the insert path) re-check under the writer lock.

use crate::segvec::{SegVec, MAX_TOPICS, SEGMENT_BITS, SEGMENT_LEN};
use crate::sync::{AtomicPtr, AtomicU32, AtomicUsize, Guard, Mutex, Ordering, RandomState};
use smallvec::SmallVec;
use std::hash::{BuildHasher, Hasher};

/// Topic GC states of an [`Entry`]; see [`crate::gc`].
pub(crate) const LIVE: u32 = 0;
pub(crate) const DYING: u32 = 1;
pub(crate) const DEAD: u32 = 2;

/// One topic. Immutable after publication except `state` and `handles`.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) hash: u64,
    pub(crate) id: u32,
    /// Distinguishes this entry from earlier and later users of the same id
    /// (ids are recycled by GC).
    pub(crate) gen: u32,
    /// [`LIVE`], [`DYING`] or [`DEAD`].
    pub(crate) state: AtomicU32,
    /// Live [`crate::TopicHandle`]s; GC never removes an entry that has any.
    pub(crate) handles: AtomicUsize,
    /// Stored inline up to [`INLINE_NAME`] bytes, so comparing a typical
    /// topic name reads the entry's own cache line and chases no pointer.
    pub(crate) name: SmallVec<[u8; INLINE_NAME]>,
}

/// Longest name kept inside its [`Entry`] (longer ones are boxed).
const INLINE_NAME: usize = 24;

fn tombstone() -> *mut Entry {
    std::ptr::without_provenance_mut(1)
}

struct Slots {
    mask: usize,
    slots: Box<[AtomicPtr<Entry>]>,
}

impl Slots {
    fn with_capacity(cap: usize) -> Box<Self> {
        let cap = cap.max(16).next_power_of_two();
        Box::new(Self { mask: cap - 1, slots: (0..cap).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect() })
    }
}

/// Raw pointers retired through the epoch collector (moved into a `Send`
/// closure).
struct Retired<T>(*mut T);
// SAFETY: a retired pointer is owned by the deferred closure alone: it was
// unlinked before being retired, and the collector runs the closure once,
// after every thread that could still reach it has unpinned.
unsafe impl<T> Send for Retired<T> {}

impl<T: 'static> Retired<T> {
    /// # Safety
    /// The pointer came from `Box::into_raw`, is unreachable by new readers,
    /// and is freed nowhere else.
    unsafe fn free_after(self, guard: &Guard) {
        guard.defer(move || {
            let r = self;
            // SAFETY: per this function's contract, and the grace period has
            // passed, so no reader still holds it.
            drop(unsafe { Box::from_raw(r.0) });
        });
    }
}

/// Entries unlinked by [`Table::remove`], freed together after one grace
/// period: a GC pass that removes a million topics defers one closure, not
/// a million (each would wait its turn in the collector's queue, keeping
/// the memory from new topics meanwhile). Dropped without
/// [`Unlinked::free_after`], the entries leak rather than being freed early.
#[derive(Default)]
pub(crate) struct Unlinked(Vec<*mut Entry>);

// SAFETY: the pointers are owned by this batch alone: each entry was
// unlinked from the table and `by_id` before being pushed, and is freed only
// by `free_after`'s closure, once, after a grace period.
unsafe impl Send for Unlinked {}

impl Unlinked {
    /// Frees every entry once no pinned thread can still reach it.
    pub(crate) fn free_after(self, guard: &Guard) {
        if self.0.is_empty() {
            return;
        }
        guard.defer(move || {
            let batch = self;
            for p in batch.0 {
                // SAFETY: every pointer came from `Box::into_raw` and was
                // unreachable by new readers when pushed (see `remove`), and
                // the grace period has passed.
                drop(unsafe { Box::from_raw(p) });
            }
        });
    }
}

struct Writer {
    live: usize,
    tombstones: usize,
    next_id: u32,
    free_ids: Vec<u32>,
    next_gen: u32,
}

/// See the module doc.
pub(crate) struct Table {
    slots: AtomicPtr<Slots>,
    writer: Mutex<Writer>,
    hasher: RandomState,
    by_id: SegVec<AtomicPtr<Entry>, SEGMENT_LEN>,
    /// Ids below this have been handed out at least once.
    high_water: AtomicU32,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("topics", &self.len()).finish_non_exhaustive()
    }
}

/// Why an insert failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TableFull;

impl Table {
    pub(crate) fn new() -> Self {
        Self {
            slots: AtomicPtr::new(Box::into_raw(Slots::with_capacity(16))),
            writer: Mutex::new(Writer { live: 0, tombstones: 0, next_id: 0, free_ids: Vec::new(), next_gen: 0 }),
            // A random seed per table: topic names come from users, and a
            // seeded hash keeps them from choosing colliding names.
            hasher: RandomState::default(),
            by_id: SegVec::new(),
            high_water: AtomicU32::new(0),
        }
    }

    #[inline]
    pub(crate) fn hash(&self, name: &[u8]) -> u64 {
        // The bytes alone, without `Hash for [u8]`'s length prefix (one key
        // per hash, so nothing to separate), and inlined into the caller.
        let mut h = self.hasher.build_hasher();
        h.write(name);
        h.finish()
    }

    /// Finds `name`. Lock-free; writes nothing shared.
    #[inline]
    pub(crate) fn find<'g>(&self, name: &[u8], hash: u64, _guard: &'g Guard) -> Option<&'g Entry> {
        // SAFETY: the array pointer is always valid while pinned: replaced
        // arrays are retired through the epoch collector, which waits for
        // `_guard`'s pin to end.
        let slots = unsafe { &*self.slots.load(Ordering::Acquire) };
        probe(slots, name, hash)
    }

    /// Finds `name` or inserts it. Returns the entry and whether it is new.
    /// `ensure_segment(seg)` runs under the writer lock before the first id
    /// of segment `seg` is published, to allocate what that id indexes.
    pub(crate) fn find_or_insert<'g>(
        &self,
        name: &[u8],
        hash: u64,
        guard: &'g Guard,
        ensure_segment: impl FnOnce(usize),
    ) -> Result<(&'g Entry, bool), TableFull> {
        if let Some(e) = self.find(name, hash, guard) {
            return Ok((e, false));
        }
        let mut w = self.writer.lock();
        // SAFETY: only the writer (we hold its lock) replaces the array, so
        // the current one stays valid while we hold the lock.
        let current = unsafe { &*self.slots.load(Ordering::Acquire) };
        if let Some(e) = probe(current, name, hash) {
            return Ok((e, false));
        }
        let id = match w.free_ids.pop() {
            Some(id) => id,
            None if (w.next_id as usize) < MAX_TOPICS => {
                w.next_id += 1;
                w.next_id - 1
            }
            None => return Err(TableFull),
        };
        if id & (SEGMENT_LEN as u32 - 1) == 0 {
            let seg = (id >> SEGMENT_BITS) as usize;
            ensure_segment(seg);
            self.by_id.ensure(seg);
        }
        let gen = w.next_gen;
        w.next_gen = w.next_gen.wrapping_add(1);
        let entry = Box::into_raw(Box::new(Entry {
            hash,
            id,
            gen,
            state: AtomicU32::new(LIVE),
            handles: AtomicUsize::new(0),
            name: SmallVec::from_slice(name),
        }));
        if (w.live + w.tombstones + 1) * 2 > current.slots.len() {
            self.grow(&mut w, guard);
        }
        // SAFETY: as above; `grow` may have swapped in a new array, reload.
        let current = unsafe { &*self.slots.load(Ordering::Acquire) };
        let mut i = hash as usize & current.mask;
        loop {
            let p = current.slots[i].load(Ordering::Relaxed);
            if p.is_null() || p == tombstone() {
                if p == tombstone() {
                    w.tombstones -= 1;
                }
                self.by_id.get(id as usize).expect("segment allocated above").store(entry, Ordering::Release);
                self.high_water.fetch_max(id + 1, Ordering::Release);
                current.slots[i].store(entry, Ordering::Release);
                break;
            }
            i = (i + 1) & current.mask;
        }
        w.live += 1;
        // SAFETY: `entry` is published; it is freed only after removal plus a
        // grace period, which cannot end while `guard` is held.
        Ok((unsafe { &*entry }, true))
    }

    /// Rebuilds the array (dropping tombstones) with room for three times the
    /// live entries, rounded up to a power of two: a full table doubles, to
    /// 25% load; one mostly of tombstones is rebuilt at its size or smaller.
    fn grow(&self, w: &mut Writer, guard: &Guard) {
        let old_ptr = self.slots.load(Ordering::Acquire);
        // SAFETY: we hold the writer lock, so `old_ptr` is the live array.
        let old = unsafe { &*old_ptr };
        let fresh = Slots::with_capacity((w.live + 1) * 3);
        for slot in old.slots.iter() {
            let p = slot.load(Ordering::Relaxed);
            if p.is_null() || p == tombstone() {
                continue;
            }
            // SAFETY: entries in the live array are valid (removal happens
            // under the writer lock, which we hold).
            let mut i = unsafe { (*p).hash } as usize & fresh.mask;
            while !fresh.slots[i].load(Ordering::Relaxed).is_null() {
                i = (i + 1) & fresh.mask;
            }
            fresh.slots[i].store(p, Ordering::Relaxed);
        }
        w.tombstones = 0;
        self.slots.store(Box::into_raw(fresh), Ordering::Release);
        // SAFETY: `old_ptr` came from `Box::into_raw`, is no longer reachable
        // from `self.slots`, and only the writer retires arrays.
        unsafe { Retired(old_ptr).free_after(guard) };
    }

    /// Unlinks a `DEAD` entry (topic GC) into `unlinked`, whose
    /// [`Unlinked::free_after`] frees it. The id is not free yet: see
    /// [`Table::release_id`].
    pub(crate) fn remove(&self, entry: &Entry, unlinked: &mut Unlinked) {
        let mut w = self.writer.lock();
        // SAFETY: we hold the writer lock, so the array is the live one.
        let current = unsafe { &*self.slots.load(Ordering::Acquire) };
        let target = entry as *const Entry as *mut Entry;
        let mut i = entry.hash as usize & current.mask;
        for _ in 0..current.slots.len() {
            let p = current.slots[i].load(Ordering::Relaxed);
            if p.is_null() {
                break;
            }
            if p == target {
                current.slots[i].store(tombstone(), Ordering::Release);
                w.live -= 1;
                w.tombstones += 1;
                if let Some(slot) = self.by_id.get(entry.id as usize) {
                    slot.store(std::ptr::null_mut(), Ordering::Release);
                }
                // The entry came from `Box::into_raw` and is now unreachable
                // from the table and `by_id`: it is retired once, here.
                unlinked.0.push(target);
                return;
            }
            i = (i + 1) & current.mask;
        }
    }

    /// Returns a removed entry's id to the free list. Call only after a grace
    /// period that began after [`Table::remove`], once the id's cells are reset.
    pub(crate) fn release_id(&self, id: u32) {
        self.writer.lock().free_ids.push(id);
    }

    /// The entry currently holding `id`, if any.
    pub(crate) fn by_id<'g>(&self, id: u32, _guard: &'g Guard) -> Option<&'g Entry> {
        let p = self.by_id.get(id as usize)?.load(Ordering::Acquire);
        // SAFETY: a non-null `by_id` pointer is a published entry; entries are
        // freed only after being unlinked here plus a grace period, which
        // cannot end while `_guard` is held.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// One past the highest id ever handed out.
    pub(crate) fn high_water(&self) -> u32 {
        self.high_water.load(Ordering::Acquire)
    }

    /// Topics currently in the table.
    pub(crate) fn len(&self) -> usize {
        self.writer.lock().live
    }
}

#[inline]
fn probe<'g>(slots: &Slots, name: &[u8], hash: u64) -> Option<&'g Entry> {
    let mut i = hash as usize & slots.mask;
    for _ in 0..slots.slots.len() {
        let p = slots.slots[i].load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        if p != tombstone() {
            // SAFETY: a published entry pointer stays valid while the caller
            // is pinned (entries are retired through the epoch collector).
            let e = unsafe { &*p };
            if e.hash == hash && same_name(&e.name, name) {
                return Some(e);
            }
        }
        i = (i + 1) & slots.mask;
    }
    None
}

/// `a == b`, with names of 8 to 16 bytes (most topics) compared as two
/// possibly overlapping words instead of through a `bcmp` call.
#[inline]
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("8 bytes"));
        return word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8);
    }
    a == b
}

impl Drop for Table {
    fn drop(&mut self) {
        let slots = self.slots.load(Ordering::Relaxed);
        // SAFETY: `&mut self`: no reader remains. The array and every entry
        // in it came from `Box::into_raw`; removed entries were retired
        // separately and are not in the array.
        unsafe {
            for slot in (*slots).slots.iter() {
                let p = slot.load(Ordering::Relaxed);
                if !p.is_null() && p != tombstone() {
                    drop(Box::from_raw(p));
                }
            }
            drop(Box::from_raw(slots));
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::same_name;

    #[test]
    fn same_name_sees_every_byte_and_the_length() {
        for n in 0..40u8 {
            let a: Vec<u8> = (0..n).collect();
            assert!(same_name(&a, &a.clone()), "len {n}");
            for i in 0..a.len() {
                let mut b = a.clone();
                b[i] ^= 0x80;
                assert!(!same_name(&a, &b), "len {n}, byte {i} differs");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same_name(&a, &longer) && !same_name(&longer, &a), "len {n} vs {}", n + 1);
        }
    }
}
