//! Cluster integration tests: several nodes in one process on loopback.
//!
//! The invariant everywhere: after the load stops, every node's count of
//! every topic equals the true total (the sum of the local counts) within a
//! few flush intervals.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use headcount::internals::conn::{Conn, Role};
use headcount::internals::wire::{self, Frame, FrameDecoder, MAX_FRAME_LEN};
use headcount::{Config, Node};
use support::*;

/// Flush interval of the convergence tests (the default).
const FLUSH_MS: u64 = 100;
/// "Within 3 flush intervals", plus scheduling slack for a loaded 2-core CI
/// machine (tests run in parallel with others).
const CONVERGE: Duration = Duration::from_millis(3 * FLUSH_MS + 200);

fn converge(nodes: &[&Node], topics: &[Vec<u8>]) -> Duration {
    let expect = truth(nodes, topics);
    let took = wait_for(CONVERGE, || all_agree(nodes, topics, &expect));
    match took {
        Some(t) => t,
        None => panic!("no convergence in {CONVERGE:?}: {}", disagreement(nodes, topics, &expect)),
    }
}

fn mesh(nodes: &[&Node], timeout: Duration) {
    let want = nodes.len() - 1;
    let ok = wait_for(timeout, || nodes.iter().all(|n| peers_in_state(n, "up") == want));
    assert!(
        ok.is_some(),
        "no full mesh: {:?}",
        nodes.iter().map(|n| (n.name().to_owned(), peers_in_state(n, "up"))).collect::<Vec<_>>()
    );
}

fn run_load(nodes: &[&Node], topics: &[Vec<u8>], dur: Duration) {
    std::thread::scope(|s| {
        for (i, n) in nodes.iter().enumerate() {
            s.spawn(move || churn(n, topics, 200, dur, i as u64 + 1));
        }
    });
}

#[test]
fn three_nodes_gossip_to_a_full_mesh_and_converge_exactly() {
    // a <- b <- c: c only knows b, and learns a through PEERS.
    let a = node("a", &[], &[]);
    let b = node("b", &[addr(&a)], &[]);
    let c = node("c", &[addr(&b)], &[]);
    let nodes = [&a, &b, &c];
    mesh(&nodes, Duration::from_secs(5));
    let topics = topics("room:", 50);
    for round in 0..3 {
        run_load(&nodes, &topics, Duration::from_millis(300));
        let took = converge(&nodes, &topics);
        eprintln!("round {round}: converged {took:?} after load stopped");
        let total: u64 = nodes.iter().map(|n| n.total().unwrap()).max().unwrap();
        assert!(nodes.iter().all(|n| n.total().unwrap() == total));
    }
    // count_info and count_by_node agree with count.
    let t = &topics[0];
    let info = a.count_info(t).unwrap();
    assert_eq!(info.count, a.count(t).unwrap());
    assert_eq!(info.local, a.count_local(t).unwrap());
    assert_eq!((info.peers_reporting, info.peers_known), (2, 2));
    assert!(info.oldest_report_age_ms < 1000, "{info:?}");
    let by_node = a.count_by_node(t).unwrap();
    assert_eq!(by_node.len(), 3);
    assert_eq!(by_node[0].0, "a");
    assert_eq!(by_node.iter().map(|x| x.1).sum::<u64>(), info.count);
    // Stats carry the per-peer fields.
    let s = stats(&a);
    let p = &s["peers"][0];
    for k in [
        "name",
        "address",
        "state",
        "incarnation",
        "last_frame_age_ms",
        "bytes_in",
        "frames_out",
        "topics_out",
        "state_bytes_out",
        "outbox_coalesces",
    ] {
        assert!(!p[k].is_null(), "missing {k} in {p}");
    }
    assert_eq!(s["auth_failures"], 0);
    for n in nodes {
        n.close();
    }
}

#[test]
fn five_nodes_converge_under_concurrent_churn() {
    let a = node("n0", &[], &[]);
    let seeds = vec![addr(&a)];
    let rest: Vec<Node> = (1..5).map(|i| node(&format!("n{i}"), &seeds, &[])).collect();
    let mut nodes = vec![&a];
    nodes.extend(rest.iter());
    mesh(&nodes, Duration::from_secs(5));
    let topics = topics("t", 200);
    run_load(&nodes, &topics, Duration::from_millis(500));
    let took = converge(&nodes, &topics);
    eprintln!("5 nodes converged {took:?} after load stopped");
    // Everything back to zero: all counts vanish everywhere.
    for (i, n) in nodes.iter().enumerate() {
        for c in 0..200u64 {
            n.untrack_all((i as u64 + 1).wrapping_mul(1_000_003).wrapping_add(c)).unwrap();
        }
    }
    let zeros = vec![0; topics.len()];
    assert!(wait_for(CONVERGE, || all_agree(&nodes, &topics, &zeros)).is_some());
    assert!(nodes.iter().all(|n| n.total().unwrap() == 0));
}

