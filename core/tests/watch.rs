//! The change feed through the public API: prefix filtering, `initial`,
//! the fd, a watch ended by drop and by the node closing, a consumer that
//! never reads, `top` against brute force, and three clustered nodes under
//! churn and a crash, where every watch must end with every count.

mod support;

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use headcount::{Config, Node, Watch};
use support::{addr, node, wait_for};

const LONG: Duration = Duration::from_secs(30);

fn local(kv: &[(&str, &str)]) -> Node {
    let mut c = Config::new();
    for (k, v) in kv {
        c.set(k, v).unwrap();
    }
    Node::start(&c).unwrap()
}

/// What `w` was told, folded into the last value per topic.
#[derive(Default)]
struct Seen(HashMap<Vec<u8>, u64>);

impl Seen {
    /// Reads every batch available within `d`.
    fn read(&mut self, w: &mut Watch, d: Duration) {
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let batch = w.next_batch(left).unwrap();
            let mut named = std::collections::HashSet::new();
            for c in batch {
                assert!(named.insert(c.topic.clone()), "batch names {:?} twice", c.topic);
                assert_eq!(c.users, c.count);
                self.0.insert(c.topic, c.count);
            }
            if left.is_zero() {
                return;
            }
        }
    }

    fn get(&self, t: &[u8]) -> u64 {
        self.0.get(t).copied().unwrap_or(0)
    }

    /// Reads until every topic of `topics` has the count `want` gives it.
    fn until(&mut self, w: &mut Watch, topics: &[Vec<u8>], want: impl Fn(&[u8]) -> u64) -> bool {
        let deadline = Instant::now() + LONG;
        while Instant::now() < deadline {
            if topics.iter().all(|t| self.get(t) == want(t)) {
                return true;
            }
            self.read(w, Duration::from_millis(20));
        }
        false
    }
}

