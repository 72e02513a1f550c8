//! Several `headcount node` processes on loopback: counts converge, a node
//! killed with SIGKILL drops out of the others' counts within a bounded
//! time and comes back when restarted, a graceful `quit` drops out at once,
//! a node with the wrong secret gets nothing, and `--secret-file` wins over
//! `HEADCOUNT_SECRET`.

mod common;

use common::{eventually, NodeProc};
use std::time::Duration;

/// Fast flushes and failure detection so the test is short.
const FLUSH_MS: &str = "20";
const DOWN_AFTER_MS: &str = "400";
/// Generous bound for convergence on a loaded 2-core machine.
const CONVERGE: Duration = Duration::from_secs(10);

fn node(name: &str, seed: Option<&str>, down_after_ms: &str) -> NodeProc {
    let mut args = vec!["--listen", "127.0.0.1:0", "--flush-interval-ms", FLUSH_MS, "--down-after-ms", down_after_ms];
    if let Some(seed) = seed {
        args.extend(["--seeds", seed]);
    }
    NodeProc::start(name, &args)
}

/// `a` (the seed), `b`, `c`.
fn cluster(down_after_ms: &str) -> Vec<NodeProc> {
    let a = node("a", None, down_after_ms);
    assert!(a.addr.starts_with("127.0.0.1:") && !a.addr.ends_with(":0"), "ready {}", a.addr);
    let seed = a.addr.clone();
    vec![a, node("b", Some(&seed), down_after_ms), node("c", Some(&seed), down_after_ms)]
}

/// Tracks `n` connections (`base`..) in `topic` on `node`.
fn track(node: &mut NodeProc, topic: &str, base: u64, n: u64) {
    for conn in base..base + n {
        assert_eq!(node.cmd(&format!("track {topic} {conn}")), "ok 1");
    }
}

/// Waits until `count topic` is `want` on every node in `nodes`.
fn converge(nodes: &mut [&mut NodeProc], topic: &str, want: u64, what: &str) -> Duration {
    let mut last = Vec::new();
    eventually(CONVERGE, || {
        last = nodes.iter_mut().map(|n| (n.name.clone(), n.num(&format!("count {topic}")))).collect();
        last.iter().all(|(_, c)| *c == want)
    })
    .unwrap_or_else(|| panic!("{what}: {topic} not {want} everywhere within {CONVERGE:?}: {last:?}"))
}

#[test]
fn three_nodes_converge_and_a_killed_node_drops_out_then_returns() {
    let mut nodes = cluster(DOWN_AFTER_MS);
    let [a, b, c] = &mut nodes[..] else { unreachable!() };
    track(a, "room", 1, 2);
    track(b, "room", 100, 3);
    track(c, "room", 200, 5);
    track(c, "only-c", 200, 1);
    converge(&mut [a, b, c], "room", 10, "start");
    converge(&mut [a, b, c], "only-c", 1, "start");
    for n in [&mut *a, &mut *b, &mut *c] {
        assert_eq!(
            n.num("count_local room"),
            [("a", 2), ("b", 3), ("c", 5)].iter().find(|(k, _)| *k == n.name).unwrap().1
        );
        assert_eq!(n.json("info room")["peers_known"], 2, "{}", n.name);
        assert_eq!(n.num("total"), 11, "{}", n.name);
        let peers = n.json("peers");
        assert_eq!(peers.as_array().map(Vec::len), Some(2), "{}: {peers}", n.name);
    }

    // kill -9 c: no goodbye; a and b notice within down_after (+ slack).
    c.kill9();
    let took = converge(&mut [a, b], "room", 5, "after kill -9");
    converge(&mut [a, b], "only-c", 0, "after kill -9");
    assert!(took < Duration::from_secs(5), "c's counts took {took:?} to disappear");
    assert_eq!(a.num("total"), 5);

    // Restart c: its users reconnect, and it learns the others' counts.
    let seed = a.addr.clone();
    *c = node("c", Some(&seed), DOWN_AFTER_MS);
    track(c, "room", 200, 5);
    converge(&mut [a, b, c], "room", 10, "after restart");
    for n in [&mut *a, &mut *b, &mut *c] {
        assert_eq!(n.num("total"), 10, "{}", n.name);
    }
    for n in nodes.iter_mut() {
        assert_eq!(n.cmd("quit"), "ok");
        assert!(n.wait(Duration::from_secs(10)).is_some_and(|s| s.success()), "{} exits 0", n.name);
    }
}

#[test]
fn a_graceful_quit_drops_out_at_once() {
    // down_after is long, so only the goodbye can explain a fast drop.
    let mut nodes = cluster("30000");
    let [a, b, c] = &mut nodes[..] else { unreachable!() };
    track(a, "room", 1, 1);
    track(b, "room", 100, 4);
    track(c, "room", 200, 2);
    converge(&mut [a, b, c], "room", 7, "start");
    assert_eq!(b.cmd("quit"), "ok");
    assert!(b.wait(Duration::from_secs(10)).is_some_and(|s| s.success()));
    let took = eventually(Duration::from_secs(3), || a.num("count room") == 3 && c.num("count room") == 3)
        .expect("b's counts disappear soon after its quit");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // SIGTERM is a graceful leave too.
    c.signal(libc::SIGTERM);
    assert!(c.wait(Duration::from_secs(10)).is_some_and(|s| s.success()));
    eventually(Duration::from_secs(3), || a.num("count room") == 1).expect("c's counts disappear after SIGTERM");
}

#[test]
fn a_node_with_the_wrong_secret_gets_nothing() {
    let mut a = node("a", None, DOWN_AFTER_MS);
    track(&mut a, "room", 1, 3);
    let args = ["--listen", "127.0.0.1:0", "--seeds", &a.addr, "--flush-interval-ms", FLUSH_MS];
    let mut intruder = NodeProc::try_start_with_secret("mallory", &args, "not-the-secret").unwrap();
    track(&mut intruder, "room", 100, 5);
    // Give a real peer ample time to have connected and exchanged counts.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(intruder.num("count room"), 5, "the intruder learned a's counts");
    assert_eq!(a.num("count room"), 3, "a summed the intruder's counts");
    assert_eq!(a.json("info room")["peers_known"], 0);

    // --secret-file wins over the environment, and its newline is trimmed.
    let file = std::env::temp_dir().join(format!("headcount-secret-{}", std::process::id()));
    std::fs::write(&file, format!("{}\n", common::SECRET)).unwrap();
    let secret_file = file.to_str().unwrap();
    let args =
        ["--listen", "127.0.0.1:0", "--seeds", &a.addr, "--flush-interval-ms", FLUSH_MS, "--secret-file", secret_file];
    let mut carol = NodeProc::try_start_with_secret("carol", &args, "not-the-secret").unwrap();
    track(&mut carol, "room", 200, 2);
    converge(&mut [&mut a, &mut carol], "room", 5, "carol joins with the file's secret");
    std::fs::remove_file(&file).unwrap();
}
