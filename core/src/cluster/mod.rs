//! Cluster replication: the wire protocol, the per-connection state machine,
//! and (on top of them) the networked node.
//!
//! The protocol parts are sans-IO: [`wire`] turns bytes into frames and back,
//! [`conn`] turns frames into events and decisions, and neither touches a
//! socket or a clock, so both can be unit-tested and fuzzed exhaustively. The
//! byte-level specification is `docs/PROTOCOL.md`.
//!
//! The networked node is `runtime` (the facade) over `dial` (listener and
//! dialers), `link` (one connection's outbox and counters), `reader` and
//! `writer` (its two threads), `registry` (peers and the duplicate rule),
//! `identity` (node ids) and `view` (the remote counts); docs/CLUSTER.md has
//! the module table and the threads.
//!
//! Under `--cfg loom` only `view` is built, for its model in `loom_models.rs`.

#[cfg(not(loom))]
pub mod conn;
#[cfg(not(loom))]
mod dial;
#[cfg(not(loom))]
mod identity;
#[cfg(not(loom))]
mod link;
#[cfg(not(loom))]
pub(crate) mod log;
#[cfg(not(loom))]
mod reader;
#[cfg(not(loom))]
mod registry;
#[cfg(not(loom))]
pub(crate) mod runtime;
#[cfg_attr(loom, allow(dead_code))]
pub(crate) mod view;
#[cfg(not(loom))]
pub mod wire;
#[cfg(not(loom))]
mod writer;
#[cfg(not(loom))]
mod xorshift;
