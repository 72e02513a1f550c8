//! loom models of every lock-free protocol in the core, one per protocol.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p headcount --release --lib loom_models --target-dir target/loom`
//!
//! Each model states the invariant it checks. They drive the real code
//! (table, stripes, dirty bitmap, GC, the cluster's remote view, the change
//! feed's hub), with the
//! `crate::sync` facade swapping in loom's atomics and locks and a
//! loom-visible stand-in for epoch grace periods.

use crate::cluster::view::View;
use crate::counter::{Counter, CounterConfig};
use crate::sync::{pin, synchronize, SharedBytes};
use crate::sync::{AtomicU64, Ordering};
use crate::table::Table;
use crate::watch::hub::Hub;
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

/// A flusher (the model's main thread) that sleeps with `sleep` until a
/// change while a writer changes a clean topic, then drains.
fn change_while_the_flusher_sleeps(sleep: fn(&Counter)) {
    loom::model(move || {
        let c = counter(Duration::from_secs(3600));
        c.add(b"t", 1).unwrap();
        let now = Instant::now();
        c.drain(now, |_, _| {}); // "t" is clean
        c.wake().register();
        let writer = {
            let c = c.clone();
            thread::spawn(move || c.add(b"t", 1).unwrap())
        };
        // No clock under loom: the sleep ends only by a wake-up, and a lost
        // one leaves this thread parked for ever, which loom reports.
        let mut shipped = None;
        while shipped.is_none() {
            sleep(&c);
            c.drain(now, |_, n| shipped = Some(n));
        }
        writer.join().unwrap();
        assert_eq!(shipped, Some(2), "the flusher was woken before the change was visible");
        synchronize();
    });
}

/// **Invariant (`wake.rs`): no lost wake-up: a change marked while the
/// flusher goes to sleep is always flushed.** Whichever way the writer's
/// dirty bit and its check of `sleeping` interleave with the flusher's
/// arming and its check of the bits, the flusher either sees the change
/// before it parks or is unparked, and its drain ships the new count.
///
/// Checked to fail when broken: [`checking_before_arming_is_caught`].
#[test]
fn a_change_marked_while_the_flusher_sleeps_is_flushed() {
    change_while_the_flusher_sleeps(|c| c.wake().sleep_until(Instant::now(), || c.has_changes()));
}

