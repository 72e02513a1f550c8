//! Which topics each connection is in: what makes `track` idempotent,
//! `untrack` of an absent pair a no-op, and `untrack_all` possible.
//!
//! Sharded by a hash of the connection id: `shards` mutexes, each over a map
//! `conn -> [TopicKey]`. A connection's operations always land on the same
//! shard, so a shard lock orders them; different connections rarely contend.
//! The topic list is a `SmallVec` with two inline keys, so the common
//! connection (in one or two topics) costs one map slot and no allocation.
//!
//! A [`TopicKey`] is the topic id *and* its entry's generation: ids are
//! recycled by topic GC, and the generation tells a key of a collected topic
//! from one of the id's next owner.

use crate::sync::{Mutex, RandomState};
use crossbeam_utils::CachePadded;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::hash::BuildHasher;

/// A topic id plus the generation of the entry it named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TopicKey {
    pub(crate) id: u32,
    pub(crate) gen: u32,
}

type Topics = SmallVec<[TopicKey; 2]>;
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
        let topics = shard.entry(conn).or_default();
        if topics.contains(&key) {
            return false;
        }
        topics.push(key);
        on_added();
        true
    }

    /// Removes `(conn, key)` if present, running `on_removed` under the lock.
    pub(crate) fn remove(&self, conn: u64, key: TopicKey, on_removed: impl FnOnce()) -> bool {
        let mut shard = self.shard(conn).lock();
        let Some(topics) = shard.get_mut(&conn) else { return false };
        let Some(pos) = topics.iter().position(|k| *k == key) else { return false };
        topics.swap_remove(pos);
        if topics.is_empty() {
            shard.remove(&conn);
        } else if topics.spilled() && topics.len() * 4 < topics.capacity() {
            topics.shrink_to_fit();
        }
        on_removed();
        true
    }

    /// Removes `conn` from every topic, calling `on_removed` for each key
    /// under the shard lock; it returns whether the key still named a live
    /// topic. Returns how many of those there were.
    pub(crate) fn remove_all(&self, conn: u64, mut on_removed: impl FnMut(TopicKey) -> bool) -> usize {
        let mut shard = self.shard(conn).lock();
        let Some(topics) = shard.remove(&conn) else { return 0 };
        topics.into_iter().filter(|key| on_removed(*key)).count()
    }

    /// Tracked (connection, topic) pairs. Takes every shard lock in turn.
    pub(crate) fn pairs(&self) -> usize {
        self.shards.iter().map(|s| s.lock().values().map(|t| t.len()).sum::<usize>()).sum()
    }

    /// Connections tracked in at least one topic.
    pub(crate) fn connections(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}