#[test]
fn graceful_close_removes_a_node_at_once_and_kill_after_the_socket_closes() {
    let a = node("ka", &[], &[("down_after_ms", "5000")]);
    let b = node("kb", &[addr(&a)], &[("down_after_ms", "5000")]);
    let c = node("kc", &[addr(&a)], &[("down_after_ms", "5000")]);
    mesh(&[&a, &b, &c], Duration::from_secs(5));
    a.track(b"room", 1).unwrap();
    b.track(b"room", 2).unwrap();
    c.track(b"room", 3).unwrap();
    assert!(wait_for(CONVERGE, || a.count(b"room").unwrap() == 3 && b.count(b"room").unwrap() == 3).is_some());

    // Unclean: no BYE; the closed sockets alone (down_after is 5 s here)
    // must exclude it within 100 ms.
    let port = c.local_addr().unwrap().port();
    let old_inc = stats(&c)["incarnation"].clone();
    let t = Instant::now();
    c.abort();
    let took =
        wait_for(Duration::from_millis(1000), || a.count(b"room").unwrap() == 2 && b.count(b"room").unwrap() == 2);
    let took = took.expect("killed node still counted");
    eprintln!("killed node excluded after {took:?} ({:?} incl. abort)", t.elapsed());
    assert!(took < Duration::from_millis(100), "{took:?}");

    // Restart it under the same name and port: a new incarnation of the
    // same node id replaces the old state.
    drop(c);
    let c2 = node("kc", &[addr(&a)], &[("listen", &format!("127.0.0.1:{port}")), ("down_after_ms", "5000")]);
    assert_ne!(stats(&c2)["incarnation"], old_inc);
    c2.track(b"room", 30).unwrap();
    c2.track(b"room", 31).unwrap();
    assert!(wait_for(Duration::from_secs(5), || [&a, &b, &c2].iter().all(|n| n.count(b"room").unwrap() == 4)).is_some());
    let s = stats(&a);
    let kc = s["peers"].as_array().unwrap().iter().find(|p| p["name"] == "kc").unwrap().clone();
    assert_eq!(kc["state"], "up");
    assert_eq!(kc["incarnation"], stats(&c2)["incarnation"]);

    // Graceful: BYE removes it at once.
    let t = Instant::now();
    c2.close();
    assert!(wait_for(Duration::from_millis(100), || a.count(b"room").unwrap() == 2 && b.count(b"room").unwrap() == 2)
        .is_some());
    eprintln!("closed node excluded after {:?}", t.elapsed());
    assert_eq!(peers_in_state(&a, "left"), 1);
}

#[test]
fn down_grace_keeps_counting_a_lost_peer_for_a_while() {
    let a = node("ga", &[], &[("down_grace_ms", "400")]);
    let b = node("gb", &[addr(&a)], &[]);
    mesh(&[&a, &b], Duration::from_secs(5));
    b.track(b"x", 1).unwrap();
    assert!(wait_for(CONVERGE, || a.count(b"x").unwrap() == 1).is_some());
    b.abort();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(a.count(b"x").unwrap(), 1, "still counted within the grace");
    assert_eq!(peers_in_state(&a, "down"), 1);
    let gone = wait_for(Duration::from_secs(2), || a.count(b"x").unwrap() == 0).expect("not expired after grace");
    assert!(gone >= Duration::from_millis(150), "{gone:?}");
}

/// Three nodes each behind its own proxy (advertising the proxy), so that
/// every connection passes through the proxy of the node it was dialed to.
struct Proxied {
    nodes: Vec<Node>,
    proxies: Vec<Proxy>,
}

fn proxied(names: &[&str], kv: &[(&str, &str)]) -> Proxied {
    // Reserve a port per node, start its proxy, then the node advertising it.
    let mut nodes: Vec<Node> = Vec::new();
    let mut proxies = Vec::new();
    for name in names {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let proxy = Proxy::new(format!("127.0.0.1:{port}").parse().unwrap());
        let mut cfg: Vec<(&str, &str)> = kv.to_vec();
        let listen = format!("127.0.0.1:{port}");
        let adv = proxy.addr.to_string();
        cfg.push(("listen", &listen));
        cfg.push(("advertise", &adv));
        let seeds: Vec<String> = proxies.iter().map(|p: &Proxy| p.addr.to_string()).collect();
        nodes.push(node(name, &seeds, &cfg));
        proxies.push(proxy);
    }
    Proxied { nodes, proxies }
}

