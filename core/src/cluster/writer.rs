//! [`Writer`]: the writer thread of a connection.
//!
//! It sleeps on the link's condvar until there is work or a timer is due
//! (`Conn::poll_timeout`: handshake timeout, heartbeat, peer silence), then,
//! in this order: starts a snapshot if one is needed (the counts read from
//! the counter with the link unlocked), queues the next part of the
//! snapshot being sent, hands the outbox to `Conn::send_delta` (once no
//! snapshot is half sent), sends a pending gossip list, encodes every
//! queued frame into one buffer and writes it with one blocking `write_all`
//! outside the lock. A snapshot thus goes out in parts of about
//! [`SNAPSHOT_PART_BYTES`], one per round: the link is locked for one part
//! at a time, and the connection's timers (heartbeats, the peer's silence)
//! run between parts. A peer that stops reading blocks only this thread,
//! for at most `SO_SNDTIMEO`.
//!
//! It also counts what went out: bytes and frames, and for the state frames
//! (SNAPSHOT, DELTA) their number, topic entries and bytes, which make the
//! exact per-peer `state_frames_out`, `topics_out` and `state_bytes_out`.

use crate::logging::{log, Level};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::conn::{ConnError, TARGET_FRAME_LEN};
use super::link::{Link, LinkGuard};
use super::shared::Shared;
use super::wire::{self, ByeCode, Delta, Frame, Snapshot};
use crate::sync::{Arc, Ordering};

/// Initial (and, after a large burst, reset) size of the write buffer.
const OUT_CAPACITY: usize = 64 * 1024;
/// About how many wire bytes of a snapshot one round queues and writes.
const SNAPSHOT_PART_BYTES: usize = 4 * TARGET_FRAME_LEN;
/// Estimated wire bytes of an entry beyond its name (ref, name length,
/// count: varints of a few bytes each).
const ENTRY_OVERHEAD: usize = 8;

/// One topic's count, as read from the counter for a snapshot.
type Count = (Box<[u8]>, u64);

/// A snapshot being sent: the counts read from the counter when it
/// started, and how many of them went out.
#[derive(Debug)]
struct Outgoing {
    counts: Vec<Count>,
    sent: usize,
    /// When it started (for the log).
    started: Instant,
}

impl Outgoing {
    /// The next part: entries up to about [`SNAPSHOT_PART_BYTES`] (at least
    /// one if any is left), and whether it is the last.
    fn next_part(&mut self) -> (&[Count], bool) {
        let start = self.sent;
        let mut bytes = 0;
        let mut end = start;
        while end < self.counts.len() && (end == start || bytes < SNAPSHOT_PART_BYTES) {
            bytes += self.counts[end].0.len() + ENTRY_OVERHEAD;
            end += 1;
        }
        self.sent = end;
        (&self.counts[start..end], end == self.counts.len())
    }
}

/// One connection's writer: the link it serves, its half of the socket, and
/// its buffers. See the module docs.
#[derive(Debug)]
pub(super) struct Writer {
    shared: Arc<Shared>,
    link: Arc<Link>,
    /// A clone of the link's socket, written without the link lock.
    stream: TcpStream,
    /// Encoded frames of one round, written with one `write_all`.
    out: Vec<u8>,
    /// The snapshot being sent, if one is half sent.
    snapshot: Option<Outgoing>,
}

