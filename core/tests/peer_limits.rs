//! Per-peer memory limits (issue 13): an authenticated peer that defines
//! more topics (`max_peer_topics`), more bytes of names
//! (`max_peer_topic_bytes`) or longer names (`max_topic_len`) than the node
//! accepts is refused with BYE PEER_TOO_LARGE, its counts are dropped at
//! once, the event is counted, and the node's memory stays bounded. The
//! hostile peers here are hand-driven: a real `Conn` for the handshake, then
//! frames written by hand.

mod support;

use std::time::Duration;

use headcount::internals::wire::{ByeCode, Entry};
use support::procfs::rss_bytes;
use support::raw_peer::RawPeer;
use support::*;

fn define(id: u32, name: impl Into<Vec<u8>>, count: u64) -> Entry {
    Entry { id, name: Some(name.into().into()), count }
}

fn too_large(n: &headcount::Node) -> u64 {
    stats(n)["peers_too_large"].as_u64().unwrap()
}

#[test]
fn a_peer_past_its_topic_limits_is_refused_and_its_counts_dropped_at_once() {
    // A long grace: the counts must go at once anyway.
    let a = node(
        "lim-a",
        &[],
        &[("down_grace_ms", "60000"), ("max_peer_topics", "1000"), ("max_peer_topic_bytes", "200000")],
    );
    let to = a.local_addr().unwrap();

    // Too many topics: 500 in the snapshot are counted, 600 more are refused.
    let mut p = RawPeer::join(to, 1001);
    p.snapshot(true, true, (0..500).map(|i| define(i, format!("many-{i}"), 1)).collect()).unwrap();
    assert!(wait_for(Duration::from_secs(5), || a.total().unwrap() == 500).is_some(), "snapshot not applied");
    p.delta((500..1100).map(|i| define(i, format!("many-{i}"), 1)).collect()).unwrap();
    assert_eq!(p.bye(Duration::from_secs(5)), Some(ByeCode::PEER_TOO_LARGE));
    assert!(wait_for(Duration::from_secs(2), || a.total().unwrap() == 0).is_some(), "counts kept");
    assert_eq!(a.count("many-1").unwrap(), 0);
    assert_eq!(too_large(&a), 1);

    // Too many bytes of names: 300 names of 1000 bytes in an unfinished
    // snapshot (each under max_topic_len).
    let mut p = RawPeer::join(to, 1002);
    let entries = (0..300u32).map(|i| define(i, format!("{i:01000}"), 1)).collect::<Vec<_>>();
    p.snapshot(true, false, entries[..150].to_vec()).unwrap();
    p.snapshot(false, false, entries[150..].to_vec()).unwrap();
    assert_eq!(p.bye(Duration::from_secs(5)), Some(ByeCode::PEER_TOO_LARGE));
    assert!(wait_for(Duration::from_secs(2), || too_large(&a) == 2).is_some());
    assert_eq!(a.total().unwrap(), 0);

    // Redefining an id still counted is a protocol error, not a way round.
    let mut p = RawPeer::join(to, 1003);
    p.snapshot(true, true, vec![define(0, "kept", 1)]).unwrap();
    p.delta(vec![define(0, "other", 1)]).unwrap();
    assert_eq!(p.bye(Duration::from_secs(5)), Some(ByeCode::PROTOCOL_ERROR));
    assert_eq!(too_large(&a), 2);

    // A well-behaved peer afterwards is served.
    let b = node("lim-b", &[addr(&a)], &[]);
    b.track("fine", 1).unwrap();
    assert!(wait_for(Duration::from_secs(5), || a.count("fine").unwrap() == 1).is_some());
}

#[test]
fn an_unfinished_snapshot_of_huge_names_leaves_memory_bounded() {
    // Default limits: max_topic_len 1024. The attack of issue 13: 16,380
    // topics with 64 KiB names in an unfinished snapshot (1 GiB; it took
    // a node from 4 MiB to 1.1 GiB).
    let a = node("huge-a", &[], &[]);
    let before = rss_bytes();
    let mut p = RawPeer::join(a.local_addr().unwrap(), 2001);
    let name = |i: u32| {
        let mut n = format!("{i:08}").into_bytes();
        n.resize(65_535, b'x');
        n
    };
    let per_frame = 15u32; // 15 x 64 KiB fits the 1 MiB frame cap
    let mut sent = 0;
    let mut id = 0;
    while id < 16_380 {
        let entries = (id..id + per_frame).map(|i| define(i, name(i), 1)).collect();
        if p.snapshot(id == 0, false, entries).is_err() {
            break; // the node closed the connection
        }
        id += per_frame;
        sent += 1;
    }
    assert_eq!(p.bye(Duration::from_secs(5)), Some(ByeCode::PEER_TOO_LARGE), "after {sent} frames");
    assert!(wait_for(Duration::from_secs(2), || too_large(&a) == 1).is_some());
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "RSS grew {} MiB after {sent} frames", grown >> 20);
    assert_eq!(stats(&a)["remote_topics"].as_u64(), Some(0));
}