impl Proxied {
    /// Applies `mode` to every connection between node `i` and the others.
    fn isolate(&self, i: usize, mode: Mode) {
        let name = self.nodes[i].name().to_owned();
        for (j, p) in self.proxies.iter().enumerate() {
            if j == i {
                for n in &self.nodes {
                    if n.name() != name {
                        p.set(n.name(), mode);
                    }
                }
            } else {
                p.set(&name, mode);
            }
        }
    }

    fn heal(&self) {
        for p in &self.proxies {
            p.clear();
        }
    }
}

fn partition_and_heal(mode: Mode) {
    let px = proxied(&["pa", "pb", "pc"], &[("down_after_ms", "300")]);
    let [a, b, c] = [&px.nodes[0], &px.nodes[1], &px.nodes[2]];
    mesh(&[a, b, c], Duration::from_secs(5));
    let topics = topics("p", 40);
    run_load(&[a, b, c], &topics, Duration::from_millis(200));
    converge(&[a, b, c], &topics);

    px.isolate(2, mode);
    // Load continues on both sides of the split.
    run_load(&[a, b, c], &topics, Duration::from_millis(300));
    // Each side converges to its own sum once c is seen down (at once for a
    // cut connection, after down_after_ms for a frozen one).
    let majority = truth(&[a, b], &topics);
    let minority = truth(&[c], &topics);
    let t = wait_for(Duration::from_secs(3), || {
        all_agree(&[a, b], &topics, &majority) && all_agree(&[c], &topics, &minority)
    });
    assert!(
        t.is_some(),
        "split sides did not converge: {} | {}",
        disagreement(&[a, b], &topics, &majority),
        disagreement(&[c], &topics, &minority)
    );
    eprintln!("{mode:?}: sides converged after {:?}", t.unwrap());

    px.heal();
    let expect = truth(&[a, b, c], &topics);
    let t = wait_for(Duration::from_secs(8), || all_agree(&[a, b, c], &topics, &expect));
    assert!(t.is_some(), "no convergence after heal: {}", disagreement(&[a, b, c], &topics, &expect));
    eprintln!("{mode:?}: healed after {:?}", t.unwrap());
    mesh(&[a, b, c], Duration::from_secs(5));
    // And it keeps working afterwards.
    run_load(&[a, b, c], &topics, Duration::from_millis(200));
    converge(&[a, b, c], &topics);
}

#[test]
fn partition_by_cut_connections_and_heal() {
    partition_and_heal(Mode::Drop);
}

#[test]
fn silent_partition_and_heal() {
    partition_and_heal(Mode::Freeze);
}

#[test]
fn a_stalled_peer_blocks_nobody_and_memory_stays_bounded() {
    let px = proxied(&["sa", "sb", "sc"], &[("down_after_ms", "400")]);
    let [a, b, c] = [&px.nodes[0], &px.nodes[1], &px.nodes[2]];
    mesh(&[a, b, c], Duration::from_secs(5));
    // sc stops reading: nothing reaches it, while it still talks.
    px.proxies[2].set("sa", Mode::PauseUp);
    px.proxies[2].set("sb", Mode::PauseUp);
    px.proxies[0].set("sc", Mode::PauseDown);
    px.proxies[1].set("sc", Mode::PauseDown);
    // Heavy churn over many topics on a and b, to back up their writes to c.
    let topics = topics("stall-topic-with-a-longish-name-", 3000);
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        run_load(&[a, b], &topics, Duration::from_millis(100));
        rounds += 1;
        // a and b keep converging with each other meanwhile (c has no
        // counts of its own, so the truth is theirs).
        let expect = truth(&[a, b], &topics);
        assert!(
            wait_for(CONVERGE, || all_agree(&[a, b], &topics, &expect)).is_some(),
            "a and b stopped converging while c stalls (round {rounds}): {}",
            disagreement(&[a, b], &topics, &expect)
        );
    }
    // Outboxes stay bounded.
    for n in [a, b] {
        for p in stats(n)["peers"].as_array().unwrap() {
            let pending = p["outbox_pending"].as_u64().unwrap();
            assert!(pending <= 1 << 18, "{}: {p}", n.name());
        }
    }
    // c gets unstuck: everything converges again.
    px.heal();
    let all = [a, b, c];
    let expect = truth(&all, &topics);
    assert!(
        wait_for(Duration::from_secs(8), || all_agree(&all, &topics, &expect)).is_some(),
        "{}",
        disagreement(&all, &topics, &expect)
    );
}

