//! # headcount
//!
//! Exact, cluster-wide counts of connected users per topic ("1,284 people in
//! this room") for chat, game and live-event servers.
//!
//! Each node counts its own connections per topic in a lock-free core
//! ([`Counter`]: per-CPU striped counter arrays behind a concurrent topic
//! table); a flusher thread ships only the counters that changed to the
//! node's peers; `count(topic)` is the exact local count plus the last count
//! each live peer reported.
//!
//! ```
//! use headcount::{Config, Node};
//!
//! let node = Node::start(&Config::new())?;      // local-only: no listen/seeds
//! node.track("room:lobby", 1)?;                  // connection 1 joins
//! node.track(b"room:lobby", 2)?;                 // topics: &str, String, &[u8], Vec<u8>...
//! assert_eq!(node.count("room:lobby")?, 2);
//! node.untrack_all(1)?;                          // connection 1 drops
//! assert_eq!(node.count("room:lobby")?, 1);
//! # Ok::<(), headcount::Error>(())
//! ```
//!
//! See `docs/ARCHITECTURE.md` for the data structures and their memory
//! orderings.

mod cluster;
mod counter;
mod cpu;
mod dirty;
mod error;
mod gc;
mod handle;
mod membership;
mod segvec;
mod shared;
mod stripes;
mod sync;
mod table;
mod wake;
#[cfg_attr(loom, allow(dead_code))]
mod watch;

#[cfg(not(loom))]
mod config;
#[cfg(not(loom))]
mod flush;
#[cfg(not(loom))]
pub mod logging;
#[cfg(not(loom))]
mod metrics;
#[cfg(not(loom))]
mod node;
#[cfg(not(loom))]
mod stats;
#[cfg(not(loom))]
mod top;

#[cfg(all(test, loom))]
mod loom_models;

/// **Not stable API**: the sans-IO protocol layers, for the fuzz crate and
/// the integration tests, behind the `internals` feature. They change
/// whenever the implementation does; depend on them at your own risk.
///
/// * [`internals::wire`]: frames <-> bytes (docs/PROTOCOL.md);
/// * [`internals::conn`]: one connection's state machine, and
///   [`internals::conn::pair`], two of them back to back in memory.
#[cfg(all(not(loom), feature = "internals"))]
pub mod internals {
    pub use crate::cluster::{conn, wire};
}

#[cfg(not(loom))]
pub use config::{
    Config, ConfigBuilder, FlushMode, KeyInfo, Secret, Settings, ValueKind, CONFIG_TABLE, KEYS as CONFIG_KEYS,
};
pub use counter::{Counter, CounterConfig, DEFAULT_GC_AFTER, DEFAULT_MAX_TOPIC_LEN};
pub use cpu::{cpu_source, CpuSource};
pub use error::{Error, Result};
pub use handle::TopicHandle;
#[cfg(not(loom))]
pub use node::{Node, TopicCount};
#[cfg(not(loom))]
pub use stats::{ClusterStats, FlushDurations, FlushStats, PeerState, PeerStats, Stats, Traffic};
pub use watch::{Change, Watch};

/// The README's Rust examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// The most topics that can exist at once on one node.
pub const MAX_TOPICS: usize = segvec::MAX_TOPICS;

/// This crate's version, e.g. `"0.1.0"` (what `hc_version()` and the
/// bindings' `library_version` report).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
