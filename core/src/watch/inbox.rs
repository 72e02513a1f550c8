//! [`Inbox`]: one watch's coalescing mailbox.
//!
//! ```text
//!  entries: topic -> { delivered, latest, queued }   (under one mutex)
//!  queue:   topics whose `queued` flag is set, in first-queued order
//!  fd:      once exposed or armed: readable iff `queue` is non-empty
//!           (or the inbox is closed)
//! ```
//!
//! [`Inbox::offer_all`] (the publisher, under the hub lock) records the
//! latest value of each topic and queues the topic if it is not queued yet: a topic is
//! queued at most once however often it changes, so the backlog is bounded
//! by the number of distinct matching topics. [`Inbox::take`] (the consumer)
//! empties the queue and reports, for each queued topic whose latest value
//! differs from the one it last delivered, that value. A topic whose entry
//! says "delivered 0, latest 0" is forgotten, so `entries` holds only topics
//! with a non-zero delivered value or a queued change.
//!
//! Neither side waits for the other beyond this short critical section: a
//! consumer that never reads costs memory bounded by its topics, never time.
//!
//! The fd costs a syscall per signal, so it is kept in step with the queue
//! only while someone may look at it: from the moment its number is handed
//! out ([`Inbox::expose`], for poll loops: level-triggered from then on),
//! and while the consumer waits in `next_batch` ([`Inbox::arm`], until its
//! next take). A watch read only by `next_batch` calls, and never waiting,
//! costs no syscall at all. All of it is under the inbox lock, so the fd's
//! state always matches `fd_set`.

use std::collections::HashMap;

use super::eventfd::EventFd;
use crate::sync::SharedBytes as Topic;
use crate::sync::{AtomicUsize, Mutex, Ordering, RandomState};

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    delivered: u64,
    latest: u64,
    queued: bool,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Topic, Entry, RandomState>,
    queue: Vec<Topic>,
    /// The previous queue's buffer, reused (see [`Inbox::take`]).
    spare: Vec<Topic>,
    closed: bool,
    /// The fd's number was handed out: keep it in step for good.
    exposed: bool,
    /// The consumer waits on the fd: keep it in step until its next take.
    armed: bool,
    /// The fd is readable now.
    fd_set: bool,
}

