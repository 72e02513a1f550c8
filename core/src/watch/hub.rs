//! [`Hub`]: the registry of a node's watches, and the one path by which a
//! changed topic reaches them.
//!
//! # Matching is indexed by prefix
//!
//! ```text
//!  by_prefix: prefix bytes -> the inboxes watching exactly that prefix
//!  lens:      prefix length -> how many registered prefixes have it
//! ```
//!
//! A changed topic `t` is matched by looking up `t[..len]` in `by_prefix`
//! for every registered length `len <= t.len()`: the cost grows with the
//! number of distinct prefix *lengths*, never with the number of watches, so
//! 10,000 watches on distinct exact topics cost one lookup per change (per
//! distinct length), like one watch.
//!
//! # Publishing: fresh values under one lock
//!
//! A change source (the flusher after a drain, the remote view after it
//! applied a frame or a peer's state changed) calls [`Hub::changed`] *after*
//! the change is visible, with the topics that may have changed and a
//! function giving a topic's count now. Under the index lock it computes
//! each matched topic's count and offers it to every matching inbox. The
//! lock serialises publishers, so for each topic the last value offered was
//! computed after every change that had completed before it: once changes
//! stop, every inbox's latest value of a topic is its count.
//!
//! # No watches: one atomic operation, and the flag protocol
//!
//! `watches` counts registered watches. A source first does
//! `watches.fetch_add(0, AcqRel)` and returns at once on 0, so a node without
//! watches pays one uncontended read-modify-write per drain or frame. A
//! watch registers, under the index lock, with `watches.fetch_add(1,
//! AcqRel)` and then (with `initial`) scans the current counts. Both are
//! read-modify-writes of one atomic, so they are ordered in its modification
//! order:
//!
//! * the source's comes first (it read 0 and skipped): the registration's
//!   RMW reads from it, so the change, done before the source's RMW,
//!   happens before the scan, which sees it;
//! * the registration's comes first: the source reads non-zero and publishes
//!   under the index lock, after the registration released it, so to the new
//!   inbox too.
//!
//! Either way the change reaches the new watch (loom model:
//! `watch_registration_sees_every_change` in `loom_models.rs`). A plain
//! load on the source's side would not do: it could read 0 while the scan
//! misses the change (the store-buffering pattern).

use std::collections::{BTreeMap, HashMap};

use smallvec::SmallVec;

use super::inbox::Inbox;
use crate::sync::SharedBytes as Topic;
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering, RandomState};

/// Offers handed to inboxes at a time by [`Hub::changed`].
const OFFER_CHUNK: usize = 256;

/// The inboxes watching one prefix (usually one).
type Inboxes = SmallVec<[Arc<Inbox>; 1]>;

#[derive(Debug, Default)]
struct Index {
    by_prefix: HashMap<Box<[u8]>, Inboxes, RandomState>,
    lens: BTreeMap<usize, usize>,
    closed: bool,
}

impl Index {
    /// Calls `f` for every inbox whose prefix `topic` starts with.
    fn matching<'a>(&'a self, topic: &[u8], mut f: impl FnMut(&'a Arc<Inbox>)) {
        for &len in self.lens.range(..=topic.len()).map(|(l, _)| l) {
            if let Some(ws) = self.by_prefix.get(&topic[..len]) {
                ws.iter().for_each(&mut f);
            }
        }
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    watches: AtomicUsize,
    backlog: AtomicUsize,
    index: Mutex<Index>,
}

impl Hub {
    /// Offers the count now (`count(topic)`) of every topic in `topics` to
    /// the watches matching it. Call it after the change is visible to
    /// `count`. Costs one atomic RMW when there are no watches.
    ///
    /// Each item is a topic and what `count` needs besides it (its id, say).
    pub(crate) fn changed<'a, X>(
        &self,
        items: impl IntoIterator<Item = (&'a Topic, X)>,
        count: impl Fn(&[u8], X) -> u64,
    ) {
        if self.watches.fetch_add(0, Ordering::AcqRel) != 0 {
            self.publish(items, count);
        }
    }

    /// A broken [`Hub::changed`], for the loom model's check that it catches
    /// a broken protocol: a plain load of the flag (see the module docs).
    #[cfg(all(loom, test))]
    pub(crate) fn changed_with_plain_load<'a, X>(
        &self,
        items: impl IntoIterator<Item = (&'a Topic, X)>,
        count: impl Fn(&[u8], X) -> u64,
    ) {
        if self.watches.load(Ordering::Acquire) != 0 {
            self.publish(items, count);
        }
    }

