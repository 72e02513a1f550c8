//! `ops`: arbitrary sequences of operations on the local core ([`Counter`]),
//! checked against a model after every step.
//!
//! Input:
//!
//! ```text
//! header  mode:u8      bit 0: GC mode (see below); bits 1-3: stripes - 1
//!         max_len:u8   max_topic_len = max_len % 10 + 1
//!         gc:u8        gc_after = gc % 4 ms (GC mode only)
//!         names:u8     1 + names % 6 topic names follow, each len:u8 (% 12), bytes
//! op      u8 % 10, then its arguments (t: a topic index, c: a connection):
//!   0 track t c    1 untrack t c    2 untrack_all c    3 add t delta:i8
//!   4 drain, after ms:u8        5 collect_garbage, after ms:u8
//!   6 drain + collect_garbage (a flusher tick), after ms:u8
//!   7 track t c twice and untrack it once (net: tracked)
//!   8 n:u8 c: track c in bulk topics 0..n (n % 49)
//!   9 from:u8 step:u8 c: untrack c from bulk topics from, from+step, ...
//!
//! Bulk topics are 48 more membership topics (`g<i>`), so that one
//! connection's topic list grows past what the membership registry keeps
//! in a scanned list and shrinks back.
//! ```
//!
//! Two modes, because topic GC makes some effects timing-dependent:
//!
//! * **mixed** (bit 0 clear): `add` and membership act on the *same* topics;
//!   GC never expires anything (gc_after is a day). The model is exact:
//!   counts, pairs, connections, topic count, and the set of topics each
//!   drain reports.
//! * **GC** (bit 0 set): `add` acts on topics named `a…`, membership on
//!   topics named `t…`, and the clock moves past a gc_after of 0-3 ms, so
//!   topics at zero are collected and recreated all the time. Collecting a
//!   topic at zero changes no count, so counts, pairs and connections are
//!   still exact; drains may report extra topics (revived ones), and at the
//!   end every topic at zero must have been collected.
//!
//! The model is a `HashMap<topic, HashSet<conn>>` plus, per topic, the sum
//! of raw `add`s; a topic's count is `max(0, members + adds)`. After every
//! step: every `count_local`, `total_local`, `pairs`, `connections`,
//! `for_each_nonzero` and the topic count's bounds; return values of every
//! operation; and after every drain, **the last value drained for each topic
//! equals its count** (what a peer would believe).

use headcount::{Counter, CounterConfig, Error};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// What the counter should hold.
#[derive(Default)]
struct Model {
    members: HashMap<Vec<u8>, HashSet<u64>>,
    adds: HashMap<Vec<u8>, i64>,
    /// Topics the counter may hold (exact in mixed mode, an upper bound in GC mode).
    known: HashSet<Vec<u8>>,
    /// Topics created or changed since the last drain.
    dirty: HashSet<Vec<u8>>,
    /// The last value drained per topic.
    reported: HashMap<Vec<u8>, u64>,
}

impl Model {
    fn sum(&self, t: &[u8]) -> i64 {
        self.members.get(t).map_or(0, |m| m.len() as i64) + self.adds.get(t).copied().unwrap_or(0)
    }

    fn count(&self, t: &[u8]) -> u64 {
        self.sum(t).max(0) as u64
    }

    fn touch(&mut self, t: &[u8]) {
        self.dirty.insert(t.to_vec());
    }

    fn create(&mut self, t: &[u8]) {
        if self.known.insert(t.to_vec()) {
            self.touch(t);
        }
    }
}

struct Run {
    counter: Counter,
    model: Model,
    gc_mode: bool,
    max_len: usize,
    /// Membership topics, then raw-add topics (the same ones in mixed mode).
    tracked: Vec<Vec<u8>>,
    added: Vec<Vec<u8>>,
    /// [`BULK`] more membership topics, so one connection can be in enough
    /// topics to change the registry's shape (one, a list, a set).
    bulk: Vec<Vec<u8>>,
    start: Instant,
    now_ms: u64,
}

/// Topics of the bulk operations: more than the membership registry keeps
/// in a scanned list (32).
const BULK: usize = 48;

fn conn_of(b: u8) -> u64 {
    match b {
        255 => u64::MAX,
        b => u64::from(b % 5),
    }
}

impl Run {
    fn valid(&self, t: &[u8]) -> bool {
        !t.is_empty() && t.len() <= self.max_len
    }

