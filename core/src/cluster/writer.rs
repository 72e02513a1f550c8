//! The writer thread of a connection.
//!
//! It sleeps on the link's condvar until there is work or a timer is due
//! (`Conn::poll_timeout`: handshake timeout, heartbeat, peer silence), then,
//! in this order: sends a snapshot if one is needed (read from the counter
//! with the link unlocked), hands the outbox to `Conn::send_delta`, sends a
//! pending gossip list, encodes every queued frame into one buffer and
//! writes it with one blocking `write_all` outside the lock. A peer that
//! stops reading blocks only this thread, for at most `SO_SNDTIMEO`.
//!
//! It also counts what went out: bytes and frames, and for the state frames
//! (SNAPSHOT, DELTA) their topic entries and bytes, which make the exact
//! per-peer `topics_out` and `state_bytes_out`.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use super::link::Link;
use super::log::{log, Level};
use super::runtime::Cluster;
use super::wire::{self, ByeCode, Delta, Frame, Snapshot};
use crate::sync::Ordering;

impl Cluster {
    /// Runs the writer of `link` until it stops; `stream` is a clone of the
    /// link's socket.
    pub(super) fn write_loop(&self, link: &Link, mut stream: TcpStream) {
        let mut out = Vec::with_capacity(64 * 1024);
        let mut snapshot: Vec<(Box<[u8]>, u64)> = Vec::new();
        loop {
            let mut st = link.st.lock();
            // Wait for something to do.
            loop {
                let now = self.now_ms();
                if !st.conn.is_closed() {
                    if let Err(e) = st.conn.handle_timeout(now) {
                        self.note_error(link, &e);
                        st.stop = true;
                    }
                }
                let established = st.conn.is_established();
                let work = st.stop
                    || st.conn.is_closed()
                    || (established && (st.need_snapshot || !st.pending.is_empty() || st.peers.is_some()))
                    || st.conn.has_transmit();
                if work {
                    break;
                }
                let deadline = st.conn.poll_timeout().unwrap_or(now + 1000).max(now + 1);
                link.cv.wait_for(&mut st, Duration::from_millis(deadline - now));
            }
            let now = self.now_ms();
            if st.conn.is_established() && !st.conn.is_closed() {
                if std::mem::take(&mut st.need_snapshot) {
                    // Read the counts without holding the link (the flusher
                    // must not wait on a snapshot). Deltas queued meanwhile
                    // are sent after the snapshot, so nothing newer is lost.
                    drop(st);
                    snapshot.clear();
                    self.counter.for_each_nonzero(|t, n| snapshot.push((t.into(), n)));
                    st = link.st.lock();
                    if !st.conn.is_closed() {
                        let r = st.conn.send_snapshot(snapshot.iter().map(|(t, n)| (&t[..], *n)), now);
                        if let Err(e) = r {
                            self.note_error(link, &e);
                            st.conn.close(ByeCode::PROTOCOL_ERROR, &e.to_string(), now);
                        }
                        link.stats.snapshots_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    snapshot = Vec::new();
                }
                if !st.pending.is_empty() && st.conn.is_established() && st.conn.has_sent_snapshot() {
                    let pending = std::mem::take(&mut st.pending);
                    link.stats.pending.store(0, Ordering::Relaxed);
                    if let Err(e) = st.conn.send_delta(pending.iter().map(|(t, n)| (&t[..], *n)), now) {
                        self.note_error(link, &e);
                        st.conn.close(ByeCode::PROTOCOL_ERROR, &e.to_string(), now);
                    }
                }
                if let Some(addrs) = st.peers.take() {
                    let _ = st.conn.send_peers(&addrs, now);
                }
            } else {
                st.peers = None;
            }
            let mut frames = 0;
            // Entries and bytes of the state frames (SNAPSHOT, DELTA) in `out`.
            let (mut topics, mut state_bytes) = (0, 0);
            while let Some(f) = st.conn.poll_transmit() {
                let start = out.len();
                if let Err(e) = wire::encode_frame(&f, &mut out) {
                    // Our own frames always fit; should one not, fail the
                    // connection rather than send garbage.
                    log!(Level::Error, &self.name, "cannot encode {}: {e}", f.frame_type().name());
                    st.conn.close(ByeCode::PROTOCOL_ERROR, "internal encoding error", now);
                } else if let Frame::Snapshot(Snapshot { entries, .. }) | Frame::Delta(Delta { entries, .. }) = &f {
                    topics += entries.len() as u64;
                    state_bytes += (out.len() - start) as u64;
                }
                frames += 1;
            }
            let finish = st.stop || st.conn.is_closed();
            drop(st);
            if !out.is_empty() {
                match stream.write_all(&out) {
                    Ok(()) => {
                        link.stats.traffic.bytes_out.fetch_add(out.len() as u64, Ordering::Relaxed);
                        link.stats.traffic.frames_out.fetch_add(frames, Ordering::Relaxed);
                        link.stats.traffic.topics_out.fetch_add(topics, Ordering::Relaxed);
                        link.stats.traffic.state_bytes_out.fetch_add(state_bytes, Ordering::Relaxed);
                    }
                    Err(e) => {
                        log!(Level::Info, &self.name, "{}: write failed: {e}", link.remote);
                        break;
                    }
                }
                out.clear();
                if out.capacity() > 1 << 20 {
                    out = Vec::with_capacity(64 * 1024);
                }
            }
            if finish {
                break;
            }
        }
        link.finished.store(true, Ordering::Release);
        {
            let mut st = link.st.lock();
            st.stop = true;
        }
        let _ = stream.shutdown(Shutdown::Both);
    }
}
