//! A closed link releases its socket (and with it the link: its `Conn` and
//! topic-id tables) at once, not when its peer is forgotten 60 s later
//! (issue 13: 300 fds and 277 MiB held for 58 s). The only test of this
//! binary, so that no other test's sockets move the process's fd count.

mod support;

use std::time::Duration;

use headcount::internals::wire::Entry;
use support::procfs::open_fds;
use support::raw_peer::RawPeer;
use support::*;

#[test]
fn closed_links_release_their_sockets_at_once() {
    let a = node("rel-a", &[], &[]);
    let to = a.local_addr().unwrap();
    // Let the node's own threads and sockets settle.
    std::thread::sleep(Duration::from_millis(200));
    let baseline = open_fds();
    let mut peers: Vec<RawPeer> = (0..40).map(|i| RawPeer::join(to, 3000 + i)).collect();
    for (i, p) in peers.iter_mut().enumerate() {
        // Each defines some topics, so each link holds id tables.
        let entries = (0..200).map(|t| Entry { id: t, name: Some(format!("p{i}-t{t}").into_bytes().into()), count: 1 });
        p.snapshot(true, true, entries.collect()).unwrap();
    }
    assert!(wait_for(Duration::from_secs(10), || peers_in_state(&a, "up") == 40).is_some());
    assert!(open_fds() >= baseline + 40, "the node's side of each link is a socket");
    drop(peers);
    // The links close on EOF; their sockets must go with them, not in 60 s.
    let released = wait_for(Duration::from_secs(3), || open_fds() <= baseline);
    assert!(released.is_some(), "{} fds open, {baseline} before the links", open_fds());
    assert_eq!(peers_in_state(&a, "down"), 40, "the peers are still known (down)");
    assert_eq!(a.total().unwrap(), 0, "down_grace_ms 0: their counts are gone");
}
