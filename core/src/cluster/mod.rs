//! Cluster replication: the wire protocol, the per-connection state machine,
//! and (on top of them) the networked node.
//!
//! The protocol parts are sans-IO: [`wire`] turns bytes into frames and back,
//! [`conn`] turns frames into events and decisions, and neither touches a
//! socket or a clock, so both can be unit-tested and fuzzed exhaustively. The
//! byte-level specification is `docs/PROTOCOL.md`.
//!
//! The networked node is `runtime` (the facade) over `shared` (the state
//! its threads share), `dial` (listener and dialers), `reader` and `writer`
//! (a connection's two halves, as types that own their state), `link` (one
//! connection's outbox and counters), `registry` (peers and the duplicate
//! rule), `lock` (the lock order), `identity` (node ids) and `view` (the
//! remote counts); docs/CLUSTER.md has the module table, the threads and the
//! layering.
//!
//! Under `--cfg loom` only `view` is built, for its model in `loom_models.rs`.

// `pub` for `crate::internals` (feature `internals`). Without the feature,
// what only the fuzz crate and the integration tests use looks unreachable or
// dead; `cargo clippy --all-targets` enables the feature (the integration
// tests need it) and so still checks every item.
#[cfg(not(loom))]
mod addr;
#[cfg(not(loom))]
#[cfg_attr(not(feature = "internals"), allow(unreachable_pub, dead_code, unused_imports))]
pub mod conn;
#[cfg(not(loom))]
mod dial;
#[cfg(not(loom))]
mod gate;
#[cfg(not(loom))]
mod identity;
#[cfg(not(loom))]
mod link;
#[cfg(not(loom))]
mod lock;
#[cfg(not(loom))]
mod reader;
#[cfg(not(loom))]
mod registry;
#[cfg(not(loom))]
pub(crate) mod runtime;
#[cfg(not(loom))]
mod shared;
#[cfg_attr(loom, allow(dead_code))]
pub(crate) mod view;
#[cfg(not(loom))]
#[cfg_attr(not(feature = "internals"), allow(unreachable_pub, dead_code, unused_imports))]
pub mod wire;
#[cfg(not(loom))]
mod writer;
#[cfg(not(loom))]
mod xorshift;
