//! Getting connections: the listener, and one dialer per known address with
//! exponential backoff and jitter.
//!
//! Every address the node learns (a seed, `add_peer`, a PEERS gossip entry,
//! the listen address in a peer's HELLO) gets one dialer thread
//! ([`add_addr`]). The dialer idles while that address's node is
//! connected by either side, and otherwise connects and runs the connection
//! to its end on the dialer's own thread ([`Reader`]); after a
//! failed attempt it waits 50 ms doubling to 2 s (reset by a connection that
//! authenticated), times a jitter factor of 0.5 to 1.5 so that a restarted
//! cluster does not redial in lockstep. A gossiped address that fails for a
//! minute is forgotten (its dialer ends), and so are the addresses learned
//! for a peer that said BYE SHUTDOWN; seeds and `add_peer` addresses are
//! kept. Addresses are known by their canonical spelling (`addr.rs`), so
//! numeric aliases of one address are one address, and ours is never
//! dialed. An address that turns out to be our own anyway (its resolved
//! target is our listener, or the peer's HELLO carries our node id:
//! SELF_CONNECTION) leaves the address table and is remembered among the
//! last few such addresses (`registry.rs`), which are never dialed.
//!
//! The listener admits an accepted connection only through the
//! pre-authentication gate (`gate.rs`: 32 handshakes at once, 8 per
//! source, counted at accept) and closes the rest at once, before any thread
//! is spawned for them.
//!
//! This module is where connections come from, so it is the one that runs
//! them: the [`Listener`] and every [`Dialer`] hand their sockets to a
//! [`Reader`], and point the reader's `learned` addresses back at
//! [`add_addr`].

use crate::logging::{log, Level};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::addr::canonical;
use super::conn::Role;
use super::gate::{Refusal, Ticket};
use super::reader::Reader;
use super::registry::Claim;
use super::shared::Shared;
use crate::error::Result;
use crate::sync::{Arc, Ordering};

/// Dial timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// First and largest redial delay (before jitter).
const BACKOFF_MIN_MS: u64 = 50;
const BACKOFF_MAX_MS: u64 = 2_000;
/// A gossiped (non-seed) address that keeps failing this long is forgotten.
const FORGET_ADDR_AFTER_MS: u64 = 60_000;

/// Starts dialing `addr` (and keeps redialing it when its connection drops),
/// unless it is ours or already has a dialer. Addresses are compared in
/// their canonical spelling (`addr.rs`); one that has none, or that does
/// not fit the address table, is dropped (counted and logged).
pub(super) fn add_addr(shared: &Arc<Shared>, addr: &str, seed: bool) {
    if shared.is_closed() || addr.is_empty() {
        return;
    }
    let Some(addr) = canonical(addr) else {
        shared.drop_addr(addr, "not a host:port this node dials");
        return;
    };
    if shared.is_own_addr(&addr) {
        // Ours: no dialer, no entry, whatever the spelling.
        return;
    }
    match shared.claim_dial(&addr, seed) {
        Claim::Start => {}
        Claim::Known => return,
        Claim::Full => {
            shared.drop_addr(&addr, "the address table is full");
            return;
        }
    }
    let dialer = Dialer { shared: shared.clone(), addr: addr.clone(), backoff: BACKOFF_MIN_MS, failing_since: None };
    if shared.spawn("dial", move || dialer.run()).is_err() {
        shared.release_dial(&addr);
    }
}

/// Runs one connection to its end on this thread: a [`Reader`] (with its
/// writer thread), whose learned addresses get dialers. Returns whether the
/// peer authenticated.
fn run_connection(
    shared: &Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    role: Role,
    dialed: Option<String>,
    ticket: Option<Ticket>,
) -> bool {
    let Some(reader) = Reader::start(shared, stream, remote, role, dialed, ticket) else { return false };
    reader.run(|addr, node_id| {
        add_addr(shared, addr, false);
        if let Some(id) = node_id {
            shared.set_dial_node(addr, id);
        }
    })
}

