//! Shared helpers for the cluster tests: nodes on loopback, polling with a
//! deadline, and a userspace TCP proxy that can drop, freeze or half-stall
//! the connections of chosen nodes.
//!
//! Everything here talks to 127.0.0.1 only, and every loop is bounded in
//! time.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use headcount::internals::conn::{AuthKey, ConnParams};
use headcount::internals::wire::{self, Frame, MAX_HANDSHAKE_FRAME_LEN};
use headcount::{Config, Node};

pub mod raw_peer;

pub const SECRET: &str = "test-secret";

/// A node named `name` listening on 127.0.0.1 (port 0 unless `port`), with
/// `seeds` and extra config `kv`.
pub fn node(name: &str, seeds: &[String], kv: &[(&str, &str)]) -> Node {
    let mut c = Config::new();
    c.set("node_name", name).unwrap();
    c.set("listen", "127.0.0.1:0").unwrap();
    c.set("secret", SECRET).unwrap();
    if !seeds.is_empty() {
        c.set("seeds", &seeds.join(",")).unwrap();
    }
    for (k, v) in kv {
        c.set(k, v).unwrap();
    }
    Node::start(&c).unwrap_or_else(|e| panic!("start {name}: {e}"))
}

/// What a hand-driven peer named `name` with `secret` speaks with (node
/// id 0xdead_beef, the default cluster).
pub fn conn_params(name: &str, secret: &[u8]) -> ConnParams {
    ConnParams {
        settings: std::sync::Arc::new(headcount::Config::new().settings().clone()),
        node_name: name.into(),
        node_id: 0xdead_beef,
        incarnation: 1,
        listen: String::new(),
        key: AuthKey::new(secret),
        handshake_timeout_ms: 5000,
        heartbeat_ms: 100,
        id_soft_cap: 1 << 20,
    }
}

/// Distinct spellings of `127.0.0.1:port` that the system resolver reads as
/// that address: inet_aton(3)'s forms (hex, octal, fewer than four parts),
/// leading zeros in the port, IPv4-mapped IPv6. At least 1,024.
pub fn loopback_spellings(port: u16) -> Vec<String> {
    let b127 = ["127", "0177", "00177", "0x7f", "0X7F", "0x7F", "0x07f"];
    let b0 = ["0", "00", "000", "0x0", "0x00"];
    let b1 = ["1", "01", "001", "0x1", "0x01"];
    let w1 = ["1", "01", "0x1", "0x0001"];
    let mut v = Vec::new();
    for a in b127 {
        for b in b0 {
            for c in b0 {
                for d in b1 {
                    v.push(format!("{a}.{b}.{c}.{d}"));
                }
            }
            for d in w1 {
                v.push(format!("{a}.{b}.{d}"));
            }
        }
        for d in w1 {
            v.push(format!("{a}.{d}"));
        }
    }
    v.extend(["2130706433", "0x7f000001", "017700000001", "0X7F000001"].map(String::from));
    let mut out: Vec<String> = v.into_iter().map(|h| format!("{h}:{port}")).collect();
    out.extend([format!("127.0.0.1:0{port}"), format!("127.0.0.1:000{port}"), format!("[::ffff:127.0.0.1]:{port}")]);
    out
}

pub fn addr(n: &Node) -> String {
    n.local_addr().unwrap().to_string()
}

/// Polls `f` every 5 ms until it holds or `timeout` passes; returns how long
/// it took, or `None`.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Peers of `n` in state `state`, from its stats.
pub fn peers_in_state(n: &Node, state: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(&n.stats_json().unwrap()).unwrap();
    v["peers"].as_array().map_or(0, |p| p.iter().filter(|p| p["state"] == state).count())
}

pub fn stats(n: &Node) -> serde_json::Value {
    serde_json::from_str(&n.stats_json().unwrap()).unwrap()
}

/// The true cluster-wide count of every topic: the sum of local counts.
pub fn truth(nodes: &[&Node], topics: &[Vec<u8>]) -> Vec<u64> {
    topics.iter().map(|t| nodes.iter().map(|n| n.count_local(t).unwrap()).sum()).collect()
}

/// Whether every node in `nodes` counts every topic as `expect`.
pub fn all_agree(nodes: &[&Node], topics: &[Vec<u8>], expect: &[u64]) -> bool {
    nodes.iter().all(|n| topics.iter().zip(expect).all(|(t, e)| n.count(t).unwrap() == *e))
}

/// A description of who disagrees, for assertion messages.
pub fn disagreement(nodes: &[&Node], topics: &[Vec<u8>], expect: &[u64]) -> String {
    let mut out = String::new();
    for n in nodes {
        for (t, e) in topics.iter().zip(expect) {
            let got = n.count(t).unwrap();
            if got != *e {
                out += &format!("{} {:?}: {got} != {e}; ", n.name(), String::from_utf8_lossy(t));
                break;
            }
        }
    }
    out
}

/// Deterministic xorshift for load generators: the library's own generator
/// (its redial jitter), compiled in from its source file.
pub mod cpu;
pub mod procfs;