impl State {
    /// Makes the fd readable if someone may look at it and something is
    /// queued (or the inbox closed).
    fn signal(&mut self, fd: &EventFd) {
        if !self.fd_set && (self.exposed || self.armed) && (!self.queue.is_empty() || self.closed) {
            fd.set();
            self.fd_set = true;
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Inbox {
    prefix: Box<[u8]>,
    state: Mutex<State>,
    fd: EventFd,
}

impl Inbox {
    pub(crate) fn new(prefix: &[u8]) -> std::io::Result<Inbox> {
        Ok(Inbox { prefix: prefix.into(), state: Mutex::new(State::default()), fd: EventFd::new()? })
    }

    /// The prefix this inbox watches.
    pub(crate) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    pub(crate) fn fd(&self) -> &EventFd {
        &self.fd
    }

    /// [`Inbox::offer_all`] of one topic.
    #[cfg(test)]
    pub(crate) fn offer(&self, topic: &Topic, count: u64, backlog: &AtomicUsize) {
        self.offer_all([(topic, count)], backlog);
    }

    /// Records that each topic's count is now `count`, under one lock, and
    /// adds to `backlog` the topics that were not queued yet.
    pub(crate) fn offer_all<'a>(&self, items: impl IntoIterator<Item = (&'a Topic, u64)>, backlog: &AtomicUsize) {
        let mut s = self.state.lock();
        if s.closed {
            return;
        }
        let mut queued = 0;
        for (topic, count) in items {
            let e = match s.entries.get_mut(&topic[..]) {
                Some(e) => e,
                None if count == 0 => continue, // never delivered non-zero: nothing to say
                None => s.entries.entry(topic.clone()).or_default(),
            };
            e.latest = count;
            if !e.queued {
                e.queued = true;
                s.queue.push(topic.clone());
                queued += 1;
            }
        }
        backlog.fetch_add(queued, Ordering::Relaxed);
        s.signal(&self.fd);
    }

    /// Hands out the fd for good: from now on it is readable iff changes
    /// are queued (or the inbox closed).
    pub(crate) fn expose(&self) -> &EventFd {
        let mut s = self.state.lock();
        s.exposed = true;
        s.signal(&self.fd);
        &self.fd
    }

    /// Before the consumer waits on the fd: `false` if something is queued
    /// or the inbox closed (take instead of waiting); else the fd is kept in
    /// step until the next [`Inbox::take`].
    pub(crate) fn arm(&self) -> bool {
        let mut s = self.state.lock();
        if !s.queue.is_empty() || s.closed {
            return false;
        }
        s.armed = true;
        true
    }

    /// Takes every queued change (topic, latest value) whose value differs
    /// from the one last taken, in first-queued order. `Err(())` when the
    /// inbox is closed and nothing is queued.
    pub(crate) fn take(&self, backlog: &AtomicUsize) -> Result<Vec<(Topic, u64)>, ()> {
        let mut s = self.state.lock();
        s.armed = false;
        if s.queue.is_empty() {
            return if s.closed { Err(()) } else { Ok(Vec::new()) };
        }
        // The queue's buffer goes back as `spare`: freeing a big buffer every
        // batch makes glibc consolidate its free lists each time.
        let spare = std::mem::take(&mut s.spare);
        let mut queue = std::mem::replace(&mut s.queue, spare);
        backlog.fetch_sub(queue.len(), Ordering::Relaxed);
        let mut out = Vec::with_capacity(queue.len());
        for topic in queue.drain(..) {
            let Some(e) = s.entries.get_mut(&topic[..]) else { continue };
            e.queued = false;
            let (changed, n) = (e.latest != e.delivered, e.latest);
            e.delivered = n;
            if n == 0 {
                s.entries.remove(&topic[..]);
            }
            if changed {
                out.push((topic, n));
            }
        }
        if s.fd_set && !s.closed {
            self.fd.reset();
            s.fd_set = false;
        }
        s.spare = queue;
        Ok(out)
    }

    /// Entries queued now.
    pub(crate) fn backlog(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Ends the inbox: later offers are dropped, and once the queue is taken
    /// [`Inbox::take`] says closed. The fd stays readable from now on, so a
    /// poller wakes and learns it. Returns the entries that were queued.
    pub(crate) fn close(&self) -> usize {
        let mut s = self.state.lock();
        s.closed = true;
        s.exposed = true;
        s.signal(&self.fd);
        s.queue.len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn t(s: &str) -> Topic {
        Topic::from(s.as_bytes())
    }

    #[test]
    fn a_topic_is_queued_once_with_its_latest_value() {
        let (i, b) = (Inbox::new(b"").unwrap(), AtomicUsize::new(0));
        i.offer(&t("x"), 1, &b);
        assert!(!i.fd().wait(std::time::Duration::ZERO), "not exposed: not signalled");
        assert!(i.expose().wait(std::time::Duration::ZERO), "exposed: in step at once");
        assert_eq!(i.take(&b).unwrap(), vec![(t("x"), 1)]);
        assert!(!i.fd().wait(std::time::Duration::ZERO));
        for n in [1, 2, 3] {
            i.offer(&t("a"), n, &b);
        }
        i.offer(&t("b"), 7, &b);
        assert_eq!((i.backlog(), b.load(Ordering::Relaxed)), (2, 2));
        assert!(i.fd().wait(std::time::Duration::ZERO));
        assert_eq!(i.take(&b).unwrap(), vec![(t("a"), 3), (t("b"), 7)]);
        assert!(!i.fd().wait(std::time::Duration::ZERO));
        assert_eq!(b.load(Ordering::Relaxed), 0);
        // Back to the delivered value before the consumer looked: no change.
        i.offer(&t("a"), 4, &b);
        i.offer(&t("a"), 3, &b);
        assert_eq!(i.take(&b).unwrap(), vec![]);
        // A final zero is delivered, then the topic is forgotten.
        i.offer(&t("b"), 0, &b);
        assert_eq!(i.take(&b).unwrap(), vec![(t("b"), 0)]);
        i.offer(&t("b"), 0, &b);
        assert_eq!(i.backlog(), 0);
        assert_eq!(i.close(), 0);
        assert!(i.fd().wait(std::time::Duration::ZERO));
        assert_eq!(i.take(&b), Err(()));
    }
}
