//! [`RawPeer`]: a hand-driven peer for hostile-input tests: a real `Conn`
//! authenticates it with the test secret, then the test writes frames by
//! hand.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use headcount::internals::conn::{AuthKey, Conn, ConnParams, Role};
use headcount::internals::wire::{self, ByeCode, Delta, Entry, Frame, FrameDecoder, Snapshot, MAX_FRAME_LEN};

use super::SECRET;

/// A peer that authenticates with the right secret, then sends what the
/// test writes.
pub struct RawPeer {
    s: TcpStream,
    dec: FrameDecoder,
    seq: u64,
    start: Instant,
}

impl RawPeer {
    pub fn join(to: SocketAddr, node_id: u64) -> RawPeer {
        let params = ConnParams {
            settings: std::sync::Arc::new(headcount::Config::new().settings().clone()),
            node_name: format!("raw-{node_id}"),
            node_id,
            incarnation: 1,
            listen: String::new(),
            key: AuthKey::new(SECRET.as_bytes()),
            handshake_timeout_ms: 5000,
            heartbeat_ms: 100,
            id_soft_cap: 1 << 20,
        };
        let s = TcpStream::connect(to).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let mut p = RawPeer { s, dec: FrameDecoder::new(MAX_FRAME_LEN), seq: 0, start: Instant::now() };
        let mut conn = Conn::new(&params, Role::Dialer, [node_id as u8; 32], 0);
        while !conn.is_established() {
            assert!(p.start.elapsed() < Duration::from_secs(5), "no handshake");
            while let Some(f) = conn.poll_transmit() {
                p.send(&f).unwrap();
            }
            for f in p.read() {
                conn.handle_frame(f, 1).unwrap();
            }
        }
        while let Some(f) = conn.poll_transmit() {
            p.send(&f).unwrap();
        }
        p
    }

    pub fn send(&mut self, f: &Frame) -> std::io::Result<()> {
        self.s.write_all(&wire::encode_to_vec(f).unwrap())
    }

    /// Frames that arrived (waits up to the read timeout).
    pub fn read(&mut self) -> Vec<Frame> {
        let mut buf = [0u8; 65536];
        let mut frames = Vec::new();
        if let Ok(n) = self.s.read(&mut buf) {
            self.dec.push(&buf[..n]);
        }
        while let Ok(Some(f)) = self.dec.next_frame() {
            frames.push(f);
        }
        frames
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn snapshot(&mut self, first: bool, last: bool, entries: Vec<Entry>) -> std::io::Result<()> {
        let seq = self.next_seq();
        self.send(&Frame::Snapshot(Snapshot { seq, first, last, entries }))
    }

    pub fn delta(&mut self, entries: Vec<Entry>) -> std::io::Result<()> {
        let seq = self.next_seq();
        self.send(&Frame::Delta(Delta { seq, entries }))
    }

    /// Keeps the link alive (heartbeats) until the node says BYE; its code.
    pub fn bye(&mut self, timeout: Duration) -> Option<ByeCode> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let _ = self.send(&Frame::Heartbeat { last_seq: self.seq });
            for f in self.read() {
                if let Frame::Bye { code, .. } = f {
                    return Some(code);
                }
            }
        }
        None
    }
}