#[path = "../../src/cluster/xorshift.rs"]
mod xorshift;
pub(crate) use xorshift::Rng;

/// Runs churn on `node` for `dur`: `conns` connections joining and leaving
/// `topics` at random; returns the number of operations.
pub fn churn(node: &Node, topics: &[Vec<u8>], conns: u64, dur: Duration, seed: u64) -> u64 {
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let mut ops = 0;
    while start.elapsed() < dur {
        for _ in 0..64 {
            let t = &topics[(rng.next() % topics.len() as u64) as usize];
            let c = seed.wrapping_mul(1_000_003).wrapping_add(rng.next() % conns);
            match rng.next() % 5 {
                0 | 1 => {
                    node.track(t, c).unwrap();
                }
                2 | 3 => {
                    node.untrack(t, c).unwrap();
                }
                _ => {
                    if rng.next() % 8 == 0 {
                        node.untrack_all(c).unwrap();
                    } else {
                        node.track(t, c).unwrap();
                    }
                }
            }
            ops += 1;
        }
    }
    ops
}

pub fn topics(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{prefix}{i}").into_bytes()).collect()
}

// ---------------------------------------------------------------------------
// Proxy
// ---------------------------------------------------------------------------

/// What the proxy does with the connections of a given client node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Cut existing connections, and cut new ones after their HELLO.
    Drop,
    /// Forward nothing either way, keep the connections open (a silent
    /// partition).
    Freeze,
    /// Stop reading from the client: the server (the proxied node) receives
    /// nothing from it, while the client still receives the server's frames.
    PauseUp,
    /// Stop reading from the server: the client receives nothing.
    PauseDown,
}

struct ProxyInner {
    target: SocketAddr,
    rules: Mutex<HashMap<String, Mode>>,
    stop: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    sockets: Mutex<Vec<TcpStream>>,
}

impl ProxyInner {
    fn mode(&self, name: &Mutex<Option<String>>) -> Mode {
        let name = name.lock().unwrap().clone();
        match name {
            Some(n) => self.rules.lock().unwrap().get(&n).copied().unwrap_or(Mode::Pass),
            None => Mode::Pass,
        }
    }
}

/// A TCP proxy in front of one node. Clients are identified by the node
/// name in the HELLO they send first.
pub struct Proxy {
    pub addr: SocketAddr,
    inner: Arc<ProxyInner>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn new(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(ProxyInner {
            target,
            rules: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            sockets: Mutex::new(Vec::new()),
        });
        let i = inner.clone();
        let accept = std::thread::spawn(move || {
            for s in listener.incoming() {
                if i.stop.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = s else { continue };
                let Ok(server) = TcpStream::connect(i.target) else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                for s in [&client, &server] {
                    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                    i.sockets.lock().unwrap().push(s.try_clone().unwrap());
                }
                let name = Arc::new(Mutex::new(None));
                let up = {
                    let (i, name) = (i.clone(), name.clone());
                    let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    std::thread::spawn(move || pump(&i, c, s, &name, true))
                };
                let down = {
                    let i2 = i.clone();
                    std::thread::spawn(move || pump(&i2, server, client, &name, false))
                };
                let mut t = i.threads.lock().unwrap();
                t.retain(|h| !h.is_finished());
                t.push(up);
                t.push(down);
            }
        });
        Proxy { addr, inner, accept: Some(accept) }
    }

    pub fn set(&self, client: &str, mode: Mode) {
        self.inner.rules.lock().unwrap().insert(client.to_owned(), mode);
    }

    pub fn clear(&self) {
        self.inner.rules.lock().unwrap().clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        for s in self.inner.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        for t in self.inner.threads.lock().unwrap().drain(..) {
            let _ = t.join();
        }
    }
}

/// Copies `from` to `to` until EOF, error, stop or a Drop rule. The upward
/// pump (client to server) also learns the client's name from its HELLO.
fn pump(i: &ProxyInner, mut from: TcpStream, mut to: TcpStream, name: &Mutex<Option<String>>, up: bool) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut hello = Vec::new();
    let mut learning = up;
    while !i.stop.load(Ordering::Acquire) {
        let mode = i.mode(name);
        let paused = match mode {
            Mode::Drop => break,
            Mode::Freeze => true,
            Mode::PauseUp => up,
            Mode::PauseDown => !up,
            Mode::Pass => false,
        };
        if paused {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if learning {
                    hello.extend_from_slice(&buf[..n]);
                    match wire::decode_frame(&hello, MAX_HANDSHAKE_FRAME_LEN) {
                        Ok(Some((Frame::Hello(h), _))) => {
                            *name.lock().unwrap() = Some(h.node_name);
                            learning = false;
                            hello = Vec::new();
                        }
                        Ok(None) => {}
                        _ => {
                            learning = false;
                            hello = Vec::new();
                        }
                    }
                    // Apply a Drop rule before forwarding anything from a
                    // blocked client.
                    if i.mode(name) == Mode::Drop {
                        break;
                    }
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
