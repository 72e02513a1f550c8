//! [`Top`]: the k best of a stream of (topic, count) pairs, for
//! `Node::top`: highest count first, ties broken by topic bytes ascending.
//!
//! A scan, not an index: `Node::top` feeds every topic with a non-zero
//! count through [`Top::offer`], which keeps the k best so far in a binary
//! min-heap (its root is the worst kept). A candidate that does not beat
//! the root costs one comparison and no allocation, so a scan of n topics
//! costs O(n + k log k · log n) in practice (BENCHMARKS.md has figures).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

#[derive(Debug, PartialEq, Eq)]
struct Ranked {
    count: u64,
    topic: Vec<u8>,
}

impl Ord for Ranked {
    /// Greater is better: a higher count, then smaller topic bytes.
    fn cmp(&self, o: &Self) -> Ordering {
        self.count.cmp(&o.count).then_with(|| o.topic.cmp(&self.topic))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Top {
    k: usize,
    heap: BinaryHeap<Reverse<Ranked>>,
}

impl Top {
    pub(crate) fn new(k: usize) -> Top {
        Top { k, heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1) }
    }

    /// Considers `topic` at `count`.
    pub(crate) fn offer(&mut self, topic: &[u8], count: u64) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() == self.k {
            let Reverse(worst) = self.heap.peek().expect("k > 0 entries");
            if (count, Reverse(topic)) <= (worst.count, Reverse(&worst.topic[..])) {
                return;
            }
        }
        self.heap.push(Reverse(Ranked { count, topic: topic.to_vec() }));
        if self.heap.len() > self.k {
            self.heap.pop();
        }
    }

    /// The kept topics, best first. A topic offered twice (a scan racing a
    /// change can see it in two passes) is returned once, at its best rank.
    pub(crate) fn into_vec(self) -> Vec<(Vec<u8>, u64)> {
        let mut seen = std::collections::HashSet::with_capacity(self.heap.len());
        let best_first = self.heap.into_sorted_vec().into_iter().map(|Reverse(r)| (r.topic, r.count));
        best_first.filter(|(t, _)| seen.insert(t.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn top_equals_sorting_everything(counts in proptest::collection::hash_map("[a-c]{1,3}", 1u64..5, 0..40), k in 0usize..12) {
            let mut top = Top::new(k);
            for (t, n) in &counts {
                top.offer(t.as_bytes(), *n);
            }
            let mut all: Vec<(Vec<u8>, u64)> = counts.iter().map(|(t, n)| (t.as_bytes().to_vec(), *n)).collect();
            all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            all.truncate(k);
            prop_assert_eq!(top.into_vec(), all);
        }
    }

    #[test]
    fn a_topic_offered_twice_is_kept_once_at_its_best() {
        let mut top = Top::new(3);
        for (t, n) in [("a", 1), ("b", 2), ("a", 5), ("a", 3)] {
            top.offer(t.as_bytes(), n);
        }
        assert_eq!(top.into_vec(), vec![(b"a".to_vec(), 5), (b"b".to_vec(), 2)]);
    }
}
