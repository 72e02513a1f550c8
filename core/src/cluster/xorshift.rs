//! Marsaglia's xorshift64 generator (G. Marsaglia, "Xorshift RNGs", Journal
//! of Statistical Software 8(14), 2003; shift triple 13, 7, 17): a few
//! instructions, deterministic, and *not* for anything an attacker may
//! predict. The cluster uses it only to spread redials (jitter); nonces and
//! ids come from the OS in `identity.rs`.
//!
//! The same file is compiled into the integration tests and the cluster
//! benchmark (`core/tests/support/mod.rs` includes it with `#[path]`), so
//! that one generator drives the jitter, the codec's fuzz-like tests and the
//! replayable load of tests and benchmark. It must therefore stay
//! self-contained: no `crate::` or `super::` paths.

/// A xorshift64 generator. The state must not be 0 (0 stays 0).
#[derive(Debug, Clone)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// Advances the state and returns it.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
