//! [`TopicHandle`]: a topic resolved once, for hot paths.

use crate::membership::TopicKey;
use crate::shared::Core;
use crate::sync::{Arc, Ordering};
use crate::table::Entry;
use std::fmt;
use std::ptr::NonNull;

/// A resolved topic: counting through it skips the name lookup.
///
/// Created by [`Counter::topic`](crate::Counter::topic). While any handle to
/// a topic exists, topic GC leaves that topic alone, so the handle stays
/// valid however long it lives. Cheap to clone; `Send + Sync`.
///
/// ```
/// let counter = headcount::Counter::new();
/// let lobby = counter.topic(b"lobby").unwrap();
/// lobby.add(3);
/// assert!(lobby.track(7));
/// assert_eq!(lobby.count_local(), 4);
/// assert_eq!(counter.count_local(b"lobby").unwrap(), 4);
/// ```
pub struct TopicHandle {
    core: Arc<Core>,
    entry: NonNull<Entry>,
}

// SAFETY: the handle only reads the entry's immutable fields and its atomics;
// the entry outlives the handle (below), and `Core` is `Send + Sync`.
unsafe impl Send for TopicHandle {}
// SAFETY: as above; every method takes `&self` and uses atomics only.
unsafe impl Sync for TopicHandle {}

impl TopicHandle {
    /// The caller has entered `entry` and already counted this handle in
    /// `entry.handles`.
    pub(crate) fn new(core: Arc<Core>, entry: &Entry) -> Self {
        Self { core, entry: NonNull::from(entry) }
    }

    fn entry(&self) -> &Entry {
        // SAFETY: `entry.handles > 0` while this handle lives, and GC removes
        // (and later frees) only entries with no handles (see `crate::gc`,
        // step 2, which reads `handles` after its grace period).
        unsafe { self.entry.as_ref() }
    }

    fn key(&self) -> TopicKey {
        TopicKey { id: self.entry().id, gen: self.entry().gen }
    }

    /// Adds `delta` to this topic's local count (no membership).
    #[inline]
    pub fn add(&self, delta: i64) {
        self.core.add_to(self.entry().id, delta);
    }

    /// Adds connection `conn` to this topic; `true` if it was not there.
    pub fn track(&self, conn: u64) -> bool {
        let id = self.entry().id;
        self.core.members.insert(conn, self.key(), || self.core.add_to(id, 1))
    }

    /// Removes connection `conn` from this topic; `true` if it was there.
    pub fn untrack(&self, conn: u64) -> bool {
        let id = self.entry().id;
        self.core.members.remove(conn, self.key(), || self.core.add_to(id, -1))
    }

    /// The exact local count of this topic.
    pub fn count_local(&self) -> u64 {
        self.core.count(self.entry().id)
    }

    /// The topic's name.
    pub fn name(&self) -> &[u8] {
        &self.entry().name
    }
}

impl Clone for TopicHandle {
    fn clone(&self) -> Self {
        self.entry().handles.fetch_add(1, Ordering::Relaxed);
        Self { core: self.core.clone(), entry: self.entry }
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // Put the topic back in the drain's view, so that GC reconsiders it
        // if it sits at zero now that nothing pins it.
        self.core.dirty.mark(self.entry().id);
        self.entry().handles.fetch_sub(1, Ordering::Release);
    }
}

impl fmt::Debug for TopicHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicHandle")
            .field("topic", &String::from_utf8_lossy(self.name()))
            .field("count_local", &self.count_local())
            .finish()
    }
}
