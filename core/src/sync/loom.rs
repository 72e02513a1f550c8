//! loom's instrumented primitives and loom-visible stand-ins (see the table
//! in the module docs of `sync`).

pub(crate) use loom::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
pub(crate) use loom::sync::Arc;
use loom::sync::{RwLockReadGuard, RwLockWriteGuard};

/// Fixed seed: every execution of a model must replay the same probe
/// sequences and shard choices.
pub(crate) type RandomState = foldhash::fast::FixedState;

/// loom's mutex, with poisoning ignored (as parking_lot's).
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(loom::sync::Mutex::new(value))
    }
    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// loom's reader-writer lock, with poisoning ignored (as parking_lot's).
#[derive(Debug, Default)]
pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

impl<T> RwLock<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(loom::sync::RwLock::new(value))
    }
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A loom thread's handle, to unpark it (`wake.rs`).
pub(crate) use loom::thread::Thread;

/// The calling model thread's handle.
#[allow(dead_code)] // only the models call it
pub(crate) fn current_thread() -> Thread {
    loom::thread::current()
}

/// Parks until unparked: loom has no clock, so the deadline is ignored and a
/// lost wake-up shows as a deadlock, which loom reports.
#[allow(dead_code)] // only the models call it
pub(crate) fn park_until(_deadline: std::time::Instant) {
    loom::thread::park();
}

/// A `SeqCst` fence, which loom models (see the module docs of `sync`).
#[inline(always)]
pub(crate) fn sc_order_point() {
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// Yields the model thread, so that spins terminate.
#[inline]
pub(crate) fn spin_hint() {
    loom::thread::yield_now();
}

/// Each model thread's index, in the order it first asks: a function of the
/// schedule, so executions replay (the stripe a thread writes is chosen by
/// it under loom, see `cpu.rs`).
pub(crate) fn model_thread_index() -> usize {
    loom::lazy_static! {
        static ref NEXT: AtomicUsize = AtomicUsize::new(0);
    }
    loom::thread_local! {
        static ID: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

loom::lazy_static! {
    static ref GRACE: loom::sync::RwLock<()> = loom::sync::RwLock::new(());
    static ref DEFERRED: loom::sync::Mutex<Vec<Box<dyn FnOnce() + Send>>> =
        loom::sync::Mutex::new(Vec::new());
}

/// Loom stand-in for `crossbeam_epoch::Guard`: a shared hold on the grace
/// lock. Deferred work runs only in [`synchronize`], after every guard that
/// existed when it was deferred has been dropped.
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

    /// Loom has no global collector; `flush` is where the real guard nudges
    /// it, so here it does nothing.
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
