//! Per-connection topic ids: each direction of a connection names topics by
//! small ids defined inline (the DEFINE bit of an entry's topic ref,
//! docs/PROTOCOL.md section 5.5), so a changed topic costs two or three bytes
//! on the wire instead of its name.
//!
//! [`OutTopics`] assigns the ids we send; `InTopics` resolves the ids the peer
//! defined, within the per-peer limits ([`InLimits`]: topic length, ids,
//! bytes of names) and the reuse rule (only an id last counted 0 may be
//! redefined). Together these bound what one peer can make a node hold: the
//! remote view keeps a peer's count of a topic only while some id the peer
//! defined names it with a non-zero count, so its topics and their bytes
//! never pass the peer's ids and their bytes.

use std::collections::{HashMap, VecDeque};

use super::super::wire::{Entry, MAX_TOPIC_ID};
use super::ConnError;
use crate::sync::SharedBytes;

/// A topic name, shared between the id table and the events that carry it.
pub type Topic = SharedBytes;

/// Outbound topic-id table size past which ids of zero-count topics are reused.
pub const DEFAULT_ID_SOFT_CAP: usize = 1 << 20;

/// Outbound per-connection topic ids: name -> id, assigned on first send.
///
/// Ids are dense from 0. Once the table holds `soft_cap` ids, a new topic
/// takes the id of the topic least recently sent as zero (FIFO), so a node
/// that sees millions of short-lived topics keeps a bounded table per peer.
/// Ids of topics last sent non-zero are never reused: the receiver keeps
/// counting them under their name.
#[derive(Debug)]
pub struct OutTopics {
    by_name: HashMap<Topic, u32, foldhash::fast::RandomState>,
    by_id: Vec<(Topic, u64)>,
    zeros: VecDeque<u32>,
    soft_cap: usize,
}

impl OutTopics {
    /// An empty table.
    pub fn new(soft_cap: usize) -> OutTopics {
        OutTopics {
            by_name: HashMap::default(),
            by_id: Vec::new(),
            zeros: VecDeque::new(),
            soft_cap: soft_cap.clamp(1, MAX_TOPIC_ID as usize + 1),
        }
    }

    /// Makes room for `ids` ids in all (a snapshot of that many topics about
    /// to be sent), so that the table does not grow step by step while it
    /// is sent. At most the ids the wire allows.
    pub fn reserve(&mut self, ids: usize) {
        let more = ids.min(MAX_TOPIC_ID as usize + 1).saturating_sub(self.by_id.len());
        self.by_name.reserve(more);
        self.by_id.reserve(more);
    }

    /// Ids in use.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no id is in use.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The wire entry for sending `count` for `name`, defining an id if needed.
    pub fn entry(&mut self, name: &[u8], count: u64) -> Result<Entry, ConnError> {
        if let Some(&id) = self.by_name.get(name) {
            let slot = &mut self.by_id[id as usize];
            if count == 0 && slot.1 != 0 {
                self.zeros.push_back(id);
            }
            slot.1 = count;
            return Ok(Entry { id, name: None, count });
        }
        let name = Topic::from(name);
        let topic = name.clone();
        let id = match self.reusable_id() {
            Some(id) => {
                let old = std::mem::replace(&mut self.by_id[id as usize], (topic.clone(), count));
                self.by_name.remove(&old.0);
                id
            }
            None => {
                if self.by_id.len() > MAX_TOPIC_ID as usize {
                    return Err(ConnError::TooManyTopics);
                }
                self.by_id.push((topic.clone(), count));
                (self.by_id.len() - 1) as u32
            }
        };
        self.by_name.insert(topic, id);
        if count == 0 {
            self.zeros.push_back(id);
        }
        Ok(Entry { id, name: Some(name), count })
    }

    fn reusable_id(&mut self) -> Option<u32> {
        if self.by_id.len() < self.soft_cap {
            return None;
        }
        while let Some(id) = self.zeros.pop_front() {
            // Stale queue entries (sent non-zero since) are skipped.
            if self.by_id.get(id as usize).is_some_and(|s| s.1 == 0) {
                return Some(id);
            }
        }
        None
    }
}

