//! loom models of every lock-free protocol in the core, one per protocol.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p headcount --release --lib loom_models --target-dir target/loom`
//!
//! Each model states the invariant it checks. They drive the real code
//! (table, stripes, dirty bitmap, GC), with the `crate::sync` facade swapping
//! in loom's atomics and a loom-visible stand-in for epoch grace periods.

use crate::counter::{Counter, CounterConfig};
use crate::sync::{pin, synchronize};
use crate::table::Table;
use loom::thread;
use std::time::{Duration, Instant};

fn counter(gc_after: Duration) -> Counter {
    Counter::with_config(CounterConfig { max_topic_len: 16, gc_after, stripes: Some(2) })
}

/// **Invariant: a lookup of a topic whose insert finished before the lookup
/// began finds it, even while another thread grows the table; and after
/// growth every topic is still found.**
#[test]
fn lookup_during_growth_never_misses() {
    loom::model(|| {
        let table = loom::sync::Arc::new(Table::new());
        // 16 slots, grown when an insert would pass half full: the 8th
        // insert grows the table.
        let names: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'k', i]).collect();
        {
            let guard = pin();
            for name in &names[..7] {
                table.find_or_insert(name, table.hash(name), &guard, |_| {}).unwrap();
            }
        }
        let grower = {
            let (table, name) = (table.clone(), names[7].clone());
            thread::spawn(move || {
                let guard = pin();
                table.find_or_insert(&name, table.hash(&name), &guard, |_| {}).unwrap();
            })
        };
        {
            let guard = pin();
            for name in &names[..7] {
                assert!(table.find(name, table.hash(name), &guard).is_some(), "missed {name:?} during growth");
            }
        }
        grower.join().unwrap();
        let guard = pin();
        for name in &names {
            assert!(table.find(name, table.hash(name), &guard).is_some(), "missed {name:?} after growth");
        }
        drop(guard);
        synchronize();
    });
}

/// **Invariant: after the last write finishes, one more drain ships the
/// final count.** The value the flusher last shipped for a topic, updated by
/// a drain that starts after every write has finished, equals the true
/// count, whichever way a writer's dirty-bit check and a concurrent drain's
/// swap interleave (including the writer finding its bit already set).
#[test]
fn drain_after_last_write_ships_final_count() {
    loom::model(|| {
        let c = counter(Duration::from_secs(3600));
        // Pre-set the dirty bit, so the writer below may skip marking.
        c.add(b"t", 1).unwrap();
        let writer = {
            let c = c.clone();
            thread::spawn(move || c.add(b"t", 1).unwrap())
        };
        let now = Instant::now();
        let mut shipped = None;
        c.drain(now, |_, n| shipped = Some(n));
        writer.join().unwrap();
        c.drain(now, |_, n| shipped = Some(n));
        assert_eq!(shipped, Some(2), "the flusher's view is stale after the last drain");
        synchronize();
    });
}

/// **Invariant: GC never frees a topic a concurrent track is using.** A
/// track racing every step of topic GC is counted on its topic (never lost,
/// never landed on a recycled id), and the topic is found afterwards.
#[test]
fn gc_never_loses_a_racing_track() {
    loom::model(|| {
        let c = counter(Duration::ZERO);
        c.track(b"t", 1).unwrap();
        c.untrack(b"t", 1).unwrap();
        let now = Instant::now();
        c.drain(now, |_, _| {}); // GC learns that "t" is at zero
        let tracker = {
            let c = c.clone();
            thread::spawn(move || assert!(c.track(b"t", 2).unwrap()))
        };
        // Step 1 (mark), grace period, step 2 (decide), grace, step 3.
        c.collect_garbage(now);
        synchronize();
        c.collect_garbage(now);
        synchronize();
        c.collect_garbage(now);
        tracker.join().unwrap();
        assert_eq!(c.count_local(b"t").unwrap(), 1, "the racing track was lost");
        assert_eq!(c.total_local(), 1, "the track landed on another id");
        assert!(c.untrack(b"t", 2).unwrap(), "membership and table disagree");
        assert_eq!(c.count_local(b"t").unwrap(), 0);
        synchronize();
    });
}

/// **Invariant: stripe sums are exact at quiescence.** Writes from several
/// threads land in different stripes (cells may go negative); once they
/// finish, the count is exactly the sum of all deltas.
#[test]
fn stripe_sums_are_exact_at_quiescence() {
    loom::model(|| {
        let c = counter(Duration::from_secs(3600));
        let h = c.topic(b"t").unwrap();
        let other = {
            let h = h.clone();
            thread::spawn(move || {
                h.add(-1);
                h.add(3);
            })
        };
        h.add(2);
        assert!(h.count_local() <= 4, "a racy read may lag but never overshoot");
        other.join().unwrap();
        assert_eq!(h.count_local(), 4);
        assert_eq!(c.count_local(b"t").unwrap(), 4);
        drop(h);
        synchronize();
    });
}
