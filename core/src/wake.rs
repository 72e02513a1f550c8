//! Waking a sleeping flusher on the first change: what lets the adaptive
//! flush policy (`flush.rs`) ship a change after a quiet period at once
//! instead of at its next deadline.
//!
//! **Protocol** (store buffering, the same pattern as the dirty bitmap's):
//!
//! | side | steps |
//! |------|-------|
//! | flusher ([`Wake::sleep_until`]) | store `sleeping = true`; check for dirty bits; park only if there are none; store `sleeping = false` |
//! | writer ([`Wake::notify`], from `Dirty::mark` after it set a dirty bit) | load `sleeping`; if set, swap it to `false` and unpark the flusher |
//!
//! **Invariant (the loom model `a_change_marked_while_the_flusher_sleeps_is_flushed`):
//! no lost wake-up: a change marked while the flusher goes to sleep is
//! flushed without waiting for the deadline.** The writer's bit set and its
//! load of `sleeping`, and the flusher's store of `sleeping` and its check
//! of the bits, are all `SeqCst`, so they fall in one total order: either
//! the flusher's check sees the bit (and does not park), or the writer's
//! load comes after the flusher's store and sees `sleeping` (and unparks
//! it). A writer that finds its bit already set notifies nobody: whoever set
//! the bit notifies, after it. An unpark that comes before the park leaves
//! the thread's token, so the park returns at once.
//!
//! **Cost.** A write that finds its dirty bit already set (a busy topic)
//! does nothing here; one that sets it does one load of `sleeping` (a plain
//! `mov` on x86-64), and only when the flusher is asleep the swap and
//! unpark. In `flush_mode = fixed` the flusher never sets `sleeping`.

use std::time::Instant;

use crate::sync::{current_thread, park_until, sc_order_point, AtomicBool, Mutex, Ordering, Thread};

/// The flusher's sleep, and the writers' way to end it (see the module docs).
/// The flusher is not built under loom; its model drives these directly.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    sleeping: AtomicBool,
    /// The thread that sleeps (the flusher), once it has registered.
    sleeper: Mutex<Option<Thread>>,
}

#[cfg_attr(loom, allow(dead_code))]
impl Wake {
    /// Makes the calling thread the one [`Wake::sleep_until`] parks and
    /// [`Wake::notify`] unparks.
    pub(crate) fn register(&self) {
        *self.sleeper.lock() = Some(current_thread());
    }

    /// A change was made visible (its dirty bit set): wakes the sleeper if
    /// it sleeps waiting for one.
    #[inline]
    pub(crate) fn notify(&self) {
        sc_order_point();
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            self.wake_up();
        }
    }

    /// Unparks the sleeper, whatever it waits for (a stop request, say).
    #[cold]
    pub(crate) fn wake_up(&self) {
        if let Some(t) = &*self.sleeper.lock() {
            t.unpark();
        }
    }

    /// Parks the calling (registered) thread until `deadline`, a
    /// [`Wake::notify`] or a [`Wake::wake_up`], unless `changed()`,
    /// checked once armed, says a change is already there. May return
    /// early: callers re-check what they wait for.
    pub(crate) fn sleep_until(&self, deadline: Instant, changed: impl FnOnce() -> bool) {
        self.sleeping.store(true, Ordering::SeqCst);
        sc_order_point();
        if !changed() {
            park_until(deadline);
        }
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Parks the calling (registered) thread until `deadline` or a
    /// [`Wake::wake_up`], not armed: changes do not end it. May return early.
    pub(crate) fn rest_until(&self, deadline: Instant) {
        park_until(deadline);
    }

    /// Arms without parking, for tests that check who notifies when.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn arm(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
    }

    /// Whether armed and not yet notified (tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_armed(&self) -> bool {
        self.sleeping.load(Ordering::SeqCst)
    }

    /// A broken [`Wake::sleep_until`], for the loom model's check that it
    /// catches a broken ordering: it checks for changes before arming, so a
    /// change marked in between wakes nobody.
    #[cfg(all(loom, test))]
    pub(crate) fn sleep_until_checking_first(&self, deadline: Instant, changed: impl FnOnce() -> bool) {
        if changed() {
            return;
        }
        self.sleeping.store(true, Ordering::SeqCst);
        park_until(deadline);
        self.sleeping.store(false, Ordering::SeqCst);
    }
}
