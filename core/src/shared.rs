//! [`Core`]: what a counter and its topic handles share.
//!
//! Its own module so that `counter` (the API), `handle` (topic handles) and
//! `gc` depend on it and not on each other.

use crate::dirty::Dirty;
use crate::error::{Error, Result};
use crate::gc::Gc;
use crate::membership::Membership;
use crate::stripes::Stripes;
use crate::sync::{pin, spin_hint, Guard, Ordering};
use crate::table::{Entry, Table, TableFull, DEAD, DYING, LIVE};

/// The state a [`Counter`](crate::Counter) and its
/// [`TopicHandle`](crate::TopicHandle)s share (one per counter, behind an
/// `Arc`), and the write path of the [`crate::counter`] module docs.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) table: Table,
    pub(crate) stripes: Stripes,
    pub(crate) dirty: Dirty,
    pub(crate) members: Membership,
    pub(crate) gc: Gc,
    pub(crate) max_topic_len: usize,
}

impl Core {
    /// Makes `entry` writable: `true` if it is (or was revived to) `LIVE`,
    /// `false` if it is `DEAD` and the caller must look the topic up again.
    /// The caller is pinned. See [`crate::gc`] for the protocol.
    #[inline]
    pub(crate) fn enter(&self, entry: &Entry) -> bool {
        loop {
            match entry.state.load(Ordering::Acquire) {
                LIVE => return true,
                DYING => {
                    if entry.state.compare_exchange(DYING, LIVE, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                        // GC dropped this topic from its list of zeros when it
                        // marked it; a dirty bit puts it back in view.
                        self.dirty.mark(entry.id);
                        return true;
                    }
                }
                state => {
                    debug_assert_eq!(state, DEAD);
                    spin_hint();
                    return false;
                }
            }
        }
    }

    pub(crate) fn check_topic(&self, topic: &[u8]) -> Result<()> {
        if topic.is_empty() || topic.len() > self.max_topic_len {
            return Err(Error::InvalidTopic { len: topic.len(), max: self.max_topic_len });
        }
        Ok(())
    }

    /// Finds or creates `topic`, enters it, and runs `f` on it, all under one
    /// pin (so GC cannot finish removing it meanwhile).
    pub(crate) fn write<R>(&self, topic: &[u8], f: impl FnOnce(&Entry) -> R) -> Result<R> {
        self.check_topic(topic)?;
        let guard = pin();
        let hash = self.table.hash(topic);
        loop {
            let (entry, new) = self.find_or_insert(topic, hash, &guard)?;
            if self.enter(entry) {
                let r = f(entry);
                if new {
                    // Its birth mark woke nobody and `f`'s found the bit
                    // set: wake the flusher now that the write is in.
                    self.dirty.wake.notify();
                }
                return Ok(r);
            }
        }
    }

    /// The entry of `topic`, and whether this call created it.
    fn find_or_insert<'g>(&self, topic: &[u8], hash: u64, guard: &'g Guard) -> Result<(&'g Entry, bool)> {
        let found = self.table.find_or_insert(topic, hash, guard, |seg| {
            self.stripes.ensure_segment(seg);
            self.dirty.ensure_segment(seg);
        });
        let (entry, new) = found.map_err(|TableFull| Error::TooManyTopics)?;
        if new {
            // A new topic is born dirty, so a drain sees it even if nothing
            // is ever added (and GC can then collect it); quietly, so a
            // flusher woken by it does not ship the 0 before the first add.
            self.dirty.mark_quiet(entry.id);
        }
        Ok((entry, new))
    }

    /// Adds `delta` to the calling CPU's cell of `id`, then marks it dirty.
    /// The caller has entered the id's entry (or holds a handle to it).
    #[inline]
    pub(crate) fn add_to(&self, id: u32, delta: i64) {
        let added = self.stripes.add(id, delta);
        debug_assert!(added.is_some(), "published id {id} has no counter segment");
        self.dirty.mark(id);
    }

    /// The local count of `id`, clamped at zero.
    #[inline]
    pub(crate) fn count(&self, id: u32) -> u64 {
        self.stripes.sum(id).max(0) as u64
    }
}
