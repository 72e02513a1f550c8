//! [`Reader`]: the reader of a connection, which runs the whole connection.
//!
//! [`Reader::start`] is called on the thread that accepted or dialed the
//! connection. It builds the [`Link`], registers it, and starts the writer
//! thread ([`Writer`]); [`Reader::run`] then reads until the connection
//! ends: bytes -> [`FrameDecoder`] (capped at 4 KiB until the peer
//! authenticated) -> [`Conn::handle_frame`](super::conn::Conn::handle_frame)
//! -> events:
//!
//! | event           | goes to |
//! |-----------------|---------|
//! | `Authenticated` | the registry (`Shared::admit`: slot, duplicate rule, gossip) |
//! | `Snapshot`      | the view, one frame at a time (a complete snapshot replaces the peer's counts; the first one makes it `Up`) |
//! | `Delta`         | the view (only if this link still owns the peer's slot) |
//! | `Peers`         | the caller's `learned` (a dialer per new address, `dial.rs`) |
//! | `Bye`           | the close reason; SHUTDOWN: the registry (`Shared::left`) |
//!
//! At the end it stops and joins the writer, shuts the socket down and tells
//! the registry (`Shared::link_closed`: the peer is down at once).
//!
//! The reader does not dial: every address it learns goes to the `learned`
//! callback of [`Reader::run`], which `dial.rs` (the reader's only caller)
//! points at its dialers.

use crate::logging::{log, Level};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use super::addr::dialable;
use super::conn::{Conn, Event, PeerIdentity, Role};
use super::gate::Ticket;
use super::identity::random_bytes;
use super::link::Link;
use super::shared::Shared;
use super::wire::{ByeCode, FrameDecoder, MAX_HANDSHAKE_FRAME_LEN, NONCE_LEN};
use super::writer::Writer;
use crate::sync::{Arc, Ordering};

/// Bytes read from the socket at a time.
const READ_BUF_LEN: usize = 64 * 1024;

/// One connection's reader: the link, the writer it started, the decoder
/// and what it learned of the peer. See the module docs.
#[derive(Debug)]
pub(super) struct Reader {
    shared: Arc<Shared>,
    link: Arc<Link>,
    writer: Option<JoinHandle<()>>,
    /// An accepted connection's place in the pre-authentication gate
    /// (`gate.rs`), given up when the peer authenticates or the
    /// connection ends.
    ticket: Option<Ticket>,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    events: Vec<Event>,
    /// Whether the peer authenticated.
    authenticated: bool,
    /// The peer's view slot, while this link owns it.
    slot: Option<u16>,
    /// Why the connection ended, for the log.
    reason: String,
}

