//! Fuzz target bodies for headcount, shared by the libFuzzer binaries in
//! `fuzz_targets/` and by the stable-Rust corpus replay in `tests/replay.rs`.
//!
//! Each target is a plain `pub fn(&[u8])` that panics when a property fails:
//!
//! | target           | drives                                  | checks |
//! |------------------|-----------------------------------------|--------|
//! | [`frame_decode`] | `internals::wire` decoder (slice, body, stream) | no panic; allocation bounded by the bytes present; decode -> encode gives the input bytes back; stream and slice decoding agree |
//! | [`handshake`]    | two `internals::conn::Conn`s and an attacker | a peer is reported authenticated only after an AUTH whose HMAC, computed here independently, is right; no SNAPSHOT/DELTA/PEERS before that; honest runs authenticate; state sent is state received |
//! | [`ops`]          | `Counter` track/untrack/untrack_all/add/drain/collect_garbage | counts, pairs, connections, return values and drained values equal a `HashMap<topic, HashSet<conn>>` model after every step |
//! | [`config`]       | `Config::set` / `validate`              | no panic; accepted iff the documented table says so; an error changes nothing |
//!
//! The binaries that run these must install [`CountingAlloc`] as their global
//! allocator: [`frame_decode`] measures what the decoder allocates, and
//! refuses to run (panics) without it.

pub mod alloc;
pub mod config;
pub mod frame;
pub mod handshake;
pub mod ops;
pub mod replay;

pub use alloc::CountingAlloc;
pub use config::config;
pub use frame::frame_decode;
pub use handshake::handshake;
pub use ops::ops;

/// A target body: panics when a property fails.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary and corpus directory.
pub const TARGETS: &[(&str, Target)] =
    &[("frame_decode", frame_decode), ("handshake", handshake), ("ops", ops), ("config", config)];
