//! Behaviour of the local counting core that users rely on.

use headcount::{Counter, CounterConfig, Error};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn drained(counter: &Counter, now: Instant) -> BTreeMap<Vec<u8>, u64> {
    let mut out = BTreeMap::new();
    counter.drain(now, |name, n| {
        out.insert(name.to_vec(), n);
    });
    out
}

fn gc_counter(after: Duration) -> Counter {
    Counter::with_config(CounterConfig { gc_after: after, ..Default::default() })
}

/// Runs drain + GC passes (as the flusher does) until `done` or 5 s pass.
fn run_gc_until(counter: &Counter, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "GC did not finish in time");
        counter.drain(Instant::now(), |_, _| {});
        counter.collect_garbage(Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn track_is_idempotent_and_untrack_of_absent_pair_is_a_no_op() {
    let c = Counter::new();
    assert!(c.track(b"a", 1).unwrap());
    assert!(!c.track(b"a", 1).unwrap());
    assert_eq!(c.count_local(b"a").unwrap(), 1);
    assert!(!c.untrack(b"a", 2).unwrap());
    assert!(!c.untrack(b"never-seen", 1).unwrap());
    assert_eq!(c.count_local(b"a").unwrap(), 1);
    assert!(c.untrack(b"a", 1).unwrap());
    assert!(!c.untrack(b"a", 1).unwrap());
    assert_eq!(c.count_local(b"a").unwrap(), 0);
}

#[test]
fn untrack_all_removes_a_connection_everywhere() {
    let c = Counter::new();
    for t in 0..10u8 {
        c.track([b't', t], 7).unwrap();
        c.track([b't', t], 8).unwrap();
    }
    assert_eq!(c.pairs(), 20);
    assert_eq!(c.connections(), 2);
    assert_eq!(c.untrack_all(7), 10);
    assert_eq!(c.untrack_all(7), 0);
    assert_eq!(c.total_local(), 10);
    assert_eq!(c.pairs(), 10);
}

#[test]
fn invalid_topics_are_clear_errors() {
    let c = Counter::with_config(CounterConfig { max_topic_len: 8, ..Default::default() });
    let e = c.track(b"", 1).unwrap_err();
    assert!(matches!(e, Error::InvalidTopic { len: 0, max: 8 }));
    assert!(e.to_string().contains("empty"), "{e}");
    let e = c.add(b"123456789", 1).unwrap_err();
    assert!(e.to_string().contains("9 bytes") && e.to_string().contains("8"), "{e}");
    assert!(c.count_local([0u8; 9]).is_err());
    assert!(c.untrack(b"", 1).is_err());
    assert!(c.topic(b"").is_err());
    assert!(c.track(b"12345678", 1).unwrap(), "exactly max_topic_len is fine");
    assert_eq!(c.topics(), 1, "failed calls create nothing");
}

#[test]
fn topics_are_arbitrary_bytes() {
    let c = Counter::new();
    let weird: &[u8] = &[0, 255, 10, 13, 0];
    c.track(weird, 1).unwrap();
    c.track([0], 1).unwrap();
    assert_eq!(c.count_local(weird).unwrap(), 1);
    assert_eq!(c.count_local([0]).unwrap(), 1);
    assert_eq!(c.count_local([0, 0]).unwrap(), 0);
}

#[test]
fn reads_never_go_negative() {
    let c = Counter::new();
    c.add(b"x", -5).unwrap();
    assert_eq!(c.count_local(b"x").unwrap(), 0);
    assert_eq!(c.total_local(), 0);
    c.add(b"x", 7).unwrap();
    assert_eq!(c.count_local(b"x").unwrap(), 2);
    assert_eq!(drained(&c, Instant::now())[&b"x".to_vec()], 2);
}

#[test]
fn drain_reports_exactly_the_changed_topics() {
    let c = Counter::new();
    for t in 0..100u32 {
        c.add(format!("t{t}").as_bytes(), 1).unwrap();
    }
    assert_eq!(drained(&c, Instant::now()).len(), 100);
    assert!(drained(&c, Instant::now()).is_empty(), "nothing changed since");
    c.add(b"t5", 2).unwrap();
    c.track(b"t7", 1).unwrap();
    c.track(b"t7", 1).unwrap(); // no-op: not a change, but harmless if reported
    let d = drained(&c, Instant::now());
    assert_eq!(d.get(b"t5".as_slice()), Some(&3));
    assert_eq!(d.get(b"t7".as_slice()), Some(&2));
    assert_eq!(d.len(), 2);
    // A join then a leave in one interval still reports the (unchanged) count.
    c.track(b"t9", 9).unwrap();
    c.untrack(b"t9", 9).unwrap();
    assert_eq!(drained(&c, Instant::now()).get(b"t9".as_slice()), Some(&1));
}

#[test]
fn drain_covers_many_segments() {
    let c = Counter::new();
    let n = 10_000u32; // more than two 4096-topic segments
    for t in 0..n {
        c.add(t.to_le_bytes(), i64::from(t % 3)).unwrap();
    }
    let d = drained(&c, Instant::now());
    assert_eq!(d.len(), n as usize);
    for t in 0..n {
        assert_eq!(d[&t.to_le_bytes().to_vec()], u64::from(t % 3));
    }
}

#[test]
fn for_each_nonzero_skips_zeros() {
    let c = Counter::new();
    c.add(b"a", 2).unwrap();
    c.add(b"b", 0).unwrap();
    c.track(b"c", 1).unwrap();
    c.untrack(b"c", 1).unwrap();
    let mut seen = BTreeMap::new();
    c.for_each_nonzero(|name, n| {
        seen.insert(name.to_vec(), n);
    });
    assert_eq!(seen, BTreeMap::from([(b"a".to_vec(), 2)]));
}

#[test]
fn gc_removes_topics_at_zero_and_recycles_ids() {
    let c = gc_counter(Duration::ZERO);
    for round in 0..5 {
        for t in 0..1000u32 {
            c.track(format!("r{round}-{t}").as_bytes(), 1).unwrap();
        }
        assert_eq!(c.untrack_all(1), 1000);
        run_gc_until(&c, || c.topics() == 0);
    }
    // Counting still works on recycled ids.
    c.track(b"fresh", 2).unwrap();
    assert_eq!(c.count_local(b"fresh").unwrap(), 1);
    assert_eq!(c.total_local(), 1);
}

#[test]
fn gc_waits_for_gc_after() {
    let c = gc_counter(Duration::from_secs(3600));
    c.track(b"idle", 1).unwrap();
    c.untrack(b"idle", 1).unwrap();
    let now = Instant::now();
    for _ in 0..5 {
        c.drain(now, |_, _| {});
        c.collect_garbage(now);
    }
    assert_eq!(c.topics(), 1, "an hour has not passed");
    let later = now + Duration::from_secs(3601);
    let mut removed = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while removed == 0 {
        assert!(Instant::now() < deadline);
        c.drain(later, |_, _| {});
        removed += c.collect_garbage(later);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.topics(), 0);
}

#[test]
fn a_handle_keeps_its_topic_alive() {
    let c = gc_counter(Duration::ZERO);
    let h = c.topic(b"pinned").unwrap();
    for _ in 0..50 {
        c.drain(Instant::now(), |_, _| {});
        c.collect_garbage(Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.topics(), 1);
    h.add(2);
    assert!(h.track(5));
    assert!(!h.track(5));
    assert_eq!(c.count_local(b"pinned").unwrap(), 3);
    assert!(h.untrack(5));
    h.add(-2);
    let h2 = h.clone();
    drop(h);
    assert_eq!(h2.name(), b"pinned");
    drop(h2);
    run_gc_until(&c, || c.topics() == 0);
}

#[test]
fn writes_racing_gc_are_never_lost() {
    // Writers repeatedly bring topics to zero while GC collects with
    // gc_after = 0; every final count must still be exact.
    let c = gc_counter(Duration::ZERO);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.drain(Instant::now(), |_, _| {});
                c.collect_garbage(Instant::now());
            }
        });
        let workers: Vec<_> = (0..3u64)
            .map(|w| {
                let c = &c;
                s.spawn(move || {
                    for i in 0..20_000u64 {
                        let topic = [b'g', (i % 4) as u8];
                        c.track(topic, w).unwrap();
                        if i % 3 != 0 {
                            c.untrack(topic, w).unwrap();
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    for t in 0..4u8 {
        // Each worker ends tracked in topic t iff its last op on t was a
        // track that was not undone: i % 3 == 0 for the last i with i%4==t.
        let last_i = (0..20_000u64).rfind(|i| i % 4 == u64::from(t)).unwrap();
        let want = if last_i % 3 == 0 { 3 } else { 0 };
        assert_eq!(c.count_local([b'g', t]).unwrap(), want, "topic {t}");
    }
}

/// A connection in a great many topics going away (a monitoring process,
/// a NIF's dead process) blocks only its own `untrack_all`: the other
/// connections of its membership shard keep tracking meanwhile.
#[test]
fn untrack_all_of_a_huge_connection_does_not_stall_other_connections() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const TOPICS: usize = 200_000;
    // One stripe: 16 membership shards, so some of the 256 other
    // connections share conn 1's shard (all miss it with p = (15/16)^256).
    let c = Counter::with_config(CounterConfig { stripes: Some(1), ..Default::default() });
    for i in 0..TOPICS {
        c.track(format!("big:{i}"), 1).unwrap();
    }
    let done = AtomicBool::new(false);
    let (took, longest) = std::thread::scope(|s| {
        let other = s.spawn(|| {
            let (mut longest, mut last, mut i) = (Duration::ZERO, Instant::now(), 0u64);
            while !done.load(Ordering::Relaxed) {
                let conn = 1_000 + i % 256;
                assert!(c.track(b"small", conn).unwrap());
                assert!(c.untrack(b"small", conn).unwrap());
                i += 1;
                let now = Instant::now();
                longest = longest.max(now - last);
                last = now;
            }
            longest
        });
        std::thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        assert_eq!(c.untrack_all(1), TOPICS);
        let took = start.elapsed();
        done.store(true, Ordering::Relaxed);
        (took, other.join().unwrap())
    });
    eprintln!("untrack_all of {TOPICS} topics took {took:?}; the other thread's longest wait {longest:?}");
    assert!(longest < took / 4, "other connections waited {longest:?} of the {took:?} untrack_all took");
    assert_eq!(c.total_local(), 0);
    assert_eq!(c.count_local(b"big:7").unwrap(), 0);
}
