//! The change feed against a model: random local tracks and untracks,
//! flushes, peer reports (deltas and snapshots), peers counted and dropped,
//! and watches opened (with and without `initial`) and closed, over the
//! real [`Counter`], [`View`] and [`Feed`]. At every check point (after a
//! flush) each open watch's last delivered value of every topic matching it
//! must equal the model's count, and no batch may name a topic twice or
//! repeat the value last delivered.

use std::collections::HashMap;
use std::time::Instant;

use proptest::prelude::*;

use super::{Feed, Watch};
use crate::cluster::view::View;
use crate::counter::Counter;
use crate::sync::SharedBytes as Topic;

const TOPICS: [&str; 5] = ["a", "ab", "abc", "b", "ba"];
const PREFIXES: [&str; 4] = ["", "a", "ab", "b"];
const SLOTS: u16 = 2;

#[derive(Debug, Clone)]
enum Op {
    Track(usize, u64),
    Untrack(usize, u64),
    Report(u16, usize, u64),
    Snapshot(u16, Vec<(usize, u64)>),
    Counted(u16, bool),
    Clear(u16),
    Open(usize, bool),
    Close(usize),
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..TOPICS.len();
    prop_oneof![
        4 => (t.clone(), 0u64..4).prop_map(|(t, c)| Op::Track(t, c)),
        3 => (t.clone(), 0u64..4).prop_map(|(t, c)| Op::Untrack(t, c)),
        3 => (0..SLOTS, t.clone(), 0u64..4).prop_map(|(s, t, n)| Op::Report(s, t, n)),
        1 => (0..SLOTS, proptest::collection::vec((t, 0u64..4), 0..4)).prop_map(|(s, v)| Op::Snapshot(s, v)),
        1 => (0..SLOTS, any::<bool>()).prop_map(|(s, c)| Op::Counted(s, c)),
        1 => (0..SLOTS).prop_map(Op::Clear),
        2 => (0..PREFIXES.len(), any::<bool>()).prop_map(|(p, i)| Op::Open(p, i)),
        1 => (0usize..8).prop_map(Op::Close),
        3 => Just(Op::Flush),
    ]
}

#[derive(Default)]
struct Model {
    local: HashMap<usize, std::collections::HashSet<u64>>,
    remote: [HashMap<usize, u64>; SLOTS as usize],
    counted: [bool; SLOTS as usize],
}

impl Model {
    fn count(&self, t: usize) -> u64 {
        let local = self.local.get(&t).map_or(0, |s| s.len() as u64);
        let remote: u64 = (0..SLOTS as usize)
            .filter(|&s| self.counted[s])
            .map(|s| self.remote[s].get(&t).copied().unwrap_or(0))
            .sum();
        local + remote
    }
}

/// An open watch and what it was told so far (absent: 0 or never told).
struct Seen {
    watch: Watch,
    prefix: &'static str,
    initial: bool,
    /// Topics it must be right about: all (initial) or those that changed
    /// since it opened.
    owed: std::collections::HashSet<usize>,
    values: HashMap<Vec<u8>, u64>,
}

impl Seen {
    fn read(&mut self) {
        let batch = self.watch.next_batch(std::time::Duration::ZERO).unwrap();
        let mut named = std::collections::HashSet::new();
        for c in batch {
            assert!(named.insert(c.topic.clone()), "a batch named {:?} twice", c.topic);
            assert!(c.topic.starts_with(self.prefix.as_bytes()), "{:?} does not match {:?}", c.topic, self.prefix);
            assert_eq!(c.users, c.count);
            let before = self.values.insert(c.topic.clone(), c.count).unwrap_or(0);
            assert_ne!(before, c.count, "{:?} delivered its last value again", c.topic);
        }
    }
}

fn t(i: usize) -> Topic {
    Topic::from(TOPICS[i].as_bytes())
}

fn run(ops: &[Op]) {
    let counter = Counter::new();
    let feed = Feed::new(counter.clone());
    let view = View::with_feed(Some(feed.clone()));
    for s in 0..SLOTS {
        view.activate(s);
        view.set_owner(s, 1);
    }
    let mut model = Model::default();
    let mut watches: Vec<Seen> = Vec::new();
    let flush = |watches: &mut Vec<Seen>, model: &Model| {
        let mut drained = Vec::new();
        counter.drain_ids(Instant::now(), |t, id, _| drained.push((Topic::from(t), id)));
        feed.flushed(drained.iter().map(|(t, id)| (t, *id)), |t| view.count_only(t));
        for w in watches.iter_mut() {
            w.read();
            for (i, name) in TOPICS.iter().enumerate() {
                if name.starts_with(w.prefix) && (w.initial || w.owed.contains(&i)) {
                    let got = w.values.get(name.as_bytes()).copied().unwrap_or(0);
                    assert_eq!(got, model.count(i), "watch {:?} (initial {}) on {name}", w.prefix, w.initial);
                }
            }
        }
    };
    for op in ops {
        let before: Vec<u64> = (0..TOPICS.len()).map(|i| model.count(i)).collect();
        match op {
            &Op::Track(i, c) => {
                model.local.entry(i).or_default().insert(c);
                counter.track(TOPICS[i], c).unwrap();
            }
            &Op::Untrack(i, c) => {
                model.local.entry(i).or_default().remove(&c);
                counter.untrack(TOPICS[i], c).unwrap();
            }
            &Op::Report(s, i, n) => {
                model.remote[s as usize].insert(i, n);
                assert!(view.apply(s, 1, vec![(t(i), n)]));
            }
            Op::Snapshot(s, v) => {
                let m = &mut model.remote[*s as usize];
                m.clear();
                m.extend(v.iter().copied());
                assert!(view.replace(*s, 1, v.iter().map(|&(i, n)| (t(i), n)).collect()));
            }
            &Op::Counted(s, c) => {
                model.counted[s as usize] = c;
                view.set_counted(s, c);
            }
            &Op::Clear(s) => {
                model.counted[s as usize] = false;
                model.remote[s as usize].clear();
                view.clear(s);
            }
            &Op::Open(p, initial) => {
                // Flush first: a change made before opening need not reach
                // a watch without `initial`, and the model cannot tell which
                // side of the opening an unflushed change falls on.
                flush(&mut watches, &model);
                let scan = |emit: &mut dyn FnMut(&[u8], u64)| {
                    for (i, name) in TOPICS.iter().enumerate() {
                        let n = counter.count_local(name).unwrap() + view.count_only(name.as_bytes());
                        assert_eq!(n, model.count(i));
                        if n > 0 {
                            emit(name.as_bytes(), n);
                        }
                    }
                };
                let watch = feed.watch(PREFIXES[p].as_bytes(), initial, scan).unwrap();
                let owed = Default::default();
                watches.push(Seen { watch, prefix: PREFIXES[p], initial, owed, values: HashMap::new() });
            }
            &Op::Close(i) => {
                if i < watches.len() {
                    watches.remove(i);
                }
            }
            Op::Flush => flush(&mut watches, &model),
        }
        for (i, b) in before.iter().enumerate() {
            if model.count(i) != *b {
                watches.iter_mut().for_each(|w| {
                    w.owed.insert(i);
                });
            }
        }
    }
    flush(&mut watches, &model);
    let open = watches.len();
    assert_eq!(feed.hub().watches(), open);
    drop(watches);
    assert_eq!((feed.hub().watches(), feed.hub().backlog()), (0, 0));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_watch_ends_up_with_every_count(ops in proptest::collection::vec(op(), 1..120)) {
        run(&ops);
    }
}
