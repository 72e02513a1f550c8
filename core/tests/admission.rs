//! Admission under hostile input, on loopback: connections that squat on
//! the handshake, and gossip full of aliases of the node's own address.
//!
//! Every loop is bounded in time; the hostile sockets use 127.0.0.2 as
//! their source, so that the node tells them from the real peers on
//! 127.0.0.1 (all of 127.0.0.0/8 is local on Linux).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use headcount::internals::conn::{Conn, Role};
use headcount::internals::wire::{self, FrameDecoder, MAX_FRAME_LEN};
use socket2::{Domain, Socket, Type};
use support::*;

/// A TCP connection to `target` from `source` (any port).
fn connect_from(source: &str, target: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&source.parse::<SocketAddr>().map_err(std::io::Error::other)?.into())?;
    s.connect_timeout(&target.into(), Duration::from_millis(500))?;
    Ok(s.into())
}

/// `n` squatters from 127.0.0.2: each holds an idle connection to `target`
/// (it reads what it is sent and never answers) and reconnects 10 ms after
/// the node closes it, until dropped.
struct Squatters {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Squatters {
    fn start(n: usize, target: SocketAddr) -> Squatters {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || squat(target, &stop))
            })
            .collect();
        Squatters { stop, threads }
    }
}

impl Drop for Squatters {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn squat(target: SocketAddr, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut s) = connect_from("127.0.0.2:0", target) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
            while !stop.load(Ordering::Relaxed) {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn counter(n: &headcount::Node, key: &str) -> u64 {
    stats(n)[key].as_u64().unwrap_or_else(|| panic!("no {key} in the stats"))
}

#[test]
fn squatters_on_one_address_do_not_keep_out_a_peer_from_another() {
    let a = node("squat-a", &[], &[]);
    let squatters = Squatters::start(100, a.local_addr().unwrap());
    // Every squatter has connected at least once before the peer starts.
    let settled = wait_for(Duration::from_secs(5), || counter(&a, "connections_accepted") >= 100);
    assert!(settled.is_some(), "the squatters never connected");
    let b = node("squat-b", &[addr(&a)], &[]);
    let joined = wait_for(Duration::from_secs(5), || peers_in_state(&a, "up") == 1 && peers_in_state(&b, "up") == 1);
    assert!(
        joined.is_some(),
        "a peer from 127.0.0.1 did not join past 100 squatters from 127.0.0.2 in 5 s: {}",
        stats(&a)
    );
    b.track(b"room", 1).unwrap();
    assert!(wait_for(Duration::from_secs(2), || a.count(b"room").unwrap() == 1).is_some(), "no count from the peer");
    // The squatters are held to their source's share, and their handshakes
    // time out (after `handshake_timeout_ms`, 1 s).
    assert!(wait_for(Duration::from_secs(3), || counter(&a, "handshakes_timed_out") > 0).is_some(), "{}", stats(&a));
    let s = stats(&a);
    assert!(s["connections_refused_source"].as_u64().unwrap() > 0, "{s}");
    assert!(s["handshakes_pending"].as_u64().unwrap() <= 32, "{s}");
    drop(squatters);
}

/// A hand-driven peer that knows the secret: it authenticates, then sends
/// whatever a test makes its `Conn` queue.
struct RawPeer {
    s: TcpStream,
    conn: Conn,
    start: Instant,
}

impl RawPeer {
    /// Connects to `target` and completes the handshake (within 3 s).
    fn authenticate(target: SocketAddr) -> RawPeer {
        let s = TcpStream::connect(target).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let conn = Conn::new(&conn_params("hostile", SECRET.as_bytes()), Role::Dialer, [7; 32], 0);
        let mut p = RawPeer { s, conn, start: Instant::now() };
        p.flush();
        let mut dec = FrameDecoder::new(MAX_FRAME_LEN);
        let mut buf = [0u8; 4096];
        while !p.conn.is_established() {
            assert!(p.start.elapsed() < Duration::from_secs(3), "no handshake");
            match p.s.read(&mut buf) {
                Ok(0) => panic!("closed during the handshake"),
                Ok(n) => dec.push(&buf[..n]),
                Err(_) => continue,
            }
            while let Ok(Some(f)) = dec.next_frame() {
                p.conn.handle_frame(f, p.now()).unwrap();
            }
            p.flush();
        }
        p
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Writes every frame the `Conn` queued.
    fn flush(&mut self) {
        let mut out = Vec::new();
        while let Some(f) = self.conn.poll_transmit() {
            wire::encode_frame(&f, &mut out).unwrap();
        }
        self.s.write_all(&out).unwrap();
    }
}

#[test]
fn gossip_of_a_thousand_aliases_of_our_own_address_is_one_address() {
    let a = node("alias-a", &[], &[]);
    let port = a.local_addr().unwrap().port();
    let mut flood = loopback_spellings(port);
    flood.truncate(1021);
    flood.extend([format!("localhost:{port}"), format!("LOCALHOST:{port}"), format!("localhost.:{port}")]);
    assert_eq!(flood.len(), 1024);
    let mut hostile = RawPeer::authenticate(a.local_addr().unwrap());
    let now = hostile.now();
    hostile.conn.send_peers(&flood, now).unwrap();
    hostile.flush();
    // Not a dial of itself per alias, not an address-table entry per alias:
    // at most one (`localhost`, dialed once if it resolves elsewhere first).
    let flooded = wait_for(Duration::from_secs(2), || {
        counter(&a, "connections_dialed") > 1 || counter(&a, "known_addresses") > 1
    });
    assert!(flooded.is_none(), "the aliases were taken for addresses: {}", stats(&a));
    drop(hostile);
    // A real peer still joins.
    let b = node("alias-b", &[addr(&a)], &[]);
    let joined = wait_for(Duration::from_secs(5), || peers_in_state(&a, "up") == 1 && peers_in_state(&b, "up") == 1);
    assert!(joined.is_some(), "{}", stats(&a));
    assert!(counter(&a, "known_addresses") <= 2, "{}", stats(&a));
}

#[test]
fn a_dial_that_reaches_ourselves_by_another_address_is_never_retried() {
    let a = node("self-a", &[], &[]);
    // A proxy in front of `a`: its address is not `a`'s, but dialing it
    // reaches `a`, which tells by the node id in the HELLO.
    let proxy = Proxy::new(a.local_addr().unwrap());
    a.add_peer(&proxy.addr.to_string()).unwrap();
    assert!(wait_for(Duration::from_secs(2), || counter(&a, "connections_dialed") == 1).is_some());
    // The address left the table and is not redialed (the dialer's first
    // backoff is 25 to 75 ms: a retry would have come many times over).
    assert!(wait_for(Duration::from_secs(1), || counter(&a, "known_addresses") == 0).is_some(), "{}", stats(&a));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(counter(&a, "connections_dialed"), 1, "{}", stats(&a));
    // Nor does gossip or add_peer bring it back.
    a.add_peer(&proxy.addr.to_string()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((counter(&a, "connections_dialed"), counter(&a, "known_addresses")), (1, 0), "{}", stats(&a));
}
