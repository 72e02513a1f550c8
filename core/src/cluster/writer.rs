//! [`Writer`]: the writer thread of a connection.
//!
//! It sleeps on the link's condvar until there is work or a timer is due
//! (`Conn::poll_timeout`: handshake timeout, heartbeat, peer silence), then,
//! in this order: starts a snapshot if one is needed, reads its next part
//! from the counter (with the link unlocked) and queues it, hands the outbox
//! to `Conn::send_delta` (once no snapshot is half sent), sends a pending
//! gossip list, encodes every queued frame into one buffer and writes it
//! with one blocking `write_all` outside the lock. A snapshot thus goes out
//! in parts of about [`SNAPSHOT_PART_BYTES`], one per round, each read just
//! before it is sent: a round's work is bounded whatever the number of
//! topics (nothing is read up front), the link is locked for one part at a
//! time, and the connection's timers (heartbeats, the peer's silence) run
//! between parts. A peer that stops reading blocks only this thread,
//! for at most `SO_SNDTIMEO`.
//!
//! It also counts what went out: bytes and frames, and for the state frames
//! (SNAPSHOT, DELTA) their number, topic entries and bytes, which make the
//! exact per-peer `state_frames_out`, `topics_out` and `state_bytes_out`.

use crate::logging::{log, Level};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::ops::Range;
use std::time::{Duration, Instant};

use super::conn::{ConnError, TARGET_FRAME_LEN};
use super::link::{Link, LinkGuard};
use super::shared::Shared;
use super::wire::{self, ByeCode, Delta, Frame, Snapshot};
use crate::sync::{Arc, Ordering};

/// Initial (and, after a large burst, reset) size of the write buffer.
const OUT_CAPACITY: usize = 64 * 1024;
/// About how many wire bytes of a snapshot one round reads and writes.
const SNAPSHOT_PART_BYTES: usize = 4 * TARGET_FRAME_LEN;
/// Most topic ids one round of a snapshot scans (bounds a round's read
/// where most ids are free or at zero).
const PART_MAX_IDS: u32 = 1 << 16;
/// Topic ids read from the counter per call (one epoch pin each).
const READ_IDS: u32 = 256;
/// Estimated wire bytes of an entry beyond its name (ref, name length,
/// count: varints of a few bytes each).
const ENTRY_OVERHEAD: usize = 8;

/// A snapshot being sent: the counter is read one part at a time, each part
/// sent before the next is read, so that no round (and no gap between the
/// frames this writer sends) grows with the number of topics.
#[derive(Debug)]
struct Outgoing {
    /// The next topic id to read.
    next: u32,
    /// One past the last id to read: the counter's high water when the
    /// snapshot started (a topic created since has its counts in deltas).
    end: u32,
    /// The part read last: its names back to back (one buffer, reused, so
    /// no allocation per entry), and per entry the end of its name in
    /// `names` and its count.
    names: Vec<u8>,
    entries: Vec<(usize, u64)>,
    /// Entries read so far, and time spent reading them (for the log).
    topics: usize,
    reading: Duration,
    /// When it started (for the log).
    started: Instant,
}

impl Outgoing {
    fn new(end: u32) -> Outgoing {
        Outgoing {
            next: 0,
            end,
            names: Vec::new(),
            entries: Vec::new(),
            topics: 0,
            reading: Duration::ZERO,
            started: Instant::now(),
        }
    }

    /// Reads the next part with `read(ids, f)` (which calls `f(topic,
    /// count)` for the non-zero topics with ids in `ids`): entries up to
    /// about [`SNAPSHOT_PART_BYTES`] or [`PART_MAX_IDS`] ids scanned,
    /// whichever comes first. Returns whether it is the last part.
    fn read_part(&mut self, mut read: impl FnMut(Range<u32>, &mut dyn FnMut(&[u8], u64))) -> bool {
        let began = Instant::now();
        self.names.clear();
        self.entries.clear();
        let stop = self.next.saturating_add(PART_MAX_IDS).min(self.end);
        let mut bytes = 0;
        while self.next < stop && bytes < SNAPSHOT_PART_BYTES {
            let to = self.next.saturating_add(READ_IDS).min(stop);
            let (names, entries) = (&mut self.names, &mut self.entries);
            read(self.next..to, &mut |t, n| {
                names.extend_from_slice(t);
                entries.push((names.len(), n));
                bytes += t.len() + ENTRY_OVERHEAD;
            });
            self.next = to;
        }
        self.topics += self.entries.len();
        self.reading += began.elapsed();
        self.next >= self.end
    }

