//! The one door to atomics, locks and epoch reclamation.
//!
//! No other module imports `std::sync::atomic`, `parking_lot` or
//! `crossbeam_epoch` directly. Under `--cfg loom` every primitive here is
//! replaced by loom's instrumented version, so the model tests in
//! `tests/loom.rs` explore the same code that ships (the tokio `loom` module
//! and crossbeam's `primitive` facade are the models for this file).
//!
//! Two things need care under loom:
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

#[cfg(not(loom))]
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::AtomicBool;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

/// The seeded hasher for user-chosen keys (topic names, connection ids):
/// a random seed per instance, so users cannot pick colliding keys. Under
/// loom the seed is fixed, because every execution of a model must replay
/// the same probe sequences and shard choices.
#[cfg(not(loom))]
pub(crate) type RandomState = foldhash::fast::RandomState;
#[cfg(loom)]
pub(crate) type RandomState = foldhash::fast::FixedState;

/// Condition variable paired with [`Mutex`] (not modelled under loom: only
/// the threads of the networked node use it).
#[cfg(not(loom))]
pub(crate) type Condvar = parking_lot::Condvar;

/// A mutex that does not poison: a panic while holding it (which the crate
/// never does deliberately) must not turn every later call into a panic.
#[cfg(not(loom))]
pub(crate) type Mutex<T> = parking_lot::Mutex<T>;
/// The guard of a [`Mutex`] (named by the cluster's ranked locks).
#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(loom::sync::Mutex::new(value))
    }
    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// See the module doc: a no-op outside loom, a `SeqCst` fence inside it.
#[inline(always)]
pub(crate) fn sc_order_point() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// Spin-loop hint (yields the model thread under loom so spins terminate).
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

#[cfg(all(loom, test))]
pub(crate) use epoch::synchronize;
pub(crate) use epoch::{pin, Guard};

#[cfg(not(loom))]
mod epoch {
    /// Proof that the current thread is pinned: nothing retired after the pin
    /// is freed until the guard is dropped.
    pub(crate) type Guard = crossbeam_epoch::Guard;

    #[inline]
    pub(crate) fn pin() -> Guard {
        crossbeam_epoch::pin()
    }
}

#[cfg(loom)]
mod epoch {
    use loom::sync::{RwLock, RwLockReadGuard};

    loom::lazy_static! {
        static ref GRACE: RwLock<()> = RwLock::new(());
        static ref DEFERRED: loom::sync::Mutex<Vec<Box<dyn FnOnce() + Send>>> =
            loom::sync::Mutex::new(Vec::new());
    }

    /// Loom stand-in for `crossbeam_epoch::Guard`: a shared hold on the grace
    /// lock. Deferred work runs only in [`synchronize`], after every guard
    /// that existed when it was deferred has been dropped.
    #[derive(Debug)]
    pub(crate) struct Guard {
        _read: RwLockReadGuard<'static, ()>,
    }

    pub(crate) fn pin() -> Guard {
        Guard { _read: GRACE.read().unwrap() }
    }

    impl Guard {
        pub(crate) fn defer<F: FnOnce() + Send + 'static>(&self, f: F) {
            DEFERRED.lock().unwrap().push(Box::new(f));
        }

        /// Loom has no global collector; `flush` is where the real guard
        /// nudges it, so here it does nothing.
        pub(crate) fn flush(&self) {}
    }

    /// Waits for a grace period (every current guard dropped), then runs the
    /// work deferred so far. The caller must not hold a guard.
    #[cfg(test)]
    pub(crate) fn synchronize() {
        drop(GRACE.write().unwrap());
        let work = std::mem::take(&mut *DEFERRED.lock().unwrap());
        for f in work {
            f();
        }
    }
}
