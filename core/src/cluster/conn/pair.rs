//! Two [`Conn`]s back to back in memory: the one test pair shared by the unit
//! tests (`conn`, `link`), the fuzz targets and the fuzz seed generator (the
//! shape of quinn-proto's `tests/util.rs` `Pair`).
//!
//! Every frame crosses the byte codec under the receiver's current cap, as
//! it would on a socket, so a frame a `Conn` could not put on the wire, or
//! one the codec would change, fails here too.
//!
//! Not stable API: compiled for this crate's tests and, through the
//! `internals` feature, for the fuzz crate and the integration tests.

use super::super::wire::{self, Frame, WireError};
use super::{Conn, ConnError};

/// Index of the dialing side in [`Pair::conns`].
pub const A: usize = 0;
/// Index of the accepting side in [`Pair::conns`].
pub const B: usize = 1;

/// Encodes `f` and decodes it again under `cap` (a receiver's
/// [`Conn::max_frame_len`]), as a socket carries it.
///
/// # Panics
///
/// If `f` does not encode, or decodes to anything but itself: a `Conn` only
/// queues frames that encode, and the codec is strict.
pub fn carry(f: &Frame, cap: usize) -> Result<Frame, WireError> {
    let bytes = wire::encode_to_vec(f).unwrap_or_else(|e| panic!("an unencodable frame {f:?}: {e}"));
    match wire::decode_frame(&bytes, cap) {
        Ok(Some((g, n))) => {
            assert_eq!((&g, n), (f, bytes.len()), "a frame did not survive the codec");
            Ok(g)
        }
        Ok(None) => panic!("a whole encoded frame decoded as incomplete: {f:?}"),
        Err(e) => Err(e),
    }
}

/// Carries `f` to `to` and feeds it in; a frame that does not decode under
/// `to`'s cap reaches `to` as that decode error.
pub fn deliver(f: &Frame, to: &mut Conn, now_ms: u64) -> Result<(), ConnError> {
    match carry(f, to.max_frame_len()) {
        Ok(g) => to.handle_frame(g, now_ms),
        Err(e) => Err(to.handle_decode_error(e, now_ms)),
    }
}

/// Moves the next frame `from` has queued to `to`: that frame and `to`'s
/// verdict on it, or `None` when `from` has nothing queued.
pub fn step(from: &mut Conn, to: &mut Conn, now_ms: u64) -> Option<(Frame, Result<(), ConnError>)> {
    let f = from.poll_transmit()?;
    let r = deliver(&f, to, now_ms);
    Some((f, r))
}

/// Delivers everything `from` has queued to `to`; the first error `to`
/// reported, if any (a `to` that failed is closed and refuses the rest).
pub fn pump(from: &mut Conn, to: &mut Conn, now_ms: u64) -> Result<(), ConnError> {
    let mut first = Ok(());
    while let Some((_, r)) = step(from, to, now_ms) {
        if first.is_ok() {
            first = r;
        }
    }
    first
}

/// A dialer ([`A`]) and an acceptor ([`B`]).
#[derive(Debug)]
pub struct Pair {
    /// The two sides, indexed by [`A`] and [`B`].
    pub conns: [Conn; 2],
}

impl Pair {
    /// A pair of `a` (which should dial) and `b` (which should accept).
    pub fn new(a: Conn, b: Conn) -> Pair {
        Pair { conns: [a, b] }
    }

    /// (`from`, the other side).
    fn ends(&mut self, from: usize) -> (&mut Conn, &mut Conn) {
        let [a, b] = &mut self.conns;
        if from == A {
            (a, b)
        } else {
            (b, a)
        }
    }

    /// [`step`] from side `from` to the other.
    pub fn step(&mut self, from: usize, now_ms: u64) -> Option<(Frame, Result<(), ConnError>)> {
        let (from, to) = self.ends(from);
        step(from, to, now_ms)
    }

    /// Moves frames one at a time, all of A's queue then all of B's, until
    /// neither side has anything queued. Returns each frame with the side
    /// that sent it; errors close their receiver (see [`Conn::error`]).
    ///
    /// Run on a fresh honest pair this is the handshake: A's HELLO, B's HELLO
    /// and AUTH, A's AUTH; both sides established.
    pub fn run(&mut self, now_ms: u64) -> Vec<(usize, Frame)> {
        let mut moved = Vec::new();
        loop {
            let before = moved.len();
            for from in [A, B] {
                while let Some((f, _)) = self.step(from, now_ms) {
                    moved.push((from, f));
                }
            }
            if moved.len() == before {
                return moved;
            }
        }
    }

    /// Whether both sides have authenticated their peer.
    pub fn is_established(&self) -> bool {
        self.conns.iter().all(Conn::is_established)
    }
}