impl Reader {
    /// Sets up a connection over `stream` (we are its `role`; `dialed` is
    /// the address we dialed; an accepted one comes with its `ticket`): a
    /// fresh `Conn`, the link, registered, and its writer thread. `None` if
    /// it cannot run (no randomness, no socket clone, or the node is
    /// closing).
    pub(super) fn start(
        shared: &Arc<Shared>,
        stream: TcpStream,
        remote: SocketAddr,
        role: Role,
        dialed: Option<String>,
        ticket: Option<Ticket>,
    ) -> Option<Reader> {
        let mut nonce = [0u8; NONCE_LEN];
        if let Err(e) = random_bytes(&mut nonce) {
            log!(Level::Error, shared.log(), "{e}");
            return None;
        }
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(shared.settings().down_after.max(Duration::from_secs(1))));
        let writer_stream = match stream.try_clone() {
            Ok(s) => s,
            Err(e) => {
                log!(Level::Warn, shared.log(), "{remote}: {e}");
                return None;
            }
        };
        let conn = Conn::new(shared.params(), role, nonce, shared.now_ms());
        let link = Arc::new(Link::new(shared.next_link_id(), role, remote, dialed, stream, conn));
        if !shared.register_link(&link) {
            return None;
        }
        let writer = {
            let w = Writer::new(shared.clone(), link.clone(), writer_stream);
            std::thread::Builder::new().name(format!("hc-write-{}", shared.name())).spawn(move || w.run())
        };
        let writer = match writer {
            Ok(w) => Some(w),
            Err(e) => {
                log!(Level::Error, shared.log(), "cannot start a writer thread: {e}");
                link.kill();
                None
            }
        };
        Some(Reader {
            shared: shared.clone(),
            link,
            writer,
            ticket,
            decoder: FrameDecoder::new(MAX_HANDSHAKE_FRAME_LEN),
            buf: vec![0u8; READ_BUF_LEN],
            events: Vec::new(),
            authenticated: false,
            slot: None,
            reason: String::from("connection closed"),
        })
    }

    /// Reads until the connection ends, then takes it down. Every listen
    /// address learned on the way (gossip, and the peer's own with its node
    /// id) goes to `learned`. Returns whether the peer authenticated.
    pub(super) fn run(mut self, mut learned: impl FnMut(&str, Option<u64>)) -> bool {
        loop {
            let n = match self.link.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.reason = e.to_string();
                    break;
                }
            };
            self.link.stats.traffic.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            self.decoder.push(&self.buf[..n]);
            if !self.handle_buffered(&mut learned) {
                break;
            }
        }
        self.finish()
    }

    /// Feeds every whole frame buffered to the `Conn` and acts on its
    /// events. `false` once the connection is over.
    fn handle_buffered(&mut self, learned: &mut impl FnMut(&str, Option<u64>)) -> bool {
        loop {
            let now = self.shared.now_ms();
            let mut st = self.link.lock();
            if st.conn.is_closed() {
                // Closed by the writer (silence, shutdown): whatever else
                // arrives is of no interest.
                return false;
            }
            self.decoder.set_max_len(st.conn.max_frame_len());
            let frame = match self.decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return true,
                Err(e) => {
                    let err = st.conn.handle_decode_error(e, now);
                    st.stop = true;
                    self.link.notify();
                    drop(st);
                    self.reason = err.to_string();
                    self.shared.note_error(&self.link, &err);
                    return false;
                }
            };
            self.link.stats.traffic.frames_in.fetch_add(1, Ordering::Relaxed);
            let r = st.conn.handle_frame(frame, now);
            while let Some(ev) = st.conn.poll_event() {
                self.events.push(ev);
            }
            let closed = st.conn.is_closed();
            if closed {
                st.stop = true;
            }
            self.link.notify();
            drop(st);
            if let Some(s) = self.slot {
                self.shared.view().touch(s, now);
            }
            let mut events = std::mem::take(&mut self.events);
            for ev in events.drain(..) {
                self.on_event(ev, now, learned);
            }
            self.events = events;
            if let Err(e) = r {
                self.reason = e.to_string();
                self.shared.note_error(&self.link, &e);
                return false;
            }
            if closed {
                return false;
            }
        }
    }

    fn on_event(&mut self, ev: Event, now: u64, learned: &mut impl FnMut(&str, Option<u64>)) {
        let view = self.shared.view();
        match ev {
            Event::Authenticated(id) => self.on_authenticated(&id, now, learned),
            Event::Snapshot { first, last, entries } => {
                // Applied frame by frame: the reader goes back to reading
                // (and crediting the peer's frames) after each one.
                if let Some(s) = self.slot {
                    if view.snapshot_part(s, self.link.id, first, last, entries) && last {
                        self.shared.synced(&self.link, s);
                        log!(Level::Debug, self.shared.log(), "{}: snapshot applied", self.link.remote);
                    }
                }
            }
            Event::Delta { entries, .. } => {
                if let Some(s) = self.slot {
                    view.apply(s, self.link.id, entries);
                }
            }
            Event::Peers(addrs) => {
                for a in addrs {
                    match dialable(&a, self.link.remote) {
                        Some(d) => learned(&d, None),
                        None => self.shared.drop_addr(&a, "not a host:port this node dials"),
                    }
                }
            }
            Event::Bye { code, message } => {
                self.reason = format!("peer said BYE: {} ({message})", code.name());
                if code == ByeCode::SHUTDOWN {
                    self.shared.left(&self.link);
                }
            }
        }
    }

    fn on_authenticated(&mut self, id: &PeerIdentity, now: u64, learned: &mut impl FnMut(&str, Option<u64>)) {
        // Its place in the pre-authentication gate is free again.
        self.ticket = None;
        self.authenticated = true;
        let admitted = self.shared.admit(&self.link, id);
        self.slot = admitted.as_ref().map(|(slot, _)| *slot);
        if let Some((_, Some(listen))) = admitted {
            // Remember where it listens, so that we redial it if this
            // connection drops (whichever side opened it).
            learned(&listen, Some(id.node_id));
        }
        if let Some(s) = self.slot {
            self.shared.view().touch(s, now);
        }
    }

    /// Takes the connection down: the writer writes any BYE still queued,
    /// then shuts the socket down; if it is stuck on a peer that stopped
    /// reading, its write timeout (or the shutdown below at node close)
    /// ends it.
    fn finish(mut self) -> bool {
        self.ticket = None;
        self.link.stop();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.link.kill();
        self.shared.link_closed(&self.link, &self.reason);
        self.authenticated
    }
}
