//! Property tests: random operation sequences against a simple model,
//! `HashMap<topic, HashSet<conn>>` plus raw per-topic offsets.

use headcount::{Counter, CounterConfig};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Op {
    Track(u8, u64),
    Untrack(u8, u64),
    UntrackAll(u64),
    Add(u8, i64),
    Drain,
    Gc,
}

fn op() -> impl Strategy<Value = Op> {
    // Few topics and conns, so operations collide often.
    prop_oneof![
        4 => (0u8..6, 0u64..8).prop_map(|(t, c)| Op::Track(t, c)),
        3 => (0u8..6, 0u64..8).prop_map(|(t, c)| Op::Untrack(t, c)),
        1 => (0u64..8).prop_map(Op::UntrackAll),
        1 => (0u8..6, 0i64..4).prop_map(|(t, d)| Op::Add(t, d)),
        1 => Just(Op::Drain),
        1 => Just(Op::Gc),
    ]
}

fn topic(t: u8) -> Vec<u8> {
    format!("topic-{t}").into_bytes()
}

#[derive(Default)]
struct Model {
    members: HashMap<u8, HashSet<u64>>,
    raw: HashMap<u8, i64>,
}

impl Model {
    fn count(&self, t: u8) -> u64 {
        let m = self.members.get(&t).map_or(0, |s| s.len()) as i64;
        (m + self.raw.get(&t).copied().unwrap_or(0)).max(0) as u64
    }
}

/// Runs `ops`, checking every result and every count after every step.
fn check(ops: &[Op], gc_after: Duration) {
    let counter = Counter::with_config(CounterConfig { gc_after, stripes: Some(4), ..Default::default() });
    let mut model = Model::default();
    // A drain reports each topic changed since the last drain, with its count.
    let mut last_drained: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut clock = Instant::now();
    for op in ops {
        match *op {
            Op::Track(t, c) => {
                let added = model.members.entry(t).or_default().insert(c);
                assert_eq!(counter.track(topic(t), c).unwrap(), added, "{op:?}");
            }
            Op::Untrack(t, c) => {
                let removed = model.members.entry(t).or_default().remove(&c);
                assert_eq!(counter.untrack(topic(t), c).unwrap(), removed, "{op:?}");
            }
            Op::UntrackAll(c) => {
                let n = model.members.values_mut().map(|s| s.remove(&c)).filter(|&r| r).count();
                assert_eq!(counter.untrack_all(c), n, "{op:?}");
            }
            Op::Add(t, d) => {
                *model.raw.entry(t).or_default() += d;
                counter.add(topic(t), d).unwrap();
            }
            Op::Drain => {
                counter.drain(clock, |name, n| {
                    last_drained.insert(name.to_vec(), n);
                });
                // Everything drained so far is the current truth.
                for (name, n) in &last_drained {
                    let t: u8 = std::str::from_utf8(&name[6..]).unwrap().parse().unwrap();
                    assert_eq!(*n, model.count(t), "drained count of {t}");
                }
            }
            Op::Gc => {
                clock += Duration::from_millis(10);
                // Drain first, as the flusher does, so GC sees fresh zeros.
                counter.drain(clock, |name, n| {
                    last_drained.insert(name.to_vec(), n);
                });
                counter.collect_garbage(clock);
            }
        }
        for t in 0..6 {
            assert_eq!(counter.count_local(topic(t)).unwrap(), model.count(t), "topic {t} after {op:?}");
        }
        let pairs: usize = model.members.values().map(|s| s.len()).sum();
        assert_eq!(counter.pairs(), pairs);
    }
    let total: u64 = (0..6).map(|t| model.count(t)).sum();
    assert_eq!(counter.total_local(), total);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn single_thread_matches_model(ops in proptest::collection::vec(op(), 1..200)) {
        check(&ops, Duration::from_secs(3600));
    }

    /// With GC after 0 ms, topics are collected and ids recycled constantly.
    #[test]
    fn matches_model_under_aggressive_gc(ops in proptest::collection::vec(op(), 1..200)) {
        check(&ops, Duration::ZERO);
    }
}

/// Threads each own a set of connections and run random track/untrack
/// sequences over shared topics; the final counts must equal the model
/// built from each thread's own results.
#[test]
fn multi_threaded_final_counts_are_exact() {
    const THREADS: u64 = 4;
    const OPS: usize = 20_000;
    let counter = Counter::with_config(CounterConfig { gc_after: Duration::ZERO, ..Default::default() });
    let stop_gc = std::sync::atomic::AtomicBool::new(false);
    let models: Vec<HashMap<u8, HashSet<u64>>> = std::thread::scope(|s| {
        // A flusher-like thread drains and collects garbage throughout.
        let gc = s.spawn(|| {
            while !stop_gc.load(std::sync::atomic::Ordering::Relaxed) {
                counter.drain(Instant::now(), |_, _| {});
                counter.collect_garbage(Instant::now());
                std::thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let counter = &counter;
                s.spawn(move || {
                    let mut model: HashMap<u8, HashSet<u64>> = HashMap::new();
                    let mut rng = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..OPS {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let tp = (rng % 16) as u8;
                        let conn = t * 1000 + (rng >> 20) % 8;
                        match (rng >> 40) % 5 {
                            0 | 1 => {
                                let added = model.entry(tp).or_default().insert(conn);
                                assert_eq!(counter.track(topic(tp), conn).unwrap(), added);
                            }
                            2 | 3 => {
                                let removed = model.entry(tp).or_default().remove(&conn);
                                assert_eq!(counter.untrack(topic(tp), conn).unwrap(), removed);
                            }
                            _ => {
                                let n = model.values_mut().map(|s| s.remove(&conn)).filter(|&r| r).count();
                                assert_eq!(counter.untrack_all(conn), n);
                            }
                        }
                    }
                    model
                })
            })
            .collect();
        let models = workers.into_iter().map(|w| w.join().unwrap()).collect();
        stop_gc.store(true, std::sync::atomic::Ordering::Relaxed);
        gc.join().unwrap();
        models
    });
    let mut total = 0;
    for tp in 0..16u8 {
        let want: usize = models.iter().map(|m| m.get(&tp).map_or(0, |s| s.len())).sum();
        assert_eq!(counter.count_local(topic(tp)).unwrap(), want as u64, "topic {tp}");
        total += want as u64;
    }
    assert_eq!(counter.total_local(), total);
    // And one more drain reports exactly those counts for changed topics.
    counter.drain(Instant::now(), |name, n| {
        assert_eq!(counter.count_local(name).unwrap(), n);
    });
}

/// Raw adds from many threads on one hot topic sum exactly.
#[test]
fn concurrent_adds_sum_exactly() {
    let counter = Counter::new();
    let handle = counter.topic(b"hot").unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (counter, handle) = (&counter, &handle);
            s.spawn(move || {
                for i in 0..50_000 {
                    if (i + t) % 2 == 0 {
                        counter.add(b"hot", 1).unwrap();
                    } else {
                        handle.add(1);
                    }
                }
            });
        }
    });
    assert_eq!(counter.count_local(b"hot").unwrap(), 200_000);
    assert_eq!(handle.count_local(), 200_000);
}
