//! Which topics each connection is in: what makes `track` idempotent,
//! `untrack` of an absent pair a no-op, and `untrack_all` possible.
//!
//! Sharded by a hash of the connection id: `shards` mutexes, each over the
//! connections that hash to it. A connection's operations always land on the
//! same shard, so a shard lock orders them; different connections rarely
//! contend.
//!
//! Each shard keeps two maps, because connections come in two sizes:
//!
//! | map     | holds                                | per connection            | lookup  |
//! |---------|--------------------------------------|---------------------------|---------|
//! | `small` | connections in up to [`SMALL_MAX`] topics | `SmallVec<[TopicKey; 2]>`, inline up to 2 | scan |
//! | `large` | connections in more                  | `HashSet<TopicKey>`       | hash    |
//!
//! The common connection (a user in one or two rooms) costs one map slot and
//! no allocation; a connection in 100,000 topics (a monitoring process) still
//! tracks in O(1). A connection moves to `large` when it passes
//! [`SMALL_MAX`] topics and back when it drops below a quarter of that. The
//! `large` map is usually empty, and a lookup in an empty map returns before
//! hashing, so small connections pay nothing for it.
//!
//! A [`TopicKey`] is the topic id *and* its entry's generation: ids are
//! recycled by topic GC, and the generation tells a key of a collected topic
//! from one of the id's next owner.

use crate::sync::{Mutex, RandomState};
use crossbeam_utils::CachePadded;
use smallvec::SmallVec;
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

type Small = SmallVec<[TopicKey; 2]>;
type Large = HashSet<TopicKey, RandomState>;

#[derive(Debug, Default)]
struct Shard {
    small: HashMap<u64, Small, RandomState>,
    large: HashMap<u64, Large, RandomState>,
}

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
        let mut guard = self.shard(conn).lock();
        let shard = &mut *guard;
        if let Some(set) = shard.large.get_mut(&conn) {
            if !set.insert(key) {
                return false;
            }
        } else {
            let topics = shard.small.entry(conn).or_default();
            if topics.contains(&key) {
                return false;
            }
            if topics.len() < SMALL_MAX {
                topics.push(key);
            } else {
                let mut set: Large = topics.drain(..).collect();
                set.insert(key);
                shard.small.remove(&conn);
                shard.large.insert(conn, set);
            }
        }
        on_added();
        true
    }

    /// Removes `(conn, key)` if present, running `on_removed` under the lock.
    pub(crate) fn remove(&self, conn: u64, key: TopicKey, on_removed: impl FnOnce()) -> bool {
        let mut guard = self.shard(conn).lock();
        let shard = &mut *guard;
        if let Some(set) = shard.large.get_mut(&conn) {
            if !set.remove(&key) {
                return false;
            }
            if set.len() < SMALL_MAX / 4 {
                let small: Small = set.drain().collect();
                shard.large.remove(&conn);
                if !small.is_empty() {
                    shard.small.insert(conn, small);
                }
            }
        } else {
            let Some(topics) = shard.small.get_mut(&conn) else { return false };
            let Some(pos) = topics.iter().position(|k| *k == key) else { return false };
            topics.swap_remove(pos);
            if topics.is_empty() {
                shard.small.remove(&conn);
            } else if topics.spilled() && topics.len() * 4 < topics.capacity() {
                topics.shrink_to_fit();
            }
        }
        on_removed();
        true
    }

    /// Removes `conn` from every topic, calling `on_removed` for each key
    /// under the shard lock; it returns whether the key still named a live
    /// topic. Returns how many of those there were.
    pub(crate) fn remove_all(&self, conn: u64, mut on_removed: impl FnMut(TopicKey) -> bool) -> usize {
        let mut guard = self.shard(conn).lock();
        let shard = &mut *guard;
        if let Some(set) = shard.large.remove(&conn) {
            return set.into_iter().filter(|key| on_removed(*key)).count();
        }
        let Some(topics) = shard.small.remove(&conn) else { return 0 };
        topics.into_iter().filter(|key| on_removed(*key)).count()
    }

    /// Tracked (connection, topic) pairs. Takes every shard lock in turn.
    pub(crate) fn pairs(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.small.values().map(|t| t.len()).sum::<usize>() + s.large.values().map(|t| t.len()).sum::<usize>()
            })
            .sum()
    }

    /// Connections tracked in at least one topic.
    pub(crate) fn connections(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.small.len() + s.large.len()
            })
            .sum()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn key(id: u32) -> TopicKey {
        TopicKey { id, gen: 0 }
    }

    #[test]
    fn a_connection_moves_between_small_and_large_without_losing_topics() {
        let m = Membership::new(4);
        let mut added = 0;
        for id in 0..1000 {
            assert!(m.insert(9, key(id), || added += 1));
            assert!(!m.insert(9, key(id), || unreachable!("already there")));
        }
        assert_eq!(added, 1000);
        assert_eq!((m.pairs(), m.connections()), (1000, 1));
        // Down through the large -> small threshold, checking membership.
        for id in 0..995 {
            assert!(m.remove(9, key(id), || {}));
            assert!(!m.remove(9, key(id), || unreachable!("already gone")));
        }
        assert_eq!(m.pairs(), 5);
        assert!(!m.insert(9, key(997), || unreachable!("still there after moving back")));
        let mut left = Vec::new();
        assert_eq!(
            m.remove_all(9, |k| {
                left.push(k.id);
                true
            }),
            5
        );
        left.sort_unstable();
        assert_eq!(left, [995, 996, 997, 998, 999]);
        assert_eq!((m.pairs(), m.connections()), (0, 0));
    }

    #[test]
    fn remove_all_of_a_large_connection() {
        let m = Membership::new(1);
        for id in 0..(SMALL_MAX as u32 * 3) {
            m.insert(1, key(id), || {});
        }
        m.insert(2, key(0), || {});
        assert_eq!(m.remove_all(1, |_| true), SMALL_MAX * 3);
        assert_eq!(m.remove_all(1, |_| true), 0);
        assert_eq!((m.pairs(), m.connections()), (1, 1));
    }
}