    /// Offers every matched topic's count, each inbox's run of consecutive
    /// offers under one lock of it (one watch of everything: one lock per
    /// [`OFFER_CHUNK`] changes). The offers wait in a fixed buffer on the
    /// stack: a heap buffer the size of a big flush, freed every flush, made
    /// glibc consolidate its free lists on the flusher thread each time.
    fn publish<'a, X>(&self, items: impl IntoIterator<Item = (&'a Topic, X)>, count: impl Fn(&[u8], X) -> u64) {
        let ix = self.index.lock();
        let mut hits: SmallVec<[&Arc<Inbox>; 4]> = SmallVec::new();
        let mut offers: SmallVec<[(&Arc<Inbox>, &Topic, u64); OFFER_CHUNK]> = SmallVec::new();
        let deliver = |offers: &mut SmallVec<[(&Arc<Inbox>, &Topic, u64); OFFER_CHUNK]>| {
            for run in offers.chunk_by(|a, b| Arc::ptr_eq(a.0, b.0)) {
                run[0].0.offer_all(run.iter().map(|&(_, t, n)| (t, n)), &self.backlog);
            }
            offers.clear();
        };
        for (topic, x) in items {
            hits.clear();
            ix.matching(topic, |w| hits.push(w));
            if hits.is_empty() {
                continue;
            }
            let n = count(topic, x);
            for w in &hits {
                if offers.len() == OFFER_CHUNK {
                    deliver(&mut offers);
                }
                offers.push((*w, topic, n));
            }
        }
        deliver(&mut offers);
    }

    /// Registers a watch of `prefix`. With `initial`, `scan` is called (under
    /// the index lock, after the registration is visible to sources) and must
    /// report every topic matching `prefix` whose count is non-zero, with its
    /// count now. `None` once the hub is closed.
    pub(crate) fn register(
        &self,
        prefix: &[u8],
        initial: bool,
        scan: impl FnOnce(&mut dyn FnMut(&[u8], u64)),
    ) -> std::io::Result<Option<Arc<Inbox>>> {
        let inbox = Arc::new(Inbox::new(prefix)?);
        let mut ix = self.index.lock();
        if ix.closed {
            return Ok(None);
        }
        self.watches.fetch_add(1, Ordering::AcqRel);
        if initial {
            scan(&mut |topic, n| {
                if topic.starts_with(prefix) {
                    inbox.offer_all([(&Topic::from(topic), n)], &self.backlog);
                }
            });
        }
        let ws = ix.by_prefix.entry(prefix.into()).or_default();
        ws.push(inbox.clone());
        if ws.len() == 1 {
            *ix.lens.entry(prefix.len()).or_default() += 1;
        }
        Ok(Some(inbox))
    }

    /// Ends the watch behind `inbox` (idempotent).
    pub(crate) fn unregister(&self, inbox: &Arc<Inbox>) {
        let mut ix = self.index.lock();
        let prefix = inbox.prefix();
        let Some(ws) = ix.by_prefix.get_mut(prefix) else { return };
        let before = ws.len();
        ws.retain(|w| !Arc::ptr_eq(w, inbox));
        if ws.len() == before {
            return;
        }
        if ws.is_empty() {
            ix.by_prefix.remove(prefix);
            if let Some(n) = ix.lens.get_mut(&prefix.len()) {
                *n -= 1;
                if *n == 0 {
                    ix.lens.remove(&prefix.len());
                }
            }
        }
        self.watches.fetch_sub(1, Ordering::AcqRel);
        drop(ix);
        self.backlog.fetch_sub(inbox.close(), Ordering::Relaxed);
    }

    /// Closes every watch (they report closed once drained) and refuses new
    /// ones: the node is closing.
    pub(crate) fn close(&self) {
        let mut ix = self.index.lock();
        ix.closed = true;
        for ws in ix.by_prefix.values() {
            for w in ws {
                w.close();
            }
        }
    }

    /// The counter of queued entries that inboxes update.
    pub(crate) fn backlog_counter(&self) -> &AtomicUsize {
        &self.backlog
    }

    /// Entries queued in all watches, not yet taken.
    pub(crate) fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Watches registered.
    pub(crate) fn watches(&self) -> usize {
        self.watches.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn t(s: &str) -> Topic {
        Topic::from(s.as_bytes())
    }

    fn taken(hub: &Hub, i: &Inbox) -> Vec<(String, u64)> {
        let v = i.take(hub.backlog_counter()).unwrap();
        v.into_iter().map(|(t, n)| (String::from_utf8(t.to_vec()).unwrap(), n)).collect()
    }

    #[test]
    fn changes_reach_the_watches_whose_prefix_matches() {
        let hub = Hub::default();
        let all = hub.register(b"", false, |_| {}).unwrap().unwrap();
        let room = hub.register(b"room:", false, |_| {}).unwrap().unwrap();
        let exact = hub.register(b"room:1", false, |_| {}).unwrap().unwrap();
        let exact2 = hub.register(b"room:1", false, |_| {}).unwrap().unwrap();
        assert_eq!(hub.watches(), 4);
        let topics = [t("room:1"), t("room:12"), t("lobby"), t("room")];
        hub.changed(topics.iter().map(|t| (t, ())), |t, ()| t.len() as u64);
        assert_eq!(
            taken(&hub, &all),
            [("room:1".into(), 6), ("room:12".into(), 7), ("lobby".into(), 5), ("room".into(), 4)]
        );
        assert_eq!(taken(&hub, &room), [("room:1".into(), 6), ("room:12".into(), 7)]);
        assert_eq!(taken(&hub, &exact), [("room:1".into(), 6), ("room:12".into(), 7)]);
        assert_eq!(taken(&hub, &exact2).len(), 2);
        hub.unregister(&exact);
        hub.unregister(&exact);
        assert_eq!(hub.watches(), 3);
        hub.changed([(&t("room:1"), ())], |_, ()| 9);
        assert_eq!(exact.take(hub.backlog_counter()), Err(()));
        assert_eq!(taken(&hub, &exact2), [("room:1".into(), 9)]);
        for w in [&all, &room, &exact2] {
            hub.unregister(w);
        }
        assert_eq!((hub.watches(), hub.backlog()), (0, 0));
        assert!(hub.index.lock().lens.is_empty());
    }

    #[test]
    fn initial_reports_matching_non_zero_topics_and_close_ends_watches() {
        let hub = Hub::default();
        let w = hub
            .register(b"a", true, |emit| {
                emit(b"ab", 2);
                emit(b"b", 3);
            })
            .unwrap()
            .unwrap();
        assert_eq!(hub.backlog(), 1);
        assert_eq!(taken(&hub, &w), [("ab".into(), 2)]);
        hub.close();
        assert_eq!(w.take(hub.backlog_counter()), Err(()));
        assert!(hub.register(b"", false, |_| {}).unwrap().is_none());
    }
}