    /// The entries of the part read last.
    fn part(&self) -> impl Iterator<Item = (&[u8], u64)> {
        let mut start = 0;
        self.entries.iter().map(move |&(end, n)| {
            let t = &self.names[start..end];
            start = end;
            (t, n)
        })
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
                // Deltas queued from now on are sent after the snapshot, so
                // a topic changed after its part was read is not lost.
                st.conn.reserve_out_topics(self.shared.counter().topics());
                self.snapshot = Some(Outgoing::new(self.shared.counter().id_high_water()));
            }
            if let Some(out) = self.snapshot.as_mut() {
                // Read the part without holding the link (the flusher must
                // not wait on a snapshot).
                drop(st);
                let counter = self.shared.counter();
                let last = out.read_part(|ids, f| counter.for_each_nonzero_in(ids, f));
                st = self.link.lock();
                if !st.conn.is_closed() {
                    let r = st.conn.send_snapshot_part(out.part(), last, now);
                    if let Err(e) = r {
                        st.conn.close(ByeCode::PROTOCOL_ERROR, &e.to_string(), now);
                        round.errors.push(e);
                    }
                    if last {
                        log!(
                            Level::Debug,
                            self.shared.log(),
                            "{}: snapshot of {} topics queued in {:?} ({:?} reading the counter)",
                            self.link.remote,
                            out.topics,
                            out.started.elapsed(),
                            out.reading
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

    /// A counter's `for_each_nonzero_in`: id `i` is `topic-{i}` with count
    /// `i % 3` (so one id in three is at zero, and skipped).
    fn read(ids: Range<u32>, f: &mut dyn FnMut(&[u8], u64)) {
        for i in ids.filter(|i| i % 3 != 0) {
            f(format!("topic-{i:010}").as_bytes(), u64::from(i % 3));
        }
    }

    #[test]
    fn snapshot_parts_are_bounded_and_cover_every_count_once() {
        let n = 200_000;
        let mut o = Outgoing::new(n);
        let (mut seen, mut parts) = (Vec::new(), 0);
        loop {
            let before = o.next;
            let last = o.read_part(read);
            assert!(o.next - before <= PART_MAX_IDS, "scanned {} ids", o.next - before);
            let bytes: usize = o.part().map(|(t, _)| t.len() + ENTRY_OVERHEAD).sum();
            assert!(bytes < SNAPSHOT_PART_BYTES + READ_IDS as usize * 32, "part of {bytes} bytes");
            seen.extend(o.part().map(|(t, c)| (t.to_vec(), c)));
            parts += 1;
            if last {
                break;
            }
        }
        let want: Vec<(Vec<u8>, u64)> =
            (0..n).filter(|i| i % 3 != 0).map(|i| (format!("topic-{i:010}").into_bytes(), u64::from(i % 3))).collect();
        assert!(seen == want, "{} entries read, {} expected", seen.len(), want.len());
        assert_eq!(o.topics, want.len());
        assert!(parts > 1, "{parts} part(s)");
        // An empty counter is one empty last part; ids with nothing to
        // send still end a part after PART_MAX_IDS of them.
        let mut o = Outgoing::new(0);
        assert!(o.read_part(read) && o.part().next().is_none());
        let mut o = Outgoing::new(3 * PART_MAX_IDS);
        let mut parts = 0;
        while !o.read_part(|_, _| {}) {
            parts += 1;
        }
        assert_eq!(parts, 2);
    }
}
