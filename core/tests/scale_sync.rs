//! A node with many non-zero topics syncs a peer that joins it, at default
//! settings, without the link flapping (issue 13): the receiver applies the
//! snapshot frame by frame, crediting the sender's frames as it reads them,
//! and the sender streams it in parts.
//!
//! The topic count is 500,000 in release builds (where main could not sync
//! it at all: 23 reconnects in 40 s) and 150,000 in debug builds (CI runs
//! `cargo test --workspace` in debug; there applying 150,000 entries in one
//! go on the reader thread outlasts `down_after_ms` just as 500,000 did in
//! release). `HEADCOUNT_SCALE_TOPICS` overrides it.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn topic_count() -> usize {
    let default = if cfg!(debug_assertions) { 150_000 } else { 500_000 };
    std::env::var("HEADCOUNT_SCALE_TOPICS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The one peer in `n`'s stats, as JSON.
fn only_peer(n: &headcount::Node) -> serde_json::Value {
    let s = stats(n);
    let peers = s["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{s}");
    peers[0].clone()
}

#[test]
fn a_peer_joining_a_node_with_many_topics_syncs_without_reconnecting() {
    let n = topic_count();
    let a = node("scale-a", &[], &[]);
    for i in 0..n {
        a.track(format!("scale-topic:{i}"), i as u64 % 1000).unwrap();
    }
    assert_eq!(a.total().unwrap(), n as u64);
    let start = Instant::now();
    let b = node("scale-b", &[addr(&a)], &[]);
    let limit = Duration::from_secs(if cfg!(debug_assertions) { 60 } else { 20 });
    let synced = wait_for(limit, || b.total().unwrap() == n as u64 && peers_in_state(&b, "up") == 1);
    let took = start.elapsed();
    let (pa, pb) = (only_peer(&a), only_peer(&b));
    assert!(
        synced.is_some(),
        "b not in sync after {took:?}: total {} of {n}; a's view of b: {pa}; b's view of a: {pb}",
        b.total().unwrap()
    );
    eprintln!("{n} topics in sync after {took:?}");
    for i in (0..n).step_by(n / 97 + 1) {
        let t = format!("scale-topic:{i}");
        assert_eq!(b.count(&t).unwrap(), 1, "{t}");
    }
    assert_eq!(b.count_local("scale-topic:0").unwrap(), 0);
    // Zero reconnects, on both sides.
    assert_eq!((pa["connects"].as_u64(), pb["connects"].as_u64()), (Some(1), Some(1)), "a: {pa}; b: {pb}");
    assert_eq!(pb["topics"].as_u64(), Some(n as u64));
    // The link stays up: a while later it is still the first one.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(only_peer(&b)["connects"].as_u64(), Some(1));
    assert_eq!(b.total().unwrap(), n as u64);
}
