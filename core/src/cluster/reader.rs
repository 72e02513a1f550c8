//! The reader thread of a connection: it runs the whole connection.
//!
//! [`Cluster::run_link`] is called on the thread that accepted or dialed the
//! connection. It builds the [`Link`], registers it, starts the writer
//! thread (`writer.rs`), then reads until the connection ends: bytes ->
//! [`FrameDecoder`] (capped at 4 KiB until the peer authenticated) ->
//! [`Conn::handle_frame`] -> events:
//!
//! | event           | goes to |
//! |-----------------|---------|
//! | `Authenticated` | the registry (`on_authenticated`: slot, duplicate rule, gossip) |
//! | `Snapshot`      | the view (replaces the peer's counts; the first one makes it `Up`) |
//! | `Delta`         | the view (only if this link still owns the peer's slot) |
//! | `Peers`         | a dialer per new address (`dial.rs`) |
//! | `Bye`           | the close reason; SHUTDOWN: the registry (`on_left`) |
//!
//! At the end it stops and joins the writer, shuts the socket down and tells
//! the registry (`on_link_closed`: the peer is down at once).

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::conn::{Conn, ConnError, Event, Role};
use super::identity::random_bytes;
use super::link::Link;
use super::log::{log, Level};
use super::registry::dialable;
use super::runtime::Cluster;
use super::wire::{ByeCode, FrameDecoder, MAX_HANDSHAKE_FRAME_LEN, NONCE_LEN};
use crate::sync::{Arc, Ordering};

impl Cluster {
    /// Runs one connection to its end on this thread (reading), with a
    /// writer thread beside it. Returns whether the peer authenticated.
    pub(super) fn run_link(
        self: &Arc<Self>,
        stream: TcpStream,
        remote: SocketAddr,
        role: Role,
        dialed: Option<String>,
    ) -> bool {
        self.stats.handshakes.fetch_add(1, Ordering::AcqRel);
        let mut in_handshake = true;
        let done_handshake = |flag: &mut bool| {
            if std::mem::replace(flag, false) {
                self.stats.handshakes.fetch_sub(1, Ordering::AcqRel);
            }
        };
        let mut nonce = [0u8; NONCE_LEN];
        if let Err(e) = random_bytes(&mut nonce) {
            log!(Level::Error, &self.name, "{e}");
            done_handshake(&mut in_handshake);
            return false;
        }
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(self.settings.down_after.max(Duration::from_secs(1))));
        let writer_stream = match stream.try_clone() {
            Ok(s) => s,
            Err(e) => {
                log!(Level::Warn, &self.name, "{remote}: {e}");
                done_handshake(&mut in_handshake);
                return false;
            }
        };
        let now = self.now_ms();
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let conn = Conn::new(&self.params, role, nonce, now);
        let link = Arc::new(Link::new(id, role, remote, dialed, stream, conn));
        {
            let mut reg = self.reg.lock();
            if self.is_closed() {
                done_handshake(&mut in_handshake);
                return false;
            }
            reg.links.insert(link.id, link.clone());
        }
        let writer = {
            let (c, l) = (self.clone(), link.clone());
            std::thread::Builder::new()
                .name(format!("hc-write-{}", self.name))
                .spawn(move || c.write_loop(&l, writer_stream))
        };
        let writer = match writer {
            Ok(w) => Some(w),
            Err(e) => {
                log!(Level::Error, &self.name, "cannot start a writer thread: {e}");
                link.kill();
                None
            }
        };

        let mut authenticated = false;
        let mut slot: Option<u16> = None;
        let mut decoder = FrameDecoder::new(MAX_HANDSHAKE_FRAME_LEN);
        let mut buf = vec![0u8; 64 * 1024];
        let mut events = Vec::new();
        let mut reason = String::from("connection closed");
        'read: loop {
            let n = match (&link.stream).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    reason = e.to_string();
                    break;
                }
            };
            link.stats.traffic.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            decoder.push(&buf[..n]);
            loop {
                let now = self.now_ms();
                let mut st = link.st.lock();
                if st.conn.is_closed() {
                    // Closed by the writer (silence, shutdown): whatever
                    // else arrives is of no interest.
                    break 'read;
                }
                decoder.set_max_len(st.conn.max_frame_len());
                let frame = match decoder.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        let err = st.conn.handle_decode_error(e, now);
                        st.stop = true;
                        link.cv.notify_all();
                        drop(st);
                        reason = err.to_string();
                        self.note_error(&link, &err);
                        break 'read;
                    }
                };
                link.stats.traffic.frames_in.fetch_add(1, Ordering::Relaxed);
                let r = st.conn.handle_frame(frame, now);
                while let Some(ev) = st.conn.poll_event() {
                    events.push(ev);
                }
                let closed = st.conn.is_closed();
                if closed {
                    st.stop = true;
                }
                link.cv.notify_all();
                drop(st);
                if let Some(s) = slot {
                    self.view.touch(s, now);
                }
                for ev in events.drain(..) {
                    match ev {
                        Event::Authenticated(id) => {
                            done_handshake(&mut in_handshake);
                            authenticated = true;
                            slot = self.on_authenticated(&link, &id);
                            if let Some(s) = slot {
                                self.view.touch(s, now);
                            }
                        }
                        Event::Snapshot(snap) => {
                            if let Some(s) = slot {
                                if self.view.replace(s, link.id, snap) {
                                    self.on_synced(&link, s);
                                }
                            }
                        }
                        Event::Delta { entries, .. } => {
                            if let Some(s) = slot {
                                self.view.apply(s, link.id, entries);
                            }
                        }
                        Event::Peers(addrs) => {
                            for a in addrs {
                                self.add_addr(&dialable(&a, remote), false);
                            }
                        }
                        Event::Bye { code, message } => {
                            reason = format!("peer said BYE: {} ({message})", code.name());
                            if code == ByeCode::SHUTDOWN {
                                self.on_left(&link);
                            }
                        }
                    }
                }
                if let Err(e) = r {
                    reason = e.to_string();
                    self.note_error(&link, &e);
                    break 'read;
                }
                if closed {
                    break 'read;
                }
            }
        }
        done_handshake(&mut in_handshake);
        {
            let mut st = link.st.lock();
            st.stop = true;
            link.cv.notify_all();
        }
        // The writer writes any BYE still queued, then shuts the socket down;
        // if it is stuck on a peer that stopped reading, its write timeout
        // (or the shutdown below at node close) ends it.
        if let Some(w) = writer {
            let _ = w.join();
        }
        link.kill();
        self.on_link_closed(&link, &reason);
        authenticated
    }

    /// Counts and logs a connection error; marks our own address on
    /// SELF_CONNECTION so that its dialer stops.
    pub(super) fn note_error(&self, link: &Link, e: &ConnError) {
        match e {
            ConnError::AuthFailed => {
                self.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
                log!(Level::Warn, &self.name, "{}: authentication failed (wrong secret?); dropped", link.remote);
            }
            ConnError::RejectedByPeer { code, .. } if *code == ByeCode::AUTH_FAILED => {
                self.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
                log!(Level::Warn, &self.name, "{}: {e}", link.remote);
            }
            ConnError::SelfConnection => {
                if let Some(a) = &link.dialed {
                    if let Some(d) = self.reg.lock().addrs.get_mut(a) {
                        d.is_self = true;
                    }
                }
            }
            ConnError::PeerSilent(_) | ConnError::HandshakeTimeout => {
                log!(Level::Info, &self.name, "{}: {e}", link.remote);
            }
            _ => {
                self.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                log!(Level::Warn, &self.name, "{}: closing: {e}", link.remote);
            }
        }
    }
}
