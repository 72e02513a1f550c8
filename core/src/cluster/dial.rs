//! Getting connections: the listener, and one dialer per known address with
//! exponential backoff and jitter.
//!
//! Every address the node learns (a seed, `add_peer`, a PEERS gossip entry,
//! the listen address in a peer's HELLO) gets one dialer thread
//! ([`Cluster::add_addr`]). The dialer idles while that address's node is
//! connected by either side, and otherwise connects and runs the connection
//! to its end on the dialer's own thread ([`Cluster::run_link`]); after a
//! failed attempt it waits 50 ms doubling to 2 s (reset by a connection that
//! authenticated), times a jitter factor of 0.5 to 1.5 so that a restarted
//! cluster does not redial in lockstep. A gossiped address that fails for a
//! minute is forgotten (its dialer ends), and so are the addresses learned
//! for a peer that said BYE SHUTDOWN; seeds and `add_peer` addresses are
//! kept. An address that turns out to be our own (SELF_CONNECTION) is marked
//! and never dialed again.
//!
//! The listener accepts at most [`MAX_HANDSHAKES`] unauthenticated
//! connections at once and closes the rest at accept.

use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::conn::Role;
use super::log::{log, Level};
use super::registry::Dial;
use super::runtime::Cluster;
use super::view::MAX_SLOTS;
use crate::sync::{Arc, Ordering};

/// Connections accepted but not yet authenticated, at most.
const MAX_HANDSHAKES: usize = 64;
/// Dial timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// First and largest redial delay (before jitter).
const BACKOFF_MIN_MS: u64 = 50;
const BACKOFF_MAX_MS: u64 = 2_000;
/// A gossiped (non-seed) address that keeps failing this long is forgotten.
const FORGET_ADDR_AFTER_MS: u64 = 60_000;

impl Cluster {
    /// Starts dialing `addr` (and keeps redialing it when its connection drops).
    pub(crate) fn add_addr(self: &Arc<Self>, addr: &str, seed: bool) {
        if self.is_closed()
            || addr.is_empty()
            || addr == self.params.listen
            || Some(addr) == self.listen_addr.map(|a| a.to_string()).as_deref()
        {
            return;
        }
        {
            let mut reg = self.reg.lock();
            if reg.addrs.len() >= MAX_SLOTS && !reg.addrs.contains_key(addr) {
                return;
            }
            let d = reg.addrs.entry(addr.to_owned()).or_insert(Dial {
                node_id: None,
                seed,
                running: false,
                is_self: false,
            });
            d.seed |= seed;
            if d.running || d.is_self {
                return;
            }
            d.running = true;
        }
        let c = self.clone();
        let a = addr.to_owned();
        if self.spawn("dial", move || c.dial_loop(&a)).is_err() {
            if let Some(d) = self.reg.lock().addrs.get_mut(addr) {
                d.running = false;
            }
        }
    }

    pub(super) fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = listener.accept();
            if self.is_closed() {
                return;
            }
            match accepted {
                Ok((stream, remote)) => {
                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    if self.stats.handshakes.load(Ordering::Acquire) >= MAX_HANDSHAKES {
                        self.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
                        log!(Level::Warn, &self.name, "refusing {remote}: too many pending handshakes");
                        continue;
                    }
                    let c = self.clone();
                    if let Err(e) = self.spawn("conn", move || {
                        c.run_link(stream, remote, Role::Acceptor, None);
                    }) {
                        log!(Level::Error, &self.name, "cannot start a connection thread: {e}");
                    }
                }
                Err(e) => {
                    log!(Level::Warn, &self.name, "accept failed: {e}");
                    self.sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// `ms` times a factor from 0.5 to 1.5. Only spreads redials, so no
    /// need for secure randomness.
    fn jitter(&self, ms: u64) -> u64 {
        ms / 2 + self.jitter.lock().next() % (ms + 1)
    }

    fn dial_loop(self: Arc<Self>, addr: &str) {
        let mut backoff = BACKOFF_MIN_MS;
        let mut failing_since: Option<u64> = None;
        while !self.is_closed() {
            // Idle while this address's node is connected (by either side).
            let (connected, seed) = {
                let reg = self.reg.lock();
                let Some(d) = reg.addrs.get(addr) else { return };
                if d.is_self {
                    return;
                }
                let connected = d.node_id.and_then(|id| reg.peers.get(&id)).is_some_and(|p| p.link.is_some());
                (connected, d.seed)
            };
            if connected {
                backoff = BACKOFF_MIN_MS;
                failing_since = None;
                self.sleep(Duration::from_millis(1000));
                continue;
            }
            let now = self.now_ms();
            if !seed && failing_since.is_some_and(|t| now.saturating_sub(t) > FORGET_ADDR_AFTER_MS) {
                log!(Level::Info, &self.name, "forgetting {addr}: unreachable for a minute");
                self.reg.lock().addrs.remove(addr);
                return;
            }
            let stream = addr.to_socket_addrs().map_err(|e| e.to_string()).and_then(|mut it| {
                let sa = it.next().ok_or_else(|| "resolves to nothing".to_owned())?;
                TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT).map(|s| (s, sa)).map_err(|e| e.to_string())
            });
            let authenticated = match stream {
                Ok((s, sa)) => {
                    self.stats.dialed.fetch_add(1, Ordering::Relaxed);
                    self.run_link(s, sa, Role::Dialer, Some(addr.to_owned()))
                }
                Err(e) => {
                    log!(Level::Debug, &self.name, "dial {addr}: {e}");
                    false
                }
            };
            if authenticated {
                backoff = BACKOFF_MIN_MS;
                failing_since = None;
            } else {
                failing_since.get_or_insert(now);
                backoff = (backoff * 2).min(BACKOFF_MAX_MS);
            }
            let d = self.jitter(backoff);
            self.sleep(Duration::from_millis(d));
        }
        if let Some(d) = self.reg.lock().addrs.get_mut(addr) {
            d.running = false;
        }
    }
}