/// What one peer may define on a connection (config keys `max_topic_len`,
/// `max_peer_topics`, `max_peer_topic_bytes`).
#[derive(Clone, Copy, Debug)]
pub(super) struct InLimits {
    pub(super) topic_len: usize,
    pub(super) topics: usize,
    pub(super) bytes: usize,
}

/// Inbound per-connection topic ids, as defined by the peer, with the last
/// count received for each.
#[derive(Debug)]
pub(super) struct InTopics {
    by_id: Vec<(Topic, u64)>,
    /// Bytes of the names in `by_id`.
    bytes: usize,
    limits: InLimits,
}

impl InTopics {
    pub(super) fn new(limits: InLimits) -> InTopics {
        InTopics { by_id: Vec::new(), bytes: 0, limits }
    }

    /// The topic and count an entry from the peer stands for, recording
    /// its definition if it has one.
    pub(super) fn resolve(&mut self, e: Entry) -> Result<(Topic, u64), ConnError> {
        let next = self.by_id.len() as u32;
        let Some(name) = e.name else {
            return match self.by_id.get_mut(e.id as usize) {
                Some(slot) => {
                    slot.1 = e.count;
                    Ok((slot.0.clone(), e.count))
                }
                None => Err(ConnError::UnknownTopicId(e.id)),
            };
        };
        let l = self.limits;
        if name.len() > l.topic_len {
            return Err(ConnError::PeerTooLarge { what: "bytes in a topic (max_topic_len)", limit: l.topic_len });
        }
        let replaced = match self.by_id.get(e.id as usize) {
            Some(old) if old.1 != 0 => return Err(ConnError::BadRedefine(e.id)),
            Some(old) => old.0.len(),
            None if e.id == next => {
                if self.by_id.len() >= l.topics {
                    return Err(ConnError::PeerTooLarge { what: "topics (max_peer_topics)", limit: l.topics });
                }
                0
            }
            None => return Err(ConnError::BadDefine { id: e.id, next }),
        };
        let bytes = self.bytes - replaced + name.len();
        if bytes > l.bytes {
            return Err(ConnError::PeerTooLarge {
                what: "bytes of topic names (max_peer_topic_bytes)",
                limit: l.bytes,
            });
        }
        self.bytes = bytes;
        let topic: Topic = name;
        if e.id == next {
            self.by_id.push((topic.clone(), e.count));
        } else {
            self.by_id[e.id as usize] = (topic.clone(), e.count);
        }
        Ok((topic, e.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_topics_reuse_zero_ids_past_soft_cap() {
        let mut t = OutTopics::new(2);
        assert_eq!(t.entry(b"a", 1).unwrap().id, 0);
        assert_eq!(t.entry(b"b", 0).unwrap().id, 1);
        // Table full: "c" takes b's id (last sent zero), redefining it.
        let e = t.entry(b"c", 5).unwrap();
        assert_eq!((e.id, e.name.as_deref()), (1, Some(&b"c"[..])));
        // "b" is new again; no zero id is free, so the table grows.
        assert_eq!(t.entry(b"b", 1).unwrap().id, 2);
        // A topic going to zero then back is not reused in between.
        t.entry(b"a", 0).unwrap();
        t.entry(b"a", 1).unwrap();
        assert_eq!(t.entry(b"d", 1).unwrap().id, 3);
        assert_eq!(t.len(), 4);
        // Now zero "c" and a newcomer takes its id.
        t.entry(b"c", 0).unwrap();
        assert_eq!(t.entry(b"e", 1).unwrap().id, 1);
        assert_eq!(t.entry(b"e", 2).unwrap(), Entry { id: 1, name: None, count: 2 });
        assert_eq!(t.entry(b"c", 2).unwrap().name.as_deref(), Some(&b"c"[..]));
    }
}
