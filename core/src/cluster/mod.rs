//! Cluster replication: the wire protocol, the per-connection state machine,
//! and (on top of them) the networked node.
//!
//! The protocol parts are sans-IO: [`wire`] turns bytes into frames and back,
//! [`conn`] turns frames into events and decisions, and neither touches a
//! socket or a clock, so both can be unit-tested and fuzzed exhaustively. The
//! byte-level specification is `docs/PROTOCOL.md`.

pub mod conn;
pub(crate) mod log;
pub(crate) mod runtime;
pub(crate) mod view;
pub mod wire;
