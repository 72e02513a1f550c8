//! Which topics each connection is in: what makes `track` idempotent,
//! `untrack` of an absent pair a no-op, and `untrack_all` possible.
//!
//! Sharded by a hash of the connection id: `shards` mutexes, each over the
//! connections that hash to it. A connection's operations always land on the
//! same shard, so a shard lock orders them; different connections rarely
//! contend.
//!
//! Each shard maps a connection to its topics in one of three shapes, because
//! connections come in three sizes and memory per tracked pair matters at a
//! million connections:
//!
//! | shape                 | topics            | map slot | extra       | lookup |
//! |-----------------------|-------------------|----------|-------------|--------|
//! | `One(TopicKey)`       | 1 (most users)    | 24 B     | none        | compare |
//! | `Many(Few(SmallVec))` | 2..=[`SMALL_MAX`] | 24 B     | one box     | scan   |
//! | `Many(Set(HashSet))`  | more              | 24 B     | box + set   | hash   |
//!
//! A slot is the `u64` connection id plus a 16-byte [`Topics`]; with the
//! hash table between 44% and 87% full that is 28-57 B per single-topic
//! connection. A connection in 100,000 topics (a monitoring process) still
//! tracks in O(1). Shapes change as topics come and go: `One` becomes `Few`
//! on a second topic and comes back when one is left; `Few` becomes `Set`
//! past [`SMALL_MAX`] and comes back below a quarter of that.
//!
//! A [`TopicKey`] is the topic id *and* its entry's generation: ids are
//! recycled by topic GC, and the generation tells a key of a collected topic
//! from one of the id's next owner.

use crate::sync::{Mutex, RandomState};
use crossbeam_utils::CachePadded;
use smallvec::SmallVec;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

/// A topic id plus the generation of the entry it named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TopicKey {
    pub(crate) id: u32,
    pub(crate) gen: u32,
}

/// Most topics a connection keeps in a scanned list.
pub(crate) const SMALL_MAX: usize = 32;

/// One connection's topics; see the module doc.
#[derive(Debug)]
enum Topics {
    One(TopicKey),
    Many(Box<Many>),
}

#[derive(Debug)]
enum Many {
    Few(SmallVec<[TopicKey; 4]>),
    Set(HashSet<TopicKey, RandomState>),
}

impl Many {
    fn len(&self) -> usize {
        match self {
            Many::Few(v) => v.len(),
            Many::Set(s) => s.len(),
        }
    }

    fn insert(&mut self, key: TopicKey) -> bool {
        match self {
            Many::Few(v) if v.contains(&key) => false,
            Many::Few(v) if v.len() < SMALL_MAX => {
                v.push(key);
                true
            }
            Many::Few(v) => {
                let mut set: HashSet<TopicKey, RandomState> = v.drain(..).collect();
                set.insert(key);
                *self = Many::Set(set);
                true
            }
            Many::Set(s) => s.insert(key),
        }
    }

    fn remove(&mut self, key: TopicKey) -> bool {
        match self {
            Many::Few(v) => {
                let Some(pos) = v.iter().position(|k| *k == key) else { return false };
                v.swap_remove(pos);
                true
            }
            Many::Set(s) => {
                if !s.remove(&key) {
                    return false;
                }
                if s.len() < SMALL_MAX / 4 {
                    *self = Many::Few(s.drain().collect());
                }
                true
            }
        }
    }

    /// The only key left, when exactly one is.
    fn single(&self) -> Option<TopicKey> {
        match self {
            Many::Few(v) if v.len() == 1 => Some(v[0]),
            Many::Set(s) if s.len() == 1 => s.iter().next().copied(),
            _ => None,
        }
    }

    fn into_keys(self) -> Box<dyn Iterator<Item = TopicKey>> {
        match self {
            Many::Few(v) => Box::new(v.into_iter()),
            Many::Set(s) => Box::new(s.into_iter()),
        }
    }
}

impl Topics {
    fn into_keys(self) -> Box<dyn Iterator<Item = TopicKey>> {
        match self {
            Topics::One(key) => Box::new(std::iter::once(key)),
            Topics::Many(m) => m.into_keys(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Topics::One(_) => 1,
            Topics::Many(m) => m.len(),
        }
    }
}

type Shard = HashMap<u64, Topics, RandomState>;

#[derive(Debug)]
pub(crate) struct Membership {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    hasher: RandomState,
}

impl Membership {
    pub(crate) fn new(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        Self {
            shards: (0..n).map(|_| CachePadded::new(Mutex::new(Shard::default()))).collect(),
            hasher: RandomState::default(),
        }
    }

    fn shard(&self, conn: u64) -> &Mutex<Shard> {
        let h = self.hasher.hash_one(conn) as usize;
        &self.shards[(h >> 7) & (self.shards.len() - 1)]
    }

