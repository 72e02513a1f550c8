//! A grow-only array of atomics whose elements never move.
//!
//! Topic ids are dense `u32`s. Everything indexed by them (each stripe's
//! counters, the dirty bitmap, the id -> entry map) lives in a [`SegVec`]: a
//! fixed directory of [`MAX_SEGMENTS`] pointers to segments of `N` elements,
//! allocated on demand and freed only when the `SegVec` is dropped. Growing
//! never copies, so a reference to an element stays valid for the life of the
//! array and hot paths never wait for a resize.
//!
//! Protocol: [`SegVec::ensure`] (called by the single topic inserter under
//! the table lock) allocates the segment and publishes its pointer with
//! `Release` *before* any id inside it is published; readers find the id
//! through an `Acquire` load of the entry that carries it, so by
//! transitivity their `Acquire` load of the segment pointer sees it.

use crate::sync::{AtomicPtr, Ordering};

/// log2 of the topics per segment.
#[cfg(not(loom))]
pub(crate) const SEGMENT_BITS: u32 = 12;
#[cfg(loom)]
pub(crate) const SEGMENT_BITS: u32 = 1;

/// Topics per segment (4096: 32 KiB of counters per stripe).
pub(crate) const SEGMENT_LEN: usize = 1 << SEGMENT_BITS;

/// Segments per array: 4096 x 4096 = 16,777,216 topics at most.
#[cfg(not(loom))]
pub(crate) const MAX_SEGMENTS: usize = 4096;
#[cfg(loom)]
pub(crate) const MAX_SEGMENTS: usize = 4;

/// The largest number of topics that can exist at once.
pub(crate) const MAX_TOPICS: usize = SEGMENT_LEN * MAX_SEGMENTS;

/// A grow-only array of `N`-element segments; see the module doc.
pub(crate) struct SegVec<T, const N: usize> {
    dir: Box<[AtomicPtr<[T; N]>]>,
}

impl<T: Default, const N: usize> SegVec<T, N> {
    pub(crate) fn new() -> Self {
        Self { dir: (0..MAX_SEGMENTS).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect() }
    }

    /// Allocates segment `seg` if absent. Callers serialise calls (the topic
    /// table's insert lock); concurrent readers are fine.
    pub(crate) fn ensure(&self, seg: usize) {
        let slot = &self.dir[seg];
        if slot.load(Ordering::Relaxed).is_null() {
            let fresh: Box<[T; N]> = Box::new(std::array::from_fn(|_| T::default()));
            slot.store(Box::into_raw(fresh), Ordering::Release);
        }
    }

    /// The element at `index`, if its segment exists.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        let seg = self.dir.get(index / N)?.load(Ordering::Acquire);
        // SAFETY: a non-null directory pointer came from `Box::into_raw` in
        // `ensure`, is never changed again, and is freed only in `drop`, which
        // needs `&mut self`; so it is valid for the lifetime of `&self`.
        (!seg.is_null()).then(|| unsafe { &(*seg)[index % N] })
    }
}

impl<T, const N: usize> Drop for SegVec<T, N> {
    fn drop(&mut self) {
        for slot in self.dir.iter() {
            let seg = slot.load(Ordering::Relaxed);
            if !seg.is_null() {
                // SAFETY: `&mut self` means no reader remains, and the pointer
                // came from `Box::into_raw` in `ensure` and is freed only here.
                drop(unsafe { Box::from_raw(seg) });
            }
        }
    }
}

impl<T, const N: usize> std::fmt::Debug for SegVec<T, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegVec").field("segment_len", &N).finish_non_exhaustive()
    }
}
