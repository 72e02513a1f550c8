//! The flush policy seen from the peer (`flush_mode`, docs/CLUSTER.md):
//! adaptive ships a lone change on a quiet cluster at once and batches a
//! burst into at most one state frame per interval per peer; fixed waits
//! for the next tick. The policy's arithmetic is unit-tested against made-up
//! instants in `core/src/flush.rs`; these tests check the wiring, with
//! bounds generous enough for a loaded 2-core machine.

mod support;

use std::time::{Duration, Instant};

use headcount::Node;
use support::{addr, node, peers_in_state, wait_for};

/// Long enough that "well before one interval" is unmistakable.
const INTERVAL_MS: u64 = 1000;

fn pair(mode: &str, interval_ms: u64) -> (Node, Node) {
    let ms = interval_ms.to_string();
    let kv = [("flush_mode", mode), ("flush_interval_ms", ms.as_str())];
    let a = node(&format!("{mode}-a"), &[], &kv);
    let b = node(&format!("{mode}-b"), &[addr(&a)], &kv);
    let up = wait_for(Duration::from_secs(10), || peers_in_state(&a, "up") == 1 && peers_in_state(&b, "up") == 1);
    assert!(up.is_some(), "the pair never connected");
    (a, b)
}

fn flushes(n: &Node) -> u64 {
    n.stats().unwrap().flush.flushes
}

/// SNAPSHOT and DELTA frames `n` sent to its one peer.
fn state_frames_out(n: &Node) -> u64 {
    n.stats().unwrap().peers[0].traffic.state_frames_out
}

/// Waits until `n` has run a flush that shipped nothing (the cluster is
/// quiet) and returns right after the next one starts: the worst moment
/// for a fixed schedule, a whole interval before its next tick.
fn just_after_a_quiet_flush(n: &Node) {
    let drained = |n: &Node| n.stats().unwrap().flush.topics_drained;
    let quiet_for = Duration::from_millis(INTERVAL_MS + 200);
    let (mut last, mut since) = (drained(n), Instant::now());
    let deadline = Instant::now() + Duration::from_secs(30);
    // Nothing drained for over an interval.
    while since.elapsed() < quiet_for {
        assert!(Instant::now() < deadline, "the node never went quiet");
        std::thread::sleep(Duration::from_millis(5));
        let d = drained(n);
        if d != last {
            (last, since) = (d, Instant::now());
        }
    }
    let f0 = flushes(n);
    let ran = wait_for(Duration::from_secs(10), || flushes(n) > f0);
    assert!(ran.is_some(), "no housekeeping flush");
}

/// How long until `b` counts `topic` as `want`.
fn arrival(b: &Node, topic: &[u8], want: u64, since: Instant) -> Duration {
    let ok = wait_for(Duration::from_secs(10), || b.count(topic).unwrap() == want);
    assert!(ok.is_some(), "{:?} never reached {want}", String::from_utf8_lossy(topic));
    since.elapsed()
}

#[test]
fn adaptive_ships_a_lone_change_on_a_quiet_cluster_at_once() {
    let (a, b) = pair("adaptive", INTERVAL_MS);
    a.track(b"room:old", 1).unwrap();
    arrival(&b, b"room:old", 1, Instant::now());
    // An existing topic, then a new one (born dirty before its first add).
    for (topic, want) in [(&b"room:old"[..], 2), (&b"room:new"[..], 1)] {
        just_after_a_quiet_flush(&a);
        let t = Instant::now();
        a.track(topic, 2).unwrap();
        let took = arrival(&b, topic, want, t);
        // A fixed schedule would take about a whole interval here.
        assert!(
            took < Duration::from_millis(INTERVAL_MS / 2),
            "{:?} took {took:?} with flush_interval_ms {INTERVAL_MS}",
            String::from_utf8_lossy(topic)
        );
    }
}

#[test]
fn fixed_waits_for_the_next_tick() {
    let (a, b) = pair("fixed", INTERVAL_MS);
    a.track(b"room", 1).unwrap();
    arrival(&b, b"room", 1, Instant::now());
    just_after_a_quiet_flush(&a);
    let t = Instant::now();
    a.track(b"room", 2).unwrap();
    let took = arrival(&b, b"room", 2, t);
    // The tick just passed: the next is an interval later (minus the few
    // ms it took to notice the flush).
    assert!(took >= Duration::from_millis(INTERVAL_MS / 2), "fixed mode shipped after {took:?}");
}

/// A burst of changes for about 5 intervals: state frames to the peer are at
/// most one per interval (plus the leading edge's), in both modes.
fn burst_is_batched(mode: &str) {
    let interval = Duration::from_millis(200);
    let (a, b) = pair(mode, interval.as_millis() as u64);
    let topics: Vec<Vec<u8>> = (0..50).map(|i| format!("burst:{i}").into_bytes()).collect();
    for t in &topics {
        a.add(t, 1).unwrap();
    }
    arrival(&b, &topics[49], 1, Instant::now());
    // Let the last shipment's frames go out.
    std::thread::sleep(interval * 2);
    let f0 = state_frames_out(&a);
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < interval * 5 {
        a.add(&topics[i % topics.len()], 1).unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    let want = a.count_local(&topics[(i - 1) % topics.len()]).unwrap();
    arrival(&b, &topics[(i - 1) % topics.len()], want, start);
    let ok =
        wait_for(Duration::from_secs(10), || topics.iter().all(|t| b.count(t).unwrap() == a.count_local(t).unwrap()));
    assert!(ok.is_some(), "b never converged");
    let elapsed = start.elapsed();
    let frames = state_frames_out(&a) - f0;
    // One frame per flush that shipped (50 topics fit one DELTA): at most
    // one per interval over the burst, plus the leading edge.
    let most = elapsed.as_millis() as u64 / interval.as_millis() as u64 + 2;
    assert!(frames >= 2, "{mode}: {frames} frames for {i} changes over {elapsed:?}");
    assert!(frames <= most, "{mode}: {frames} state frames for {i} changes over {elapsed:?}; at most {most}");
}

#[test]
fn adaptive_batches_a_burst_into_one_frame_per_interval() {
    burst_is_batched("adaptive");
}

#[test]
fn fixed_batches_a_burst_into_one_frame_per_interval() {
    burst_is_batched("fixed");
}