/// Reads frames from `s` until EOF or `timeout`; returns them and whether
/// the peer closed.
fn read_frames(s: &mut TcpStream, timeout: Duration) -> (Vec<Frame>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut dec = FrameDecoder::new(MAX_FRAME_LEN);
    let mut frames = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < timeout {
        match s.read(&mut buf) {
            Ok(0) => return (frames, true),
            Ok(n) => {
                dec.push(&buf[..n]);
                while let Ok(Some(f)) = dec.next_frame() {
                    frames.push(f);
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (frames, true),
        }
    }
    (frames, false)
}

#[test]
fn wrong_or_missing_secret_gets_no_state() {
    let a = node("sa1", &[], &[]);
    a.track(b"secret-room", 1).unwrap();
    // A hand-driven peer with the wrong secret.
    let mut s = TcpStream::connect(a.local_addr().unwrap()).unwrap();
    let mut conn = Conn::new(&conn_params("intruder", b"wrong"), Role::Dialer, [9; 32], 0);
    let mut out = Vec::new();
    while let Some(f) = conn.poll_transmit() {
        wire::encode_frame(&f, &mut out).unwrap();
    }
    s.write_all(&out).unwrap();
    let (frames, _) = read_frames(&mut s, Duration::from_millis(300));
    // a answered with HELLO and AUTH only (it never saw a valid AUTH).
    assert!(matches!(&frames[..], [Frame::Hello(_), Frame::Auth { .. }]), "{frames:?}");
    // Our (wrong) AUTH gets us a BYE and a closed socket, and still no state.
    for f in frames {
        let _ = conn.handle_frame(f, 1);
    }
    out.clear();
    while let Some(f) = conn.poll_transmit() {
        wire::encode_frame(&f, &mut out).unwrap();
    }
    let _ = s.write_all(&out);
    let (frames, closed) = read_frames(&mut s, Duration::from_secs(2));
    assert!(closed, "connection left open");
    assert!(frames.iter().all(|f| matches!(f, Frame::Bye { .. })), "state sent to an unauthenticated peer: {frames:?}");
    assert!(wait_for(Duration::from_secs(1), || stats(&a)["auth_failures"].as_u64().unwrap() >= 1).is_some());

    // A whole node with the wrong secret never joins.
    let mut cfg = Config::new();
    for (k, v) in [("node_name", "sb1"), ("listen", "127.0.0.1:0"), ("secret", "not-the-secret")] {
        cfg.set(k, v).unwrap();
    }
    cfg.set("seeds", &addr(&a)).unwrap();
    let b = Node::start(&cfg).unwrap();
    b.track(b"secret-room", 2).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(a.count(b"secret-room").unwrap(), 1);
    assert_eq!(b.count(b"secret-room").unwrap(), 1);
    assert_eq!(peers_in_state(&a, "up") + peers_in_state(&b, "up"), 0);
    assert!(stats(&b)["auth_failures"].as_u64().unwrap() >= 1);

    // A missing secret is refused at start.
    let mut cfg = Config::new();
    cfg.set("listen", "127.0.0.1:0").unwrap();
    let e = Node::start(&cfg).unwrap_err().to_string();
    assert!(e.contains("secret"), "{e}");
}

#[test]
fn garbage_on_the_port_is_dropped_and_the_node_keeps_working() {
    let a = node("ga1", &[], &[]);
    let b = node("gb1", &[addr(&a)], &[]);
    mesh(&[&a, &b], Duration::from_secs(5));
    let garbage: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0; 64],
        vec![0xff; 64],
        // A valid header announcing a frame over the handshake cap.
        (8000u32).to_le_bytes().to_vec(),
        // A well-formed frame with a bad checksum.
        {
            let mut f = wire::encode_to_vec(&Frame::Heartbeat { last_seq: 0 }).unwrap();
            let n = f.len();
            f[n - 1] ^= 1;
            f
        },
        // A well-formed frame that is out of state (DELTA before HELLO).
        wire::encode_to_vec(&Frame::Heartbeat { last_seq: 0 }).unwrap(),
    ];
    let mut rng = Rng(77);
    let mut all = garbage;
    for _ in 0..10 {
        all.push((0..200).map(|_| rng.next() as u8).collect());
    }
    for g in &all {
        let mut s = TcpStream::connect(a.local_addr().unwrap()).unwrap();
        let _ = s.write_all(g);
        let (frames, closed) = read_frames(&mut s, Duration::from_secs(2));
        assert!(closed, "{g:?}: connection left open");
        assert!(
            frames.iter().all(|f| matches!(f, Frame::Hello(_) | Frame::Bye { .. })),
            "{g:?}: state leaked: {frames:?}"
        );
    }
    assert!(stats(&a)["protocol_errors"].as_u64().unwrap() >= 1);
    b.track(b"still", 1).unwrap();
    assert!(wait_for(CONVERGE, || a.count(b"still").unwrap() == 1).is_some());
    assert_eq!(peers_in_state(&a, "up"), 1);
}

