//! The change feed: [`Watch`]es that are told when a topic's cluster-wide
//! count changes, in coalesced batches of [`Change`]s.
//!
//! ```text
//!  flusher (after each drain) ──┐                         ┌─▶ Inbox ─▶ Watch::next_batch
//!                               ├─▶ Feed ─▶ Hub::changed ─┼─▶ Inbox      (or poll the fd)
//!  remote view (frame applied, ─┘   count   prefix index  └─▶ Inbox
//!   peer counted / dropped)         = local + remote
//! ```
//!
//! * [`hub`]: the prefix index and the publishing protocol (fresh values
//!   under one lock; one atomic RMW when nobody watches);
//! * [`inbox`]: one watch's coalescing mailbox (at most one queued entry
//!   per topic, latest value wins);
//! * [`eventfd`]: the fd that is readable while an inbox has entries.
//!
//! Local changes are published by the flusher, with the flush that ships
//! them to peers, never on the tracking path; remote ones by the connection
//! reader that applied the frame, and by whoever changes a peer's standing
//! (snapshot, down, expired, back). Every source publishes after the change
//! is visible and recomputes the count then, so the last value a watch sees
//! for a topic is its count once changes stop.

mod eventfd;
pub(crate) mod hub;
mod inbox;
#[cfg(all(test, not(loom)))]
mod tests;

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::sync::Arc;
use crate::sync::SharedBytes as Topic;
use hub::Hub;
use inbox::Inbox;

/// One topic's new cluster-wide count, as delivered by [`Watch::next_batch`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    /// The topic.
    pub topic: Vec<u8>,
    /// Its cluster-wide count now (what `Node::count` returns), possibly 0.
    pub count: u64,
    /// Distinct users in it; equal to `count` until distinct users are
    /// counted.
    pub users: u64,
}

/// A watch of every topic starting with a prefix, from `Node::watch`.
///
/// Its consumer calls [`Watch::next_batch`], or waits for its fd
/// ([`AsRawFd`]) to poll readable, which it does while changes are pending
/// (level-triggered) and forever once the node closed. A batch names a topic
/// at most once, with its latest count; a consumer that stops reading holds
/// at most one pending entry per distinct matching topic, and slows nobody.
/// Dropping the watch ends it. `Send + Sync`; one consumer at a time.
#[derive(Debug)]
pub struct Watch {
    hub: Arc<Hub>,
    inbox: Arc<Inbox>,
}

impl Watch {
    /// Waits up to `timeout` for changes and returns them: an empty batch
    /// on timeout. `Err(Error::Closed)` once the node closed and every
    /// change delivered before has been returned.
    pub fn next_batch(&mut self, timeout: Duration) -> Result<Vec<Change>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let batch = self.inbox.take(self.hub.backlog_counter()).map_err(|()| Error::Closed)?;
            if !batch.is_empty() {
                return Ok(batch.into_iter().map(|(t, n)| Change { topic: t.to_vec(), count: n, users: n }).collect());
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Ok(Vec::new());
            }
            if self.inbox.arm() {
                self.inbox.fd().wait(left);
            }
        }
    }

    /// The prefix this watch matches.
    pub fn prefix(&self) -> &[u8] {
        self.inbox.prefix()
    }

    /// Changes pending now (distinct topics).
    pub fn pending(&self) -> usize {
        self.inbox.backlog()
    }
}

impl AsRawFd for Watch {
    /// An eventfd, readable while changes are pending. Owned by the watch:
    /// do not close it, and stop polling it before dropping the watch.
    fn as_raw_fd(&self) -> RawFd {
        self.inbox.expose().as_raw_fd()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.unregister(&self.inbox);
    }
}

/// A node's change feed: its [`Hub`] and the local counts it adds to the
/// remote ones. Cheap to clone; held by the node, its flusher and its
/// remote view.
#[derive(Debug, Clone)]
pub(crate) struct Feed {
    hub: Arc<Hub>,
    counter: Counter,
}

impl Feed {
    pub(crate) fn new(counter: Counter) -> Feed {
        Feed { hub: Arc::new(Hub::default()), counter }
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Publishes `topics` (see [`Hub::changed`]) with count = local count +
    /// `remote(topic)`.
    pub(crate) fn changed<'a>(&self, topics: impl IntoIterator<Item = &'a Topic>, remote: impl Fn(&[u8]) -> u64) {
        let local = |t: &[u8]| self.counter.count_local(t).unwrap_or(0);
        self.hub.changed(topics.into_iter().map(|t| (t, ())), |t, ()| local(t).saturating_add(remote(t)));
    }

    /// [`Feed::changed`] for the flusher, which knows each topic's id from
    /// its drain (valid until its next GC step): the local count is read by
    /// id, from counters the drain just read, with no table lookup.
    pub(crate) fn flushed<'a>(
        &self,
        drained: impl IntoIterator<Item = (&'a Topic, u32)>,
        remote: impl Fn(&[u8]) -> u64,
    ) {
        self.hub.changed(drained, |t, id| self.counter.count_of_id(id).saturating_add(remote(t)));
    }

    /// A new watch of `prefix`; with `initial`, `scan` reports every
    /// non-zero count now (see [`Hub::register`]).
    pub(crate) fn watch(
        &self,
        prefix: &[u8],
        initial: bool,
        scan: impl FnOnce(&mut dyn FnMut(&[u8], u64)),
    ) -> Result<Watch> {
        match self.hub.register(prefix, initial, scan)? {
            Some(inbox) => Ok(Watch { hub: self.hub.clone(), inbox }),
            None => Err(Error::Closed),
        }
    }
}
