//! The pre-authentication gate: how many accepted connections may be in
//! their handshake at once, in all and per source.
//!
//! An accepted connection costs two threads (its reader and its writer) and
//! a socket until it authenticates or its handshake times out
//! (`handshake_timeout_ms`). The listener asks [`Gate::enter`] *at accept*,
//! before it spawns anything, and the [`Ticket`] it gets is counted from that
//! moment until the connection authenticates or ends (the ticket is dropped
//! or [`Ticket::end`]ed). So at most [`MAX_PENDING`] connections are pending
//! at once, whatever the timing of their threads, and at most
//! [`MAX_PENDING_PER_SOURCE`] of them come from one source: an IPv4 address,
//! or an IPv6 /64 (one host's usual allocation). A squatter holding its
//! source's share leaves the rest to everybody else, so it can delay only
//! peers that share its source.
//!
//! Dialed connections pass no gate: the node opens them itself, one per
//! known address.

use std::collections::HashMap;
use std::net::IpAddr;

use super::lock::{Ranked, LEAF};
use crate::sync::Arc;

/// Accepted connections in their handshake at once, at most.
pub(super) const MAX_PENDING: usize = 32;
/// Of those, from one source (an IPv4 address or an IPv6 /64), at most.
pub(super) const MAX_PENDING_PER_SOURCE: usize = 8;

/// Why [`Gate::enter`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// [`MAX_PENDING`] handshakes are pending.
    Busy,
    /// [`MAX_PENDING_PER_SOURCE`] handshakes from this source are pending.
    Source,
}

/// The source a connection is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    /// The upper 64 bits of the address.
    V6(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(a) => Source::V4(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Source::V4(u32::from(v4)),
                None => Source::V6((u128::from(a) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    total: usize,
    by_source: HashMap<Source, usize>,
}

/// Counts pending handshakes; see the module docs.
#[derive(Debug, Default)]
pub(super) struct Gate {
    pending: Ranked<Pending, LEAF>,
}

impl Gate {
    /// Counts a connection from `ip`, or says why not.
    pub(super) fn enter(self: &Arc<Gate>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let source = Source::of(ip);
        let mut p = self.pending.lock();
        if p.total >= MAX_PENDING {
            return Err(Refusal::Busy);
        }
        let n = p.by_source.entry(source).or_insert(0);
        if *n >= MAX_PENDING_PER_SOURCE {
            return Err(Refusal::Source);
        }
        *n += 1;
        p.total += 1;
        Ok(Ticket { gate: Some(self.clone()), source })
    }

    /// Connections counted now.
    pub(super) fn pending(&self) -> usize {
        self.pending.lock().total
    }

    fn leave(&self, source: Source) {
        let mut p = self.pending.lock();
        p.total = p.total.saturating_sub(1);
        if let Some(n) = p.by_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                p.by_source.remove(&source);
            }
        }
    }
}

/// One pending handshake, counted by its [`Gate`] until it ends or is
/// dropped.
#[derive(Debug)]
pub(super) struct Ticket {
    gate: Option<Arc<Gate>>,
    source: Source,
}

impl Ticket {
    /// The handshake is over (the peer authenticated, or the connection
    /// ended): it no longer counts. Idempotent.
    pub(super) fn end(&mut self) {
        if let Some(g) = self.gate.take() {
            g.leave(self.source);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_source_and_frees_on_end() {
        let gate = Arc::new(Gate::default());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let mut from_a: Vec<Ticket> = (0..MAX_PENDING_PER_SOURCE).map(|_| gate.enter(a).unwrap()).collect();
        assert_eq!(gate.enter(a).unwrap_err(), Refusal::Source);
        // Another source still gets in, up to the total.
        let others: Vec<Ticket> = (0..MAX_PENDING - MAX_PENDING_PER_SOURCE)
            .map(|i| gate.enter(IpAddr::from([10, 0, (i / 4) as u8, (i % 4) as u8])).unwrap())
            .collect();
        assert_eq!(gate.pending(), MAX_PENDING);
        assert_eq!(gate.enter("10.9.9.9".parse().unwrap()).unwrap_err(), Refusal::Busy);
        // Ending twice counts once; dropping frees too.
        from_a[0].end();
        from_a[0].end();
        assert_eq!(gate.pending(), MAX_PENDING - 1);
        drop(others);
        assert_eq!(gate.pending(), MAX_PENDING_PER_SOURCE - 1);
        let again = gate.enter(a).unwrap();
        assert_eq!(gate.enter(a).unwrap_err(), Refusal::Source);
        drop((again, from_a));
        assert_eq!(gate.pending(), 0);
        assert!(gate.pending.lock().by_source.is_empty());
    }

    #[test]
    fn an_ipv6_source_is_its_slash_64_and_mapped_v4_is_v4() {
        let gate = Arc::new(Gate::default());
        let held: Vec<Ticket> = (0..MAX_PENDING_PER_SOURCE)
            .map(|i| gate.enter(format!("2001:db8::{:x}", i + 1).parse().unwrap()).unwrap())
            .collect();
        assert_eq!(gate.enter("2001:db8::ffff:1".parse().unwrap()).unwrap_err(), Refusal::Source);
        assert!(gate.enter("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let v4: Vec<Ticket> = (0..MAX_PENDING_PER_SOURCE).map(|_| gate.enter([127, 0, 0, 3].into()).unwrap()).collect();
        assert_eq!(gate.enter("::ffff:127.0.0.3".parse().unwrap()).unwrap_err(), Refusal::Source);
        drop((held, v4));
    }
}
