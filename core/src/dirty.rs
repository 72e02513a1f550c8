//! The dirty bitmap: which topics changed since the flusher last looked.
//!
//! Two levels, so a drain costs O(changed topics) and not O(all topics):
//!
//! ```text
//!  summary[seg]  : u64, bit w set  =>  word w of segment seg may be non-zero
//!  words[seg][w] : u64, bit b set  =>  topic seg*4096 + w*64 + b changed
//! ```
//!
//! One summary word covers one segment (64 words x 64 bits = 4096 topics),
//! and summary words for all [`MAX_SEGMENTS`] segments are allocated up
//! front (32 KiB).
//!
//! | word bit | meaning                                                    |
//! |----------|------------------------------------------------------------|
//! | 0        | clean: no write since the last drain took the bit           |
//! | 1        | dirty: some write happened; the next drain ships the count |
//!
//! **Protocol.** A writer, *after* its counter add, marks its topic: it loads
//! the word and only if the bit is clear does it `fetch_or` it (so a hot topic
//! costs a shared read, not a contended write, per operation), then does the
//! same for the summary bit. The drainer `swap`s a summary word to zero, then
//! `swap`s each word it names to zero, then reads the counters of the topics
//! whose bits it took.
//!
//! **Invariant (the loom model `drain_after_last_write_ships_final_count`):
//! a drain that starts after a write finished reports a count that includes
//! that write.** Either the drain's swap takes the writer's bit, or it takes a
//! bit set earlier whose drain happens after the write's add; the danger is a
//! writer that sees its bit already set (so sets nothing), while the drainer
//! has already taken that bit but read the counter before the add. All four
//! accesses (writer: add, load; drainer: swap, read) are `SeqCst`, so they
//! fall in one total order: if the writer's load saw the bit set, it came
//! before the drainer's swap, so the add did too, so the drainer's read,
//! after its swap, sees the add. The same argument covers the summary level.
//!
//! **Waking the flusher.** A writer that sets a bit then calls
//! [`Wake::notify`] (one load while the flusher is awake; see `wake.rs`),
//! and the flusher checks [`Dirty::any`] once it is armed to sleep. A new
//! topic is marked without a notify ([`Dirty::mark_quiet`]): its creator
//! notifies once its first write is in (`Core::write`), so the flusher it
//! wakes ships that write and not the topic's 0.

use crate::segvec::{SegVec, MAX_SEGMENTS, SEGMENT_LEN};
use crate::sync::{sc_order_point, AtomicU64, Ordering};
use crate::wake::Wake;

const WORDS_PER_SEGMENT: usize = SEGMENT_LEN.div_ceil(64);

#[derive(Debug)]
pub(crate) struct Dirty {
    summary: Box<[AtomicU64]>,
    words: SegVec<AtomicU64, WORDS_PER_SEGMENT>,
    /// The flusher's sleep, ended by the first change.
    pub(crate) wake: Wake,
}

impl Dirty {
    pub(crate) fn new() -> Self {
        Self {
            summary: (0..MAX_SEGMENTS).map(|_| AtomicU64::new(0)).collect(),
            words: SegVec::new(),
            wake: Wake::default(),
        }
    }

    /// Allocates the words of segment `seg` (under the table's insert lock).
    pub(crate) fn ensure_segment(&self, seg: usize) {
        self.words.ensure(seg);
    }

    /// Marks topic `id` dirty and, if that set its bit, wakes a flusher
    /// asleep waiting for a change. Call after the counter write it reports.
    #[inline]
    pub(crate) fn mark(&self, id: u32) {
        if self.mark_quiet(id) {
            self.wake.notify();
        }
    }

    /// Marks topic `id` dirty without waking the flusher; `true` if this
    /// set its bit (then someone must notify, see the module docs).
    #[inline]
    pub(crate) fn mark_quiet(&self, id: u32) -> bool {
        let id = id as usize;
        let (seg, w, bit) = (id / SEGMENT_LEN, (id % SEGMENT_LEN) / 64, 1u64 << (id % 64));
        let Some(word) = self.words.get(seg * WORDS_PER_SEGMENT + w) else { return false };
        sc_order_point();
        if word.load(Ordering::SeqCst) & bit != 0 {
            return false;
        }
        word.fetch_or(bit, Ordering::SeqCst);
        let summary = &self.summary[seg];
        let wbit = 1u64 << w;
        sc_order_point();
        if summary.load(Ordering::SeqCst) & wbit == 0 {
            summary.fetch_or(wbit, Ordering::SeqCst);
        }
        true
    }

    /// Whether any topic of the first `segments` segments is dirty (the
    /// flusher's check once armed to sleep; `SeqCst`, see the module docs).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn any(&self, segments: usize) -> bool {
        self.summary.iter().take(segments).any(|s| s.load(Ordering::SeqCst) != 0)
    }

    /// Takes every dirty bit of the first `segments` segments, calling `f`
    /// with each dirty topic id. Only one drainer may run at a time.
    pub(crate) fn drain(&self, segments: usize, mut f: impl FnMut(u32)) {
        for (seg, summary) in self.summary.iter().enumerate().take(segments) {
            let mut words = summary.swap(0, Ordering::SeqCst);
            sc_order_point();
            while words != 0 {
                let w = words.trailing_zeros() as usize;
                words &= words - 1;
                let Some(word) = self.words.get(seg * WORDS_PER_SEGMENT + w) else { continue };
                let mut bits = word.swap(0, Ordering::SeqCst);
                sc_order_point();
                while bits != 0 {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    f((seg * SEGMENT_LEN + w * 64 + b) as u32);
                }
            }
        }
    }
}
