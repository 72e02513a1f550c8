//! Per-CPU striped counters, laid out `[stripe][topic]`.
//!
//! The same idea as Linux's `percpu_counter` and Java's `LongAdder`: a write
//! goes to a cell owned by the CPU that runs it, so writers on different CPUs
//! never share a cache line, and the exact value is the sum of all cells.
//!
//! ```text
//!            topic id ->   0    1    2    3   ...  4095 | 4096 ...
//!  stripe 0 (CPU 0)     [  3 |  0 | -1 |  7 | ... |    ] [ segment 1 ... ]
//!  stripe 1 (CPU 1)     [ -1 |  2 |  1 |  0 | ... |    ] [ ...           ]
//!  ...
//!  count(topic 0) = 3 + -1 + ... = 2
//! ```
//!
//! **Why `[stripe][topic]` and not `[topic][stripe]`.** With `[topic][stripe]`
//! each topic's cells would have to be padded to a cache line per stripe to
//! avoid false sharing: 64 B x S per topic, 1 KiB per topic on 16 CPUs. With
//! `[stripe][topic]` a CPU's cells for neighbouring topics share *its own*
//! cache lines (8 B per topic per stripe), and the only sharing is the rare
//! case of a thread migrating mid-operation or two threads on one CPU, both
//! correct because every cell is an atomic.
//!
//! Individual cells may be negative (a join counted on CPU 0 and the leave on
//! CPU 1); only the sum is meaningful, and readers clamp a transiently
//! negative racy sum to zero.
//!
//! Orderings: writers use `SeqCst` read-modify-writes because the dirty-bit
//! protocol (see [`crate::dirty`]) orders each cell write before the writer's
//! check of its dirty bit; on x86-64 and aarch64 that costs nothing over
//! `Relaxed` (`lock xadd` / `ldaddal`).

use crate::cpu;
use crate::segvec::{SegVec, SEGMENT_LEN};
use crate::sync::{AtomicI64, Ordering};
use crossbeam_utils::CachePadded;

/// Counter cells for every topic, one array per stripe.
#[derive(Debug)]
pub(crate) struct Stripes {
    /// Each stripe's directory on its own cache line, so that loading a
    /// segment pointer never contends with another stripe's growth.
    stripes: Box<[CachePadded<SegVec<AtomicI64, SEGMENT_LEN>>]>,
    mask: usize,
}

impl Stripes {
    /// `n` stripes, rounded up to a power of two.
    pub(crate) fn new(n: usize) -> Self {
        let n = n.max(1).next_power_of_two();
        Self { stripes: (0..n).map(|_| CachePadded::new(SegVec::new())).collect(), mask: n - 1 }
    }

    /// Sized for every CPU of this machine.
    pub(crate) fn for_this_machine() -> Self {
        Self::new(cpu::count())
    }

    pub(crate) fn len(&self) -> usize {
        self.stripes.len()
    }

    /// Allocates the cells of segment `seg` in every stripe. Serialised by the
    /// caller (the topic table's insert lock).
    pub(crate) fn ensure_segment(&self, seg: usize) {
        for stripe in self.stripes.iter() {
            stripe.ensure(seg);
        }
    }

    /// The calling CPU's cell for `id`. `None` only if `id` was never
    /// published by the topic table, which callers rule out.
    #[inline]
    pub(crate) fn local_cell(&self, id: u32) -> Option<&AtomicI64> {
        self.stripes[cpu::current() & self.mask].get(id as usize)
    }

    /// Adds `delta` to the calling CPU's cell and returns that cell, so an
    /// undo can go to the very same cell.
    #[inline]
    pub(crate) fn add(&self, id: u32, delta: i64) -> Option<&AtomicI64> {
        let cell = self.local_cell(id)?;
        cell.fetch_add(delta, Ordering::SeqCst);
        Some(cell)
    }

    /// The raw sum of `id`'s cells (may be transiently negative under races).
    #[inline]
    pub(crate) fn sum(&self, id: u32) -> i64 {
        self.stripes
            .iter()
            .filter_map(|s| s.get(id as usize))
            .fold(0i64, |acc, c| acc.wrapping_add(c.load(Ordering::SeqCst)))
    }

    /// Sets every cell of `id` to zero. Only for an id nobody can reach (after
    /// topic GC's grace period), where the cells' sum is already zero.
    pub(crate) fn reset(&self, id: u32) {
        for s in self.stripes.iter() {
            if let Some(c) = s.get(id as usize) {
                c.store(0, Ordering::Relaxed);
            }
        }
    }
}