#[test]
fn per_peer_topics_out_and_state_bytes_count_exactly_what_was_sent() {
    let a = node("wa", &[], &[]);
    let b = node("wb", &[addr(&a)], &[]);
    mesh(&[&a, &b], Duration::from_secs(5));
    // (topics_out, state_bytes_out, bytes_out) of n towards its one peer.
    let out = |n: &Node| {
        let s = stats(n);
        let p = &s["peers"][0];
        (p["topics_out"].as_u64().unwrap(), p["state_bytes_out"].as_u64().unwrap(), p["bytes_out"].as_u64().unwrap())
    };
    let topics = topics("w:", 100);
    let on_b = |want: u64| {
        let ok = wait_for(CONVERGE, || topics.iter().all(|t| b.count(t).unwrap() == want));
        assert!(ok.is_some(), "b never saw every topic at {want}");
    };
    // First mention: each topic is defined on the connection (ids 0..=99).
    for t in &topics {
        a.track(t, 1).unwrap();
    }
    on_b(1);
    let (t0, s0, b0) = out(&a);
    assert!(t0 >= 100 && s0 > 0 && s0 <= b0, "{:?}", out(&a));
    // Each topic changes once more: exactly 100 entries, each a reference
    // by id (1 byte below id 64, 2 bytes above) and a 1-byte count, in one
    // or two DELTA frames.
    for t in &topics {
        a.track(t, 2).unwrap();
    }
    on_b(2);
    let (t1, s1, b1) = out(&a);
    assert_eq!(t1 - t0, 100);
    let entries = 64 * 2 + 36 * 3;
    let frames = s1 - s0 - entries;
    assert!(frames > 0 && frames <= 2 * wire::STATE_FRAME_OVERHEAD as u64, "{} state bytes", s1 - s0);
    assert!(b1 - b0 >= s1 - s0);
    // b tracks nothing: its only state frame is an empty snapshot.
    let (tb, sb, _) = out(&b);
    assert_eq!(tb, 0);
    assert!(sb > 0 && sb <= wire::STATE_FRAME_OVERHEAD as u64, "{sb}");
}

#[test]
fn add_peer_joins_two_lone_nodes() {
    let a = node("aa", &[], &[]);
    let b = node("ab", &[], &[]);
    a.track(b"t", 1).unwrap();
    b.add_peer(&addr(&a)).unwrap();
    assert!(wait_for(Duration::from_secs(3), || b.count(b"t").unwrap() == 1).is_some());
    assert!(b.add_peer("nonsense").is_err());
    // A local-only node refuses.
    let l = Node::start(&Config::new()).unwrap();
    assert!(l.add_peer(&addr(&a)).is_err());
}

#[test]
fn a_gracefully_departed_peer_is_not_redialed_but_a_seed_is() {
    let a = node("da", &[], &[]);
    let b = node("db", &[addr(&a)], &[]);
    mesh(&[&a, &b], Duration::from_secs(5));
    // a learned b's listen address from its HELLO; b has a as a seed.
    assert!(wait_for(Duration::from_secs(3), || stats(&a)["known_addresses"] == 1).is_some());
    assert_eq!(stats(&b)["known_addresses"], 1);
    let c = node("dc", &[addr(&a)], &[]);
    mesh(&[&a, &b, &c], Duration::from_secs(5));
    assert!(wait_for(Duration::from_secs(3), || stats(&a)["known_addresses"] == 2).is_some());
    b.close();
    // a forgets b's learned address (its dialer ends), c keeps its seed.
    assert!(
        wait_for(Duration::from_secs(3), || stats(&a)["known_addresses"] == 1).is_some(),
        "a still dials the departed b: {}",
        stats(&a)["known_addresses"]
    );
    a.close();
    std::thread::sleep(Duration::from_millis(200));
    assert!(stats(&c)["known_addresses"].as_u64().unwrap() >= 1, "a seed must be kept after its BYE");
}
