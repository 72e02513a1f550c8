//! Simulated users: each worker thread owns a disjoint slice of the users,
//! so the truth (who is in which topic) needs no lock; the nodes only see
//! `track`, `untrack` and `untrack_all` calls, as from a chat server.
//!
//! User `j` of worker `w` (of `W`) is connection `j * W + w + 1` and is
//! homed on node `j % N`, so each worker writes to every node.
//!
//! One churn step picks a user at random and
//! * joins a Zipf-chosen topic it is not in (always when it is in none),
//! * or leaves one of its topics (always when it is in [`MAX_TOPICS_PER_USER`]),
//! * or, now and then, disconnects: `untrack_all`, leaving every topic.
//!
//! Every join and every leave is one operation; the workers pace
//! themselves to the requested rate, catching up at most
//! [`MAX_BACKLOG`] of missed work after a stall instead of bursting.

use super::zipf::Zipf;
use headcount::Node;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most topics one user is in at once.
pub(crate) const MAX_TOPICS_PER_USER: usize = 3;

/// Probability that a step on a user in 2+ topics is a disconnect.
const DISCONNECT_P: f64 = 0.05;

/// The most missed work a paced worker catches up on after a stall.
const MAX_BACKLOG: Duration = Duration::from_millis(100);

/// Counters shared by the workers and read by the progress display.
#[derive(Debug, Default)]
pub(crate) struct LoadStats {
    pub(crate) stop: AtomicBool,
    /// Joins + leaves done in the churn phase.
    pub(crate) ops: AtomicU64,
    /// Tracked (topic, connection) pairs right now.
    pub(crate) pairs: AtomicI64,
    pub(crate) anomalies: Anomalies,
}

/// A user's topics (ranks), `len` of them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct User {
    topics: [u32; MAX_TOPICS_PER_USER],
    len: u8,
}

impl User {
    pub(crate) fn topics(&self) -> &[u32] {
        &self.topics[..usize::from(self.len)]
    }

    fn has(&self, t: u32) -> bool {
        self.topics().contains(&t)
    }

    fn push(&mut self, t: u32) {
        self.topics[usize::from(self.len)] = t;
        self.len += 1;
    }

    fn swap_remove(&mut self, i: usize) -> u32 {
        let t = self.topics[i];
        self.len -= 1;
        self.topics[i] = self.topics[usize::from(self.len)];
        t
    }
}

/// One worker's users and the means to act on them.
#[derive(Debug)]
pub(crate) struct Worker<'a> {
    pub(crate) index: usize,
    pub(crate) workers: usize,
    pub(crate) users: Vec<User>,
    nodes: &'a [Node],
    names: &'a [Vec<u8>],
    zipf: &'a Zipf,
    max_per_user: usize,
    rng: SmallRng,
}