    fn expect_invalid<T: std::fmt::Debug>(&self, t: &[u8], r: headcount::Result<T>) {
        match r {
            Err(Error::InvalidTopic { len, max }) => assert_eq!((len, max), (t.len(), self.max_len)),
            other => panic!("topic of {} bytes (max {}): {other:?}", t.len(), self.max_len),
        }
    }

    fn now(&self) -> Instant {
        self.start + Duration::from_millis(self.now_ms)
    }

    fn track(&mut self, t: &[u8], c: u64) {
        let r = self.counter.track(t, c);
        if !self.valid(t) {
            return self.expect_invalid(t, r);
        }
        self.model.create(t);
        let added = self.model.members.entry(t.to_vec()).or_default().insert(c);
        assert_eq!(r.unwrap(), added, "track({t:?}, {c})");
        if added {
            self.model.touch(t);
        }
    }

    fn untrack(&mut self, t: &[u8], c: u64) {
        let r = self.counter.untrack(t, c);
        if !self.valid(t) {
            return self.expect_invalid(t, r);
        }
        let removed = self.model.members.get_mut(t).is_some_and(|m| m.remove(&c));
        assert_eq!(r.unwrap(), removed, "untrack({t:?}, {c})");
        if removed {
            self.model.touch(t);
        }
    }

    fn untrack_all(&mut self, c: u64) {
        let n = self.counter.untrack_all(c);
        let mut want = 0;
        let mut touched = Vec::new();
        for (t, m) in &mut self.model.members {
            if m.remove(&c) {
                want += 1;
                touched.push(t.clone());
            }
        }
        for t in touched {
            self.model.touch(&t);
        }
        assert_eq!(n, want, "untrack_all({c})");
    }

    fn add(&mut self, t: &[u8], delta: i64) {
        let r = self.counter.add(t, delta);
        if !self.valid(t) {
            return self.expect_invalid(t, r);
        }
        r.unwrap();
        self.model.create(t);
        *self.model.adds.entry(t.to_vec()).or_default() += delta;
        self.model.touch(t);
    }

    fn drain(&mut self) {
        let mut seen: Vec<(Vec<u8>, u64)> = Vec::new();
        let n = self.counter.drain(self.now(), |t, c| seen.push((t.to_vec(), c)));
        assert_eq!(n, seen.len(), "drain's return value");
        let mut names = HashSet::new();
        for (t, c) in &seen {
            assert!(names.insert(t.clone()), "drain reported {t:?} twice");
            assert_eq!(*c, self.model.count(t), "drain reported {t:?} = {c}");
            self.model.reported.insert(t.clone(), *c);
        }
        if !self.gc_mode {
            assert_eq!(names, self.model.dirty, "drained topics are not the ones created or changed");
        }
        self.model.dirty.clear();
        for t in self.tracked.iter().chain(&self.added).chain(&self.bulk) {
            let believed = self.model.reported.get(t).copied().unwrap_or(0);
            assert_eq!(believed, self.model.count(t), "after a drain, {t:?} was last reported as {believed}");
        }
    }

    fn collect(&mut self) {
        let removed = self.counter.collect_garbage(self.now());
        if !self.gc_mode {
            assert_eq!(removed, 0, "GC removed topics that never expired");
        }
    }

    fn check(&self) {
        let m = &self.model;
        for t in self.tracked.iter().chain(&self.added).chain(&self.bulk) {
            let r = self.counter.count_local(t);
            if self.valid(t) {
                assert_eq!(r.unwrap(), m.count(t), "count_local({t:?})");
            } else {
                self.expect_invalid(t, r);
            }
        }
        let total: u64 = m.known.iter().map(|t| m.count(t)).sum();
        assert_eq!(self.counter.total_local(), total, "total_local");
        let pairs: usize = m.members.values().map(HashSet::len).sum();
        assert_eq!(self.counter.pairs(), pairs, "pairs");
        let conns: HashSet<u64> = m.members.values().flatten().copied().collect();
        assert_eq!(self.counter.connections(), conns.len(), "connections");
        let mut nonzero = HashMap::new();
        self.counter.for_each_nonzero(|t, c| assert!(nonzero.insert(t.to_vec(), c).is_none(), "{t:?} listed twice"));
        let want: HashMap<Vec<u8>, u64> =
            m.known.iter().filter(|t| m.count(t) > 0).map(|t| (t.clone(), m.count(t))).collect();
        assert_eq!(nonzero, want, "for_each_nonzero");
        let topics = self.counter.topics();
        if self.gc_mode {
            let live = m.known.iter().filter(|t| m.sum(t) != 0).count();
            assert!(live <= topics && topics <= m.known.len(), "{topics} topics, {live} live, {} known", m.known.len());
        } else {
            assert_eq!(topics, m.known.len(), "topics");
        }
    }

