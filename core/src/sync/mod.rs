//! The one door to atomics, locks, `Arc` and epoch reclamation, chosen once
//! here: ordinary builds get `sync/std.rs` (std atomics, parking_lot locks,
//! crossbeam-epoch), `--cfg loom` builds get `sync/loom.rs` (loom's
//! instrumented versions and loom-visible stand-ins), under the same names.
//! This is the shape of tokio's `src/loom/` and crossbeam's `primitive`
//! facade.
//!
//! No other module imports `std::sync`, `parking_lot`, `crossbeam_epoch` or
//! `loom` directly, cluster included, so the models in `loom_models.rs`
//! explore the same code that ships.
//!
//! | name | std build | loom build |
//! |------|-----------|------------|
//! | `Atomic*`, `Ordering`, `Arc` | `std::sync` | `loom::sync` |
//! | `Mutex`, `RwLock` (no poisoning) | `parking_lot` | `loom::sync`, poison ignored |
//! | `MutexGuard` | `parking_lot` | none: only the cluster's ranked locks name it |
//! | `Condvar` | `parking_lot` | none: only the networked node's threads wait, and no model runs them |
//! | `Thread`, `current_thread`, `park_until` | `std::thread` (`park_timeout`) | `loom::thread` (`park`, no deadline: a lost wake-up is a deadlock loom reports) |
//! | `pin`, `Guard` | `crossbeam_epoch` | a shared hold on a grace lock (below) |
//! | `synchronize` | none | waits for a grace period, runs deferred work (models only) |
//! | `RandomState` | seeded per instance | fixed seed (executions must replay) |
//! | `sc_order_point` | no-op | `SeqCst` fence (below) |
//! | `spin_hint` | `spin_loop` | `yield_now` |
//! | `model_thread_index` | none | each model thread's index, in spawn order |
//! | `SharedBytes`, `OnceLock` | `std::sync` | `std::sync` too (below) |
//!
//! Things that need care under loom:
//!
//! * **SeqCst accesses.** loom models `SeqCst` loads, stores and RMWs as
//!   `AcqRel`: it does not build their single total order
//!   (tokio-rs/loom#180). The dirty-bit protocol relies on that order (a
//!   store-buffering pattern between a writer and the flusher). Code that
//!   relies on it calls [`sc_order_point`] between the two accesses: a no-op in
//!   real builds, where the `SeqCst` accesses already carry the order (on
//!   x86-64 the RMW is a `lock`-prefixed instruction, a full barrier), and a
//!   `SeqCst` fence under loom, which loom does model and which gives the same
//!   guarantee for this pattern.
//! * **Epoch reclamation.** loom cannot see inside crossbeam-epoch. Under loom,
//!   [`pin`] takes a shared lock that a grace period (`synchronize`) must
//!   take exclusively: the same contract ("everything pinned before the grace
//!   period has unpinned after it"), made visible to the model.
//! * **Plain shared data.** [`SharedBytes`] (topic names) and [`OnceLock`]
//!   (process-wide settings read once) stay `std` under loom: no protocol a
//!   model checks depends on their reference counts or initialisation, and
//!   map keys need the `Hash`/`Eq`/`Borrow` that loom's `Arc` lacks.

#[cfg(not(loom))]
mod std;
#[cfg(not(loom))]
pub(crate) use self::std::*;

#[cfg(loom)]
mod loom;
#[cfg(loom)]
pub(crate) use self::loom::*;

/// Shared, immutable bytes: topic names, shared (never copied) between the
/// table, connections, outboxes and the view. `std` in every build (see the
/// module docs).
pub(crate) type SharedBytes = ::std::sync::Arc<[u8]>;

/// One-time initialisation of process-wide values. `std` in every build.
pub(crate) use ::std::sync::OnceLock;