/// What one round put in [`Writer::out`].
#[derive(Debug, Default)]
struct Round {
    frames: u64,
    /// State frames (SNAPSHOT, DELTA) in the round.
    state_frames: u64,
    /// Entries of the state frames (SNAPSHOT, DELTA) in the round.
    topics: u64,
    /// Bytes of those state frames.
    state_bytes: u64,
    /// The link is done: stop after writing this round.
    finish: bool,
    /// Errors met while the link was locked, noted once it is not.
    errors: Vec<ConnError>,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>, link: Arc<Link>, stream: TcpStream) -> Writer {
        Writer { shared, link, stream, out: Vec::with_capacity(OUT_CAPACITY), snapshot: None }
    }

    /// Runs until the link stops or a write fails, then shuts the socket
    /// down.
    pub(super) fn run(mut self) {
        loop {
            let round = self.prepare();
            for e in &round.errors {
                self.shared.note_error(&self.link, e);
            }
            if !self.out.is_empty() {
                if let Err(e) = self.stream.write_all(&self.out) {
                    log!(Level::Info, self.shared.log(), "{}: write failed: {e}", self.link.remote);
                    break;
                }
                let t = &self.link.stats.traffic;
                t.bytes_out.fetch_add(self.out.len() as u64, Ordering::Relaxed);
                t.frames_out.fetch_add(round.frames, Ordering::Relaxed);
                t.state_frames_out.fetch_add(round.state_frames, Ordering::Relaxed);
                t.topics_out.fetch_add(round.topics, Ordering::Relaxed);
                t.state_bytes_out.fetch_add(round.state_bytes, Ordering::Relaxed);
                self.out.clear();
                if self.out.capacity() > 1 << 20 {
                    self.out = Vec::with_capacity(OUT_CAPACITY);
                }
            }
            if round.finish {
                break;
            }
        }
        self.link.set_finished();
        self.link.lock().stop = true;
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Waits for work, turns it into frames and encodes them into `out`.
    fn prepare(&mut self) -> Round {
        let mut round = Round::default();
        let mut st = wait_for_work(&self.shared, &self.link, self.snapshot.is_some(), &mut round.errors);
        let now = self.shared.now_ms();
        if st.conn.is_established() && !st.conn.is_closed() {
            // A snapshot asked for while one is half sent starts after it.
            if self.snapshot.is_none() && std::mem::take(&mut st.need_snapshot) {
                // Read the counts without holding the link (the flusher
                // must not wait on a snapshot). Deltas queued meanwhile are
                // sent after the snapshot, so nothing newer is lost.
                drop(st);
                let started = Instant::now();
                let mut counts: Vec<Count> = Vec::new();
                self.shared.counter().for_each_nonzero(|t, n| counts.push((t.into(), n)));
                log!(
                    Level::Debug,
                    self.shared.log(),
                    "{}: snapshot of {} topics read in {:?}",
                    self.link.remote,
                    counts.len(),
                    started.elapsed()
                );
                self.snapshot = Some(Outgoing { counts, sent: 0, started });
                st = self.link.lock();
            }
            if let Some(out) = self.snapshot.as_mut() {
                if !st.conn.is_closed() {
                    let (part, last) = out.next_part();
                    let r = st.conn.send_snapshot_part(part.iter().map(|(t, n)| (&t[..], *n)), last, now);
                    if let Err(e) = r {
                        st.conn.close(ByeCode::PROTOCOL_ERROR, &e.to_string(), now);
                        round.errors.push(e);
                    }
                    if last {
                        log!(
                            Level::Debug,
                            self.shared.log(),
                            "{}: snapshot of {} topics queued in {:?}",
                            self.link.remote,
                            out.counts.len(),
                            out.started.elapsed()
                        );
                        self.snapshot = None;
                        self.link.stats.snapshots_sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if !st.pending.is_empty() && st.conn.is_established() && st.conn.may_send_delta() {
                let pending = std::mem::take(&mut st.pending);
                self.link.stats.pending.store(0, Ordering::Relaxed);
                if let Err(e) = st.conn.send_delta(pending.iter().map(|(t, n)| (&t[..], *n)), now) {
                    st.conn.close(ByeCode::PROTOCOL_ERROR, &e.to_string(), now);
                    round.errors.push(e);
                }
            }
            if let Some(addrs) = st.peers.take() {
                let _ = st.conn.send_peers(&addrs, now);
            }
        } else {
            st.peers = None;
        }
        while let Some(f) = st.conn.poll_transmit() {
            let start = self.out.len();
            if let Err(e) = wire::encode_frame(&f, &mut self.out) {
                // Our own frames always fit; should one not, fail the
                // connection rather than send garbage.
                log!(Level::Error, self.shared.log(), "cannot encode {}: {e}", f.frame_type().name());
                st.conn.close(ByeCode::PROTOCOL_ERROR, "internal encoding error", now);
            } else if let Frame::Snapshot(Snapshot { entries, .. }) | Frame::Delta(Delta { entries, .. }) = &f {
                round.state_frames += 1;
                round.topics += entries.len() as u64;
                round.state_bytes += (self.out.len() - start) as u64;
            }
            round.frames += 1;
        }
        round.finish = st.stop || st.conn.is_closed();
        round
    }
}

/// Sleeps on the link until there is something to do (`streaming`: a
/// snapshot is half sent, so there is), running the connection's timers on
/// every wake-up (a timer's error goes to `errors`). Returns with the link
/// locked.
fn wait_for_work<'a>(shared: &Shared, link: &'a Link, streaming: bool, errors: &mut Vec<ConnError>) -> LinkGuard<'a> {
    let mut st = link.lock();
    loop {
        let now = shared.now_ms();
        if !st.conn.is_closed() {
            if let Err(e) = st.conn.handle_timeout(now) {
                errors.push(e);
                st.stop = true;
            }
        }
        let established = st.conn.is_established();
        let work = st.stop
            || st.conn.is_closed()
            || (established && (streaming || st.need_snapshot || !st.pending.is_empty() || st.peers.is_some()))
            || st.conn.has_transmit();
        if work {
            return st;
        }
        let deadline = st.conn.poll_timeout().unwrap_or(now + 1000).max(now + 1);
        link.wait(&mut st, Duration::from_millis(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(counts: Vec<Count>) -> Outgoing {
        Outgoing { counts, sent: 0, started: Instant::now() }
    }

    #[test]
    fn snapshot_parts_are_bounded_and_cover_every_count_once() {
        let n = 50_000;
        let counts = (0..n).map(|i| (format!("topic-{i:010}").into_bytes().into_boxed_slice(), 1)).collect();
        let mut o = outgoing(counts);
        let (mut seen, mut parts) = (0, 0);
        loop {
            let (part, last) = o.next_part();
            let bytes: usize = part.iter().map(|(t, _)| t.len() + ENTRY_OVERHEAD).sum();
            assert!(!part.is_empty() && bytes < SNAPSHOT_PART_BYTES + 64, "part of {bytes} bytes");
            seen += part.len();
            parts += 1;
            if last {
                break;
            }
        }
        assert_eq!(seen, n);
        assert!(parts > 1, "{parts} part(s)");
        // An empty snapshot is one empty last part; a huge entry is a part.
        assert!(matches!(outgoing(vec![]).next_part(), (p, true) if p.is_empty()));
        let huge = vec![(vec![b'x'; 2 * SNAPSHOT_PART_BYTES].into_boxed_slice(), 1), (Box::from(&b"y"[..]), 1)];
        let mut o = outgoing(huge);
        assert!(matches!(o.next_part(), (p, false) if p.len() == 1));
        assert!(matches!(o.next_part(), (p, true) if p.len() == 1));
    }
}
