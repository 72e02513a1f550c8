//! The real primitives (see the table in the module docs of `sync`).

pub(crate) use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
pub(crate) use std::sync::Arc;

/// The seeded hasher for user-chosen keys (topic names, connection ids):
/// a random seed per instance, so users cannot pick colliding keys.
pub(crate) type RandomState = foldhash::fast::RandomState;

/// A mutex that does not poison: a panic while holding it (which the crate
/// never does deliberately) must not turn every later call into a panic.
pub(crate) type Mutex<T> = parking_lot::Mutex<T>;

/// The guard of a [`Mutex`] (named by the cluster's ranked locks).
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

/// A reader-writer lock that does not poison (as [`Mutex`]).
pub(crate) type RwLock<T> = parking_lot::RwLock<T>;

/// Condition variable paired with [`Mutex`].
pub(crate) type Condvar = parking_lot::Condvar;

/// A thread's handle, to unpark it (`wake.rs`).
pub(crate) use std::thread::Thread;

/// The calling thread's handle.
pub(crate) fn current_thread() -> Thread {
    std::thread::current()
}

/// Parks the calling thread until it is unparked or `deadline` passes (or
/// spuriously: callers re-check).
pub(crate) fn park_until(deadline: std::time::Instant) {
    std::thread::park_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
}

/// A no-op: the `SeqCst` accesses around it already carry the order (see
/// the module docs of `sync`).
#[inline(always)]
pub(crate) fn sc_order_point() {}

/// Spin-loop hint.
#[inline]
pub(crate) fn spin_hint() {
    std::hint::spin_loop();
}

/// Proof that the current thread is pinned: nothing retired after the pin
/// is freed until the guard is dropped.
pub(crate) type Guard = crossbeam_epoch::Guard;

/// Pins the current thread (crossbeam-epoch).
#[inline]
pub(crate) fn pin() -> Guard {
    crossbeam_epoch::pin()
}
