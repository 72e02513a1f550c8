//! Admission under hostile input, on loopback: connections that squat on
//! the handshake, and gossip full of aliases of the node's own address.
//!
//! Every loop is bounded in time; the hostile sockets use 127.0.0.2 as
//! their source, so that the node tells them from the real peers on
//! 127.0.0.1 (all of 127.0.0.0/8 is local on Linux).

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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