fn readable(w: &Watch, ms: i32) -> bool {
    let mut p = libc::pollfd { fd: w.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd on an fd the watch owns and keeps open.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

#[test]
fn a_watch_sees_only_its_prefix_and_the_fd_tracks_pending_changes() {
    let n = local(&[("flush_interval_ms", "10")]);
    let mut rooms = n.watch("room:", false).unwrap();
    let mut all = n.watch("", false).unwrap();
    assert!(!readable(&rooms, 0));
    n.track("room:1", 1).unwrap();
    n.track("room:1", 2).unwrap();
    n.track("lobby", 1).unwrap();
    assert!(readable(&rooms, 10_000), "the fd turns readable after the flush");
    // Still readable until the changes are taken (level-triggered).
    assert!(readable(&rooms, 0));
    let (mut r, mut a) = (Seen::default(), Seen::default());
    assert!(r.until(&mut rooms, &[b"room:1".to_vec()], |_| 2));
    assert!(a.until(&mut all, &[b"room:1".to_vec(), b"lobby".to_vec()], |t| if t == b"lobby" { 1 } else { 2 }));
    assert_eq!(r.0.keys().collect::<Vec<_>>(), [b"room:1"], "the room watch saw only rooms");
    assert!(!readable(&rooms, 0), "drained: no longer readable");
    // A final 0 is delivered.
    n.untrack_all(1).unwrap();
    n.untrack_all(2).unwrap();
    assert!(r.until(&mut rooms, &[b"room:1".to_vec()], |_| 0));
    assert!(r.0.contains_key(&b"room:1"[..]));
    // Nothing more comes: a timeout is an empty batch.
    assert!(rooms.next_batch(Duration::from_millis(50)).unwrap().is_empty());
}

#[test]
fn initial_lists_every_non_zero_matching_topic_first() {
    let n = local(&[("flush_interval_ms", "10")]);
    for (t, c) in [("a:1", 1), ("a:1", 2), ("a:2", 3), ("b", 4), ("a:3", 5)] {
        n.track(t, c).unwrap();
    }
    n.untrack("a:3", 5).unwrap();
    // Shipped by a flush (a watch without `initial` would otherwise be told
    // of these changes by the flush that ships them).
    let flushes = n.stats().unwrap().flush.flushes;
    assert!(wait_for(LONG, || n.stats().unwrap().flush.flushes > flushes + 1).is_some());
    let mut w = n.watch("a:", true).unwrap();
    let first = w.next_batch(Duration::ZERO).unwrap();
    let mut got: Vec<(String, u64)> =
        first.into_iter().map(|c| (String::from_utf8(c.topic).unwrap(), c.count)).collect();
    got.sort();
    assert_eq!(got, [("a:1".into(), 2), ("a:2".into(), 1)]);
    let mut plain = n.watch("a:", false).unwrap();
    assert!(plain.next_batch(Duration::from_millis(100)).unwrap().is_empty());
}

#[test]
fn dropping_a_watch_ends_it_and_closing_the_node_ends_them_all() {
    let n = local(&[("flush_interval_ms", "10")]);
    let w = n.watch("", false).unwrap();
    let mut w2 = n.watch("x", true).unwrap();
    assert_eq!(n.stats().unwrap().watches, 2);
    n.track("x", 1).unwrap();
    assert!(wait_for(LONG, || n.stats().unwrap().watch_backlog == 2).is_some());
    drop(w);
    let s = n.stats().unwrap();
    assert_eq!((s.watches, s.watch_backlog), (1, 1), "the dropped watch's backlog went with it");
    n.close();
    // What was queued before the close is still delivered, then: closed.
    assert_eq!(w2.next_batch(Duration::ZERO).unwrap().len(), 1);
    assert!(readable(&w2, 0), "a closed watch's fd stays readable");
    assert!(matches!(w2.next_batch(LONG), Err(headcount::Error::Closed)));
    assert!(n.watch("", false).is_err());
}

#[test]
fn bad_prefixes_are_refused() {
    let n = local(&[("max_topic_len", "8")]);
    assert!(matches!(n.watch([b'x'; 9], false), Err(headcount::Error::InvalidArgument(_))));
    assert!(matches!(n.top(3, [b'x'; 9]), Err(headcount::Error::InvalidArgument(_))));
    assert!(n.watch([b'x'; 8], false).is_ok());
}

#[test]
fn a_consumer_that_never_reads_holds_one_entry_per_topic() {
    const TOPICS: u64 = 100_000;
    let n = local(&[("flush_interval_ms", "5")]);
    let mut idle = n.watch("", false).unwrap();
    let topic = |i: u64| format!("t{i}");
    for round in 0..3u64 {
        for i in 0..TOPICS {
            n.track(topic(i), round).unwrap();
        }
        let flushes = n.stats().unwrap().flush.flushes;
        assert!(wait_for(LONG, || n.stats().unwrap().flush.flushes > flushes + 1).is_some());
        let backlog = n.stats().unwrap().watch_backlog;
        assert!(backlog as u64 <= TOPICS, "round {round}: backlog {backlog} > {TOPICS} topics");
        assert_eq!(idle.pending(), backlog);
    }
    // And what it finally reads is the latest count of each topic, once.
    let batch = idle.next_batch(Duration::ZERO).unwrap();
    assert_eq!(batch.len() as u64, TOPICS);
    assert!(batch.iter().all(|c| c.count == 3));
}

#[test]
fn top_equals_brute_force() {
    let n = local(&[]);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut counts: HashMap<String, u64> = HashMap::new();
    for conn in 0..3000u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let t = format!("{}:{}", if rng % 3 == 0 { "lobby" } else { "room" }, rng % 97);
        if n.track(&t, conn).unwrap() {
            *counts.entry(t).or_default() += 1;
        }
    }
    n.track("room:zero", 1).unwrap();
    n.untrack("room:zero", 1).unwrap();
    for (k, prefix) in [(0, ""), (1, ""), (10, "room:"), (5, "lobby:"), (1000, ""), (3, "nothing")] {
        let mut want: Vec<(Vec<u8>, u64)> =
            counts.iter().filter(|(t, _)| t.starts_with(prefix)).map(|(t, &c)| (t.clone().into_bytes(), c)).collect();
        want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        want.truncate(k);
        assert_eq!(n.top(k, prefix).unwrap(), want, "top({k}, {prefix:?})");
    }
}

#[test]
fn three_nodes_under_churn_every_watch_ends_with_every_count() {
    let kv = [("flush_interval_ms", "10"), ("down_after_ms", "500")];
    let a = node("wa", &[], &kv);
    let b = node("wb", &[addr(&a)], &kv);
    let c = node("wc", &[addr(&a)], &kv);
    let nodes = [&a, &b, &c];
    assert!(wait_for(LONG, || nodes.iter().all(|n| n.stats().unwrap().peers.len() == 2)).is_some());
    let topics: Vec<Vec<u8>> = (0..40).map(|i| format!("room:{i}").into_bytes()).collect();
    // On each node: one watch of everything (initial), one of a prefix, and
    // exact-topic watches.
    let mut watches: Vec<(usize, Watch, Seen)> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        watches.push((i, n.watch("", true).unwrap(), Seen::default()));
        watches.push((i, n.watch("room:1", true).unwrap(), Seen::default()));
        watches.push((i, n.watch("room:7", false).unwrap(), Seen::default()));
    }
    std::thread::scope(|s| {
        for (i, n) in nodes.iter().enumerate() {
            let topics = &topics;
            s.spawn(move || {
                let mut rng = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                for _ in 0..4000 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let t = &topics[(rng % topics.len() as u64) as usize];
                    let conn = (rng >> 32) % 30;
                    if rng & (1 << 20) == 0 {
                        n.track(t, conn).unwrap();
                    } else {
                        n.untrack(t, conn).unwrap();
                    }
                }
            });
        }
    });
    let converged = |watches: &mut Vec<(usize, Watch, Seen)>, nodes: &[&Node]| {
        for (i, w, seen) in watches.iter_mut() {
            let n = nodes[*i];
            let mine: Vec<Vec<u8>> = topics.iter().filter(|t| t.starts_with(w.prefix())).cloned().collect();
            // The node's own count can still move while peers catch up; read
            // until the watch agrees with it.
            assert!(
                seen.until(w, &mine, |t| n.count(t).unwrap()),
                "a watch of {:?} on node {i} never caught up",
                String::from_utf8_lossy(w.prefix())
            );
        }
    };
    // Exact convergence first, then every watch agrees with its node.
    let truth = support::truth(&nodes, &topics);
    assert!(wait_for(LONG, || support::all_agree(&nodes, &topics, &truth)).is_some());
    converged(&mut watches, &nodes);
    // A crash: c's share disappears from a and b once they notice, and their
    // watches are told (the count drops to what a and b hold).
    c.abort();
    watches.retain(|(i, _, _)| *i != 2);
    let survivors = [&a, &b];
    let truth = support::truth(&survivors, &topics);
    assert!(wait_for(LONG, || support::all_agree(&survivors, &topics, &truth)).is_some());
    converged(&mut watches, &[&a, &b]);
    for (i, _, seen) in &watches {
        for (t, want) in topics.iter().zip(&truth) {
            if seen.0.contains_key(t) {
                assert_eq!(seen.get(t), *want, "node {i}, {}", String::from_utf8_lossy(t));
            }
        }
    }
    // A node comes (back): its snapshot reaches the survivors' watches.
    let d = node("wd", &[addr(&a)], &kv);
    for (i, t) in topics.iter().enumerate().take(10) {
        d.track(t, 100 + i as u64).unwrap();
    }
    let all = [&a, &b, &d];
    let truth = support::truth(&all, &topics);
    assert!(wait_for(LONG, || support::all_agree(&all, &topics, &truth)).is_some());
    converged(&mut watches, &[&a, &b]);
}