    /// Adds `(conn, key)` if absent, running `on_added` under the shard lock
    /// (so the counter write is ordered with the conn's other operations).
    pub(crate) fn insert(&self, conn: u64, key: TopicKey, on_added: impl FnOnce()) -> bool {
        let mut shard = self.shard(conn).lock();
        let added = match shard.entry(conn) {
            Entry::Vacant(slot) => {
                slot.insert(Topics::One(key));
                true
            }
            Entry::Occupied(mut slot) => match slot.get_mut() {
                Topics::One(k) if *k == key => false,
                Topics::One(k) => {
                    let first = *k;
                    *slot.get_mut() = Topics::Many(Box::new(Many::Few(smallvec::smallvec![first, key])));
                    true
                }
                Topics::Many(m) => m.insert(key),
            },
        };
        if added {
            on_added();
        }
        added
    }

    /// Removes `(conn, key)` if present, running `on_removed` under the lock.
    pub(crate) fn remove(&self, conn: u64, key: TopicKey, on_removed: impl FnOnce()) -> bool {
        let mut shard = self.shard(conn).lock();
        let Entry::Occupied(mut slot) = shard.entry(conn) else { return false };
        let removed = match slot.get_mut() {
            Topics::One(k) if *k == key => {
                slot.remove();
                true
            }
            Topics::One(_) => false,
            Topics::Many(m) => {
                let removed = m.remove(key);
                if let Some(last) = m.single() {
                    *slot.get_mut() = Topics::One(last);
                }
                removed
            }
        };
        if removed {
            on_removed();
        }
        removed
    }

    /// Removes `conn` from every topic and returns the keys it was in. The
    /// shard lock is held only to unlink the connection's set, whatever its
    /// size: the caller undoes the counts afterwards (and the set is freed
    /// as the iterator is used up), so a connection in millions of topics
    /// does not stall the other connections of its shard.
    pub(crate) fn remove_all(&self, conn: u64) -> impl Iterator<Item = TopicKey> {
        let taken = self.shard(conn).lock().remove(&conn);
        taken.into_iter().flat_map(Topics::into_keys)
    }

    /// Tracked (connection, topic) pairs. Takes every shard lock in turn.
    pub(crate) fn pairs(&self) -> usize {
        self.shards.iter().map(|s| s.lock().values().map(Topics::len).sum::<usize>()).sum()
    }

    /// Connections tracked in at least one topic.
    pub(crate) fn connections(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn key(id: u32) -> TopicKey {
        TopicKey { id, gen: 0 }
    }

    #[test]
    fn a_connection_changes_shape_without_losing_topics() {
        let m = Membership::new(4);
        let mut added = 0;
        for id in 0..1000 {
            assert!(m.insert(9, key(id), || added += 1));
            assert!(!m.insert(9, key(id), || unreachable!("already there")));
        }
        assert_eq!(added, 1000);
        assert_eq!((m.pairs(), m.connections()), (1000, 1));
        // Down through the set -> list threshold, checking membership.
        for id in 0..995 {
            assert!(m.remove(9, key(id), || {}));
            assert!(!m.remove(9, key(id), || unreachable!("already gone")));
        }
        assert_eq!(m.pairs(), 5);
        assert!(!m.insert(9, key(997), || unreachable!("still there after moving back")));
        let mut left: Vec<u32> = m.remove_all(9).map(|k| k.id).collect();
        left.sort_unstable();
        assert_eq!(left, [995, 996, 997, 998, 999]);
        assert_eq!((m.pairs(), m.connections()), (0, 0));
    }

    #[test]
    fn one_topic_becomes_many_and_back() {
        let m = Membership::new(1);
        assert!(m.insert(1, key(7), || {}));
        assert!(!m.remove(1, key(8), || unreachable!("not tracked")));
        assert!(m.insert(1, key(8), || {}));
        assert!(!m.insert(1, key(7), || unreachable!()));
        assert!(m.remove(1, key(7), || {}));
        // Back to a single key: that key is still there, the other is not.
        assert!(!m.insert(1, key(8), || unreachable!()));
        assert!(!m.remove(1, key(7), || unreachable!()));
        assert!(m.remove(1, key(8), || {}));
        assert_eq!((m.pairs(), m.connections()), (0, 0));
    }

    #[test]
    fn remove_all_of_a_large_connection() {
        let m = Membership::new(1);
        for id in 0..(SMALL_MAX as u32 * 3) {
            m.insert(1, key(id), || {});
        }
        m.insert(2, key(0), || {});
        assert_eq!(m.remove_all(1).count(), SMALL_MAX * 3);
        assert_eq!(m.remove_all(1).count(), 0);
        assert_eq!((m.pairs(), m.connections()), (1, 1));
    }
}