/// The listener thread: accepts connections and runs each on a thread of
/// its own.
#[derive(Debug)]
pub(super) struct Listener {
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl Listener {
    /// Starts the listener thread on a bound `listener`.
    pub(super) fn spawn(shared: &Arc<Shared>, listener: TcpListener) -> Result<()> {
        let l = Listener { shared: shared.clone(), listener };
        shared.spawn("listen", move || l.run())
    }

    fn run(self) {
        let shared = &self.shared;
        loop {
            let accepted = self.listener.accept();
            if shared.is_closed() {
                return;
            }
            match accepted {
                Ok((stream, remote)) => {
                    let counters = shared.counters();
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    let ticket = match shared.gate().enter(remote.ip()) {
                        Ok(t) => t,
                        Err(refusal) => {
                            // Dropping the stream closes it.
                            let (counter, why) = match refusal {
                                Refusal::Busy => (&counters.refused_busy, "too many pending handshakes"),
                                Refusal::Source => (&counters.refused_source, "too many pending handshakes from it"),
                            };
                            // Logged at 1, 2, 4, 8... refusals: a squatter cannot flood the log.
                            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                            if n.is_power_of_two() {
                                log!(Level::Warn, shared.log(), "refusing {remote}: {why} ({n} refused so far)");
                            }
                            continue;
                        }
                    };
                    let c = shared.clone();
                    if let Err(e) = shared.spawn("conn", move || {
                        run_connection(&c, stream, remote, Role::Acceptor, None, Some(ticket));
                    }) {
                        log!(Level::Error, shared.log(), "cannot start a connection thread: {e}");
                    }
                }
                Err(e) => {
                    log!(Level::Warn, shared.log(), "accept failed: {e}");
                    shared.sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// One address's dialer thread: idles while the address's node is
/// connected, otherwise connects, runs the connection, and backs off.
#[derive(Debug)]
struct Dialer {
    shared: Arc<Shared>,
    addr: String,
    /// The next redial delay before jitter.
    backoff: u64,
    /// When the address started failing (reset by an authenticated
    /// connection).
    failing_since: Option<u64>,
}

impl Dialer {
    fn run(mut self) {
        let shared = self.shared.clone();
        let addr = self.addr.clone();
        while !shared.is_closed() {
            // Idle while this address's node is connected (by either side).
            let Some((connected, seed)) = shared.dial_status(&addr) else { return };
            if connected {
                self.backoff = BACKOFF_MIN_MS;
                self.failing_since = None;
                shared.sleep(Duration::from_millis(1000));
                continue;
            }
            let now = shared.now_ms();
            if !seed && self.failing_since.is_some_and(|t| now.saturating_sub(t) > FORGET_ADDR_AFTER_MS) {
                log!(Level::Info, shared.log(), "forgetting {addr}: unreachable for a minute");
                shared.forget_addr(&addr);
                return;
            }
            let target = addr
                .to_socket_addrs()
                .map_err(|e| e.to_string())
                .and_then(|mut it| it.next().ok_or_else(|| "resolves to nothing".to_owned()));
            if let Ok(sa) = target {
                if shared.reaches_self(sa) {
                    shared.mark_self(&addr, sa);
                    break;
                }
            }
            let stream = target.and_then(|sa| {
                TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT).map(|s| (s, sa)).map_err(|e| e.to_string())
            });
            let authenticated = match stream {
                Ok((s, sa)) => {
                    shared.counters().dialed.fetch_add(1, Ordering::Relaxed);
                    run_connection(&shared, s, sa, Role::Dialer, Some(addr.clone()), None)
                }
                Err(e) => {
                    log!(Level::Debug, shared.log(), "dial {addr}: {e}");
                    false
                }
            };
            if authenticated {
                self.backoff = BACKOFF_MIN_MS;
                self.failing_since = None;
            } else {
                self.failing_since.get_or_insert(now);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX_MS);
            }
            let d = shared.jitter(self.backoff);
            shared.sleep(Duration::from_millis(d));
        }
        shared.release_dial(&addr);
    }
}