    /// GC mode, at the end: flusher ticks until every topic whose sum is zero
    /// is gone. Topics that still count (or are below zero) stay.
    fn settle(&mut self, gc_after_ms: u64) {
        let live = self.model.known.iter().filter(|t| self.model.sum(t) != 0).count();
        for _ in 0..64 {
            self.now_ms += gc_after_ms + 1;
            self.drain();
            self.collect();
            self.check();
            if self.counter.topics() == live {
                return;
            }
        }
        panic!("topic GC left {} topics, {live} still count", self.counter.topics());
    }
}

/// The target. See the module docs.
pub fn ops(data: &[u8]) {
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next();
    let (Some(mode), Some(max_len), Some(gc), Some(names)) = (next(), next(), next(), next()) else { return };
    let gc_mode = mode & 1 != 0;
    let stripes = usize::from((mode >> 1) & 7) + 1;
    let max_len = usize::from(max_len % 10) + 1;
    let gc_after_ms = if gc_mode { u64::from(gc % 4) } else { 86_400_000 };
    let mut pool = Vec::new();
    for _ in 0..=names % 6 {
        let len = usize::from(next().unwrap_or(1) % 12);
        pool.push((0..len).map(|_| next().unwrap_or(b'x')).collect::<Vec<u8>>());
    }
    let (tracked, added) = if gc_mode {
        let prefixed = |p: u8| pool.iter().map(|n| [&[p][..], n].concat()).collect::<Vec<_>>();
        (prefixed(b't'), prefixed(b'a'))
    } else {
        (pool.clone(), pool)
    };
    let config =
        CounterConfig { max_topic_len: max_len, gc_after: Duration::from_millis(gc_after_ms), stripes: Some(stripes) };
    let mut run = Run {
        counter: Counter::with_config(config),
        model: Model::default(),
        gc_mode,
        max_len,
        tracked,
        added,
        bulk: (0..BULK as u8).map(|i| if gc_mode { vec![b't', b'g', i] } else { vec![b'g', i] }).collect(),
        start: Instant::now(),
        now_ms: 0,
    };
    while let Some(op) = next() {
        let mut arg = || next().unwrap_or(0);
        match op % 10 {
            0 => {
                let (t, c) = (run.tracked[usize::from(arg()) % run.tracked.len()].clone(), conn_of(arg()));
                run.track(&t, c);
            }
            1 => {
                let (t, c) = (run.tracked[usize::from(arg()) % run.tracked.len()].clone(), conn_of(arg()));
                run.untrack(&t, c);
            }
            2 => run.untrack_all(conn_of(arg())),
            3 => {
                let t = run.added[usize::from(arg()) % run.added.len()].clone();
                run.add(&t, i64::from(arg() as i8));
            }
            4 => {
                run.now_ms += u64::from(arg());
                run.drain();
            }
            5 => {
                run.now_ms += u64::from(arg());
                run.collect();
            }
            6 => {
                run.now_ms += u64::from(arg());
                run.drain();
                run.collect();
            }
            8 => {
                // Conn c joins bulk topics 0..n.
                let (n, c) = (usize::from(arg()) % (BULK + 1), conn_of(arg()));
                for i in 0..n {
                    let t = run.bulk[i].clone();
                    run.track(&t, c);
                }
            }
            9 => {
                // Conn c leaves every step-th bulk topic from `from` on.
                let (from, step, c) = (usize::from(arg()) % BULK, usize::from(arg()) % 4 + 1, conn_of(arg()));
                for i in (from..BULK).step_by(step) {
                    let t = run.bulk[i].clone();
                    run.untrack(&t, c);
                }
            }
            _ => {
                let (t, c) = (run.tracked[usize::from(arg()) % run.tracked.len()].clone(), conn_of(arg()));
                run.track(&t, c);
                run.track(&t, c);
                run.untrack(&t, c);
                run.track(&t, c);
            }
        }
        run.check();
    }
    if gc_mode {
        run.settle(gc_after_ms);
    }
}