/// The same model with a flusher that checks for changes before arming
/// ([`crate::wake::Wake::sleep_until_checking_first`]): loom finds the
/// schedule where the change falls in between and nobody wakes it.
#[test]
#[should_panic(expected = "deadlock")]
fn checking_before_arming_is_caught() {
    change_while_the_flusher_sleeps(|c| c.wake().sleep_until_checking_first(Instant::now(), || c.has_changes()));
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

/// A cluster view with peer slot 0 owned by connection 1, holding `reports`.
fn view_with(reports: &[(&str, u64)], counted: bool) -> loom::sync::Arc<View> {
    let v = View::with_feed(None);
    v.activate(0);
    v.set_owner(0, 1);
    assert!(v.replace(0, 1, reports.iter().map(|(t, n)| (topic(t), *n)).collect()));
    v.set_counted(0, counted);
    loom::sync::Arc::new(v)
}

fn topic(name: &str) -> SharedBytes {
    SharedBytes::from(name.as_bytes())
}

/// The view's slot reuse, as the registry does it for a restarted peer (new
/// incarnation, same slot): peer P's reports are in the index but P is not
/// counted (still syncing); the slot is cleared, given to peer Q's
/// connection, filled with Q's snapshot, and counted. `count` is the reader
/// under test.
fn reuse_slot_while_reading(count: fn(&View, &[u8]) -> u64) {
    loom::model(move || {
        let v = view_with(&[("t", 3)], false);
        let reader = {
            let v = v.clone();
            thread::spawn(move || count(&v, b"t"))
        };
        v.clear(0);
        v.set_owner(0, 2);
        assert!(v.replace(0, 2, vec![(topic("t"), 7)]));
        v.set_counted(0, true);
        let seen = reader.join().unwrap();
        assert!(seen == 0 || seen == 7, "count read {seen}: the previous peer's report was counted");
    });
}

/// **Invariant (the view's lock-plus-flag protocol, cluster/view.rs): a
/// read of `count(topic)` sums only entries whose peer is counted at that
/// moment; it never counts the report of a slot's previous peer, even while
/// the slot is cleared and handed to another peer.** It holds because a
/// reader checks each slot's `counted` flag while it holds the index shard's
/// read lock, and a slot's entries can only leave the index (which a reuse
/// must wait for) under that shard's write lock.
///
/// The model is checked to fail when the protocol is broken:
/// [`reuse_with_flags_checked_after_unlock_is_caught`] runs it with a reader
/// that checks the flags after releasing the lock.
#[test]
fn view_never_counts_a_previous_peers_report() {
    reuse_slot_while_reading(View::count_only);
}

/// The same model against a broken reader ([`View::count_only_flags_after_unlock`]):
/// loom finds the schedule where it counts the previous peer's 3.
#[test]
#[should_panic(expected = "the previous peer's report was counted")]
fn reuse_with_flags_checked_after_unlock_is_caught() {
    reuse_slot_while_reading(View::count_only_flags_after_unlock);
}

/// A counted peer's reports {a: 3, b: 1} replaced by `update` (its new
/// snapshot: {a: 5, c: 2}) while another thread reads.
fn update_while_reading(update: fn(&View)) {
    loom::model(move || {
        let v = view_with(&[("a", 3), ("b", 1)], true);
        let reader = {
            let v = v.clone();
            thread::spawn(move || (v.count_only(b"a"), v.total()))
        };
        update(&v);
        let (a, total) = reader.join().unwrap();
        assert!(a == 3 || a == 5, "count(a) read {a} during a snapshot: neither the old 3 nor the new 5");
        assert!(total == 4 || total == 7, "total read {total} during a snapshot: neither the old 4 nor the new 7");
        assert_eq!((v.count_only(b"a"), v.count_only(b"b"), v.count_only(b"c"), v.total()), (5, 0, 2, 7));
    });
}

/// **Invariant (`View::replace`): while a counted peer's new snapshot
/// replaces its reports, a read of a topic it reports in both sees the old
/// or the new count, never 0 (its counts never vanish and come back), and
/// `total` is the old or the new sum.** Topics are updated one by one, old
/// value to new, under the slot's lock; the slot's sum is published once.
///
/// Checked to fail when broken: [`replace_by_removing_first_is_caught`]
/// replaces by removing every report first.
#[test]
fn view_replace_shows_old_or_new_counts() {
    update_while_reading(|v| assert!(v.replace(0, 1, vec![(topic("a"), 5), (topic("c"), 2)])));
}

/// The same model with a replace that removes the old reports, then adds
/// the new ones: loom finds a read of 0 in between.
#[test]
#[should_panic(expected = "during a snapshot")]
fn replace_by_removing_first_is_caught() {
    update_while_reading(|v| {
        assert!(v.apply(0, 1, vec![(topic("a"), 0), (topic("b"), 0)]));
        assert!(v.apply(0, 1, vec![(topic("a"), 5), (topic("c"), 2)]));
    });
}

/// A watch registers with `initial` while a source changes a count and
/// publishes it; `plain_load` selects the broken source.
fn register_while_changing(plain_load: bool) {
    loom::model(move || {
        let hub = loom::sync::Arc::new(Hub::default());
        let state = loom::sync::Arc::new(AtomicU64::new(0));
        let source = {
            let (hub, state) = (hub.clone(), state.clone());
            thread::spawn(move || {
                state.store(1, Ordering::Relaxed);
                let t = [topic("t")];
                let count = |_: &[u8], ()| state.load(Ordering::Relaxed);
                if plain_load {
                    hub.changed_with_plain_load(t.iter().map(|t| (t, ())), count);
                } else {
                    hub.changed(t.iter().map(|t| (t, ())), count);
                }
            })
        };
        let scan = |emit: &mut dyn FnMut(&[u8], u64)| match state.load(Ordering::Relaxed) {
            0 => {}
            n => emit(b"t", n),
        };
        let inbox = hub.register(b"", true, scan).unwrap().unwrap();
        source.join().unwrap();
        let got = inbox.take(hub.backlog_counter()).unwrap();
        assert_eq!(got.last().map(|(_, n)| *n), Some(1), "the new watch missed the change");
    });
}

/// **Invariant (the change feed's flag protocol, watch/hub.rs): a watch
/// registered with `initial` while a count changes ends up with the new
/// count: either its scan sees the change or the source, publishing after
/// the change, reaches it.** It holds because the source checks for watches
/// with a read-modify-write of the flag that registration also modifies
/// (under the index lock, before scanning): whichever comes first in the
/// flag's modification order, the other sees its effects.
///
/// Checked to fail when broken: [`watch_flag_read_by_plain_load_is_caught`].
#[test]
fn watch_registration_sees_every_change() {
    register_while_changing(false);
}

/// The same model with a source that reads the flag with a plain load:
/// loom finds the schedule where it reads 0 and the scan misses the change.
#[test]
#[should_panic(expected = "the new watch missed the change")]
fn watch_flag_read_by_plain_load_is_caught() {
    register_while_changing(true);
}