impl<'a> Worker<'a> {
    /// Worker `index` of `workers`, owning its share of `users` users.
    pub(crate) fn new(
        index: usize,
        workers: usize,
        users: usize,
        nodes: &'a [Node],
        names: &'a [Vec<u8>],
        zipf: &'a Zipf,
        seed: u64,
    ) -> Self {
        let mine = users / workers + usize::from(index < users % workers);
        Self {
            index,
            workers,
            users: vec![User::default(); mine],
            nodes,
            names,
            zipf,
            max_per_user: MAX_TOPICS_PER_USER.min(names.len()),
            rng: SmallRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }

    /// The connection id of local user `j`.
    pub(crate) fn conn(&self, j: usize) -> u64 {
        (j * self.workers + self.index) as u64 + 1
    }

    /// The node local user `j` is connected to.
    pub(crate) fn home(&self, j: usize) -> usize {
        j % self.nodes.len()
    }

    /// Every user joins one topic. Returns the joins done.
    pub(crate) fn warm_up(&mut self, stats: &LoadStats) -> u64 {
        let mut done = 0;
        for j in 0..self.users.len() {
            done += self.join(j, stats);
        }
        done
    }

    /// Churns at `rate` operations per second until `stats.stop`.
    pub(crate) fn churn(&mut self, rate: f64, stats: &LoadStats) {
        let start = Instant::now();
        let backlog = (rate * MAX_BACKLOG.as_secs_f64()).max(1.0) as u64;
        let (mut done, mut skipped) = (0u64, 0u64);
        while !stats.stop.load(Ordering::Relaxed) {
            let due = ((start.elapsed().as_secs_f64() * rate) as u64).saturating_sub(skipped);
            if due > done + backlog {
                skipped += due - done - backlog;
                continue;
            }
            if done >= due || self.users.is_empty() {
                let wait = if rate > 0.0 { 1.0 / rate } else { 0.01 };
                std::thread::sleep(Duration::from_secs_f64(wait.clamp(0.000_2, 0.01)));
                continue;
            }
            let batch = (due - done).min(256);
            let mut ops = 0;
            for _ in 0..batch {
                let n = self.step(stats);
                ops += n;
                done += n.max(1);
            }
            stats.ops.fetch_add(ops, Ordering::Relaxed);
        }
    }

    /// One churn step; returns the joins + leaves it made.
    fn step(&mut self, stats: &LoadStats) -> u64 {
        let j = self.rng.random_range(0..self.users.len());
        let len = usize::from(self.users[j].len);
        if len == 0 {
            return self.join(j, stats);
        }
        if len >= 2 && self.rng.random_bool(DISCONNECT_P) {
            return self.disconnect(j, stats);
        }
        if len < self.max_per_user && self.rng.random_bool(0.5) {
            let joined = self.join(j, stats);
            if joined > 0 {
                return joined;
            }
        }
        self.leave(j, stats)
    }

    fn join(&mut self, j: usize, stats: &LoadStats) -> u64 {
        let t = (0..8).map(|_| self.zipf.sample(&mut self.rng) as u32).find(|&t| !self.users[j].has(t));
        let Some(t) = t else { return 0 };
        let (conn, node) = (self.conn(j), &self.nodes[self.home(j)]);
        match node.track(&self.names[t as usize], conn) {
            Ok(added) => {
                if !added {
                    stats.anomalies.record(format!("track(topic {t}, conn {conn}) said already tracked"));
                }
                self.users[j].push(t);
                stats.pairs.fetch_add(1, Ordering::Relaxed);
                1
            }
            Err(e) => {
                stats.anomalies.record(format!("track(topic {t}, conn {conn}) failed: {e}"));
                0
            }
        }
    }

    fn leave(&mut self, j: usize, stats: &LoadStats) -> u64 {
        let len = usize::from(self.users[j].len);
        if len == 0 {
            return 0;
        }
        let i = self.rng.random_range(0..len);
        let t = self.users[j].topics[i];
        let (conn, node) = (self.conn(j), &self.nodes[self.home(j)]);
        match node.untrack(&self.names[t as usize], conn) {
            Ok(removed) => {
                if !removed {
                    stats.anomalies.record(format!("untrack(topic {t}, conn {conn}) said not tracked"));
                }
                self.users[j].swap_remove(i);
                stats.pairs.fetch_sub(1, Ordering::Relaxed);
                1
            }
            Err(e) => {
                stats.anomalies.record(format!("untrack(topic {t}, conn {conn}) failed: {e}"));
                0
            }
        }
    }

    fn disconnect(&mut self, j: usize, stats: &LoadStats) -> u64 {
        let len = usize::from(self.users[j].len);
        let (conn, node) = (self.conn(j), &self.nodes[self.home(j)]);
        match node.untrack_all(conn) {
            Ok(n) => {
                if n != len {
                    stats.anomalies.record(format!("untrack_all(conn {conn}) left {n} topics, not {len}"));
                }
                self.users[j].len = 0;
                stats.pairs.fetch_sub(len as i64, Ordering::Relaxed);
                len as u64
            }
            Err(e) => {
                stats.anomalies.record(format!("untrack_all(conn {conn}) failed: {e}"));
                0
            }
        }
    }
}

/// Results the library should never give (a track of a new pair that
/// says "already tracked", an error): counted, the first one kept.
#[derive(Debug, Default)]
pub(crate) struct Anomalies {
    count: AtomicU64,
    first: Mutex<Option<String>>,
}

impl Anomalies {
    pub(crate) fn record(&self, what: String) {
        if self.count.fetch_add(1, Ordering::Relaxed) == 0 {
            if let Ok(mut first) = self.first.lock() {
                *first = Some(what);
            }
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn first(&self) -> Option<String> {
        self.first.lock().ok().and_then(|f| f.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headcount::Config;

    #[test]
    fn the_users_state_is_the_truth() {
        let nodes: Vec<Node> = (0..2).map(|_| Node::start(&Config::new()).unwrap()).collect();
        let names: Vec<Vec<u8>> = (0..5).map(|i| format!("t{i}").into_bytes()).collect();
        let zipf = Zipf::new(names.len(), 1.0);
        let stats = LoadStats::default();
        let mut w = Worker::new(1, 2, 301, &nodes, &names, &zipf, 3);
        assert_eq!(w.users.len(), 150);
        assert_eq!(w.warm_up(&stats), 150);
        let mut ops = 0;
        for _ in 0..5000 {
            ops += w.step(&stats);
        }
        assert!(ops >= 5000 - 10, "almost every step does something: {ops}");
        assert_eq!(stats.anomalies.count(), 0, "{:?}", stats.anomalies.first());
        // Each node's local counts equal the users homed on it.
        for (n, node) in nodes.iter().enumerate() {
            for (t, name) in names.iter().enumerate() {
                let truth = (0..w.users.len()).filter(|&j| w.home(j) == n && w.users[j].has(t as u32)).count() as u64;
                assert_eq!(node.count_local(name).unwrap(), truth, "node {n} topic {t}");
            }
        }
        let pairs: usize = w.users.iter().map(|u| u.topics().len()).sum();
        assert_eq!(stats.pairs.load(Ordering::Relaxed), pairs as i64);
        assert!(w.users.iter().all(|u| u.topics().len() <= MAX_TOPICS_PER_USER));
        assert_eq!(w.conn(0), 2);
        assert_eq!(w.conn(1), 4);
    }

    #[test]
    fn a_paced_worker_keeps_its_rate() {
        let nodes = vec![Node::start(&Config::new()).unwrap()];
        let names: Vec<Vec<u8>> = (0..10).map(|i| format!("t{i}").into_bytes()).collect();
        let zipf = Zipf::new(names.len(), 1.0);
        let stats = LoadStats::default();
        let mut w = Worker::new(0, 1, 100, &nodes, &names, &zipf, 1);
        std::thread::scope(|s| {
            s.spawn(|| w.churn(2000.0, &stats));
            std::thread::sleep(Duration::from_millis(500));
            stats.stop.store(true, Ordering::Relaxed);
        });
        let ops = stats.ops.load(Ordering::Relaxed);
        // 1000 due; generous bounds for a loaded 2-core machine.
        assert!((500..=1300).contains(&ops), "{ops} ops in 0.5 s at 2000/s");
    }
}
