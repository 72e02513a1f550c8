//! Ranked locks: the lock order of the networked node, checked on every
//! acquisition in debug builds.
//!
//! | rank | lock                                     | may be held while taking |
//! |------|------------------------------------------|--------------------------|
//! | 1    | [`REGISTRY`]: the peer registry (`shared.rs`) | link locks, leaf locks |
//! | 2    | [`LINK`]: one link's `LinkState` (`link.rs`)  | leaf locks              |
//! | 3    | [`LEAF`]: wake-up, thread list, jitter   | nothing                  |
//!
//! The rule: a thread takes a ranked lock only while every ranked lock it
//! holds has a *lower* rank (so two links are never locked at once, and a
//! link holder never takes the registry). Every [`Ranked::lock`] checks it
//! in debug builds against a thread-local set of the ranks held, and panics
//! on a violation before it can deadlock; the cluster integration tests run
//! whole nodes in one process, so they check the order of every lock the
//! node takes. Release builds compile the check away.
//!
//! The remote view's locks (`view.rs`: a slot's data, then its shards) are
//! not ranked here: `view.rs` imports nothing that can reach a ranked lock,
//! so it is a leaf by construction and is called with any of them held; its
//! internal order is its own (and its loom model's) business.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::sync::{Condvar, Mutex, MutexGuard};

/// Rank of the peer registry.
pub(super) const REGISTRY: u8 = 1;
/// Rank of a link's state.
pub(super) const LINK: u8 = 2;
/// Rank of the locks under which nothing else is taken.
pub(super) const LEAF: u8 = 3;

/// A mutex of rank `R`. See the module docs.
#[derive(Debug, Default)]
pub(super) struct Ranked<T, const R: u8> {
    inner: Mutex<T>,
}

impl<T, const R: u8> Ranked<T, R> {
    pub(super) fn new(value: T) -> Self {
        Ranked { inner: Mutex::new(value) }
    }

    /// Locks, after checking (debug builds) that no lock of rank `R` or
    /// higher is held by this thread.
    pub(super) fn lock(&self) -> RankedGuard<'_, T, R> {
        held::acquire(R);
        RankedGuard { inner: self.inner.lock() }
    }
}

/// The guard of a [`Ranked`] lock.
#[derive(Debug)]
pub(super) struct RankedGuard<'a, T, const R: u8> {
    inner: MutexGuard<'a, T>,
}

impl<T, const R: u8> Drop for RankedGuard<'_, T, R> {
    fn drop(&mut self) {
        held::release(R);
    }
}

impl<T, const R: u8> Deref for RankedGuard<'_, T, R> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T, const R: u8> DerefMut for RankedGuard<'_, T, R> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

/// A condition variable for a [`Ranked`] lock.
#[derive(Debug, Default)]
pub(super) struct RankedCondvar(Condvar);

impl RankedCondvar {
    /// Waits for a notification or `timeout`, releasing the lock meanwhile.
    /// The lock's rank stays counted as held: the thread takes nothing else
    /// while it waits.
    pub(super) fn wait_for<T, const R: u8>(&self, guard: &mut RankedGuard<'_, T, R>, timeout: Duration) {
        self.0.wait_for(&mut guard.inner, timeout);
    }

    pub(super) fn notify_all(&self) {
        self.0.notify_all();
    }
}

#[cfg(debug_assertions)]
mod held {
    use std::cell::Cell;

    thread_local! {
        /// Bit `r` is set while this thread holds a lock of rank `r`.
        static HELD: Cell<u32> = const { Cell::new(0) };
    }

    pub(super) fn acquire(rank: u8) {
        HELD.with(|held| {
            let bit = 1u32 << rank;
            let now = held.get();
            assert!(
                now < bit,
                "lock order violated: taking a rank-{rank} lock while holding ranks {:?} (see cluster/lock.rs)",
                (0..32).filter(|r| now & (1 << r) != 0).collect::<Vec<u32>>()
            );
            held.set(now | bit);
        });
    }

    pub(super) fn release(rank: u8) {
        HELD.with(|held| held.set(held.get() & !(1u32 << rank)));
    }
}

#[cfg(not(debug_assertions))]
mod held {
    #[inline(always)]
    pub(super) fn acquire(_rank: u8) {}

    #[inline(always)]
    pub(super) fn release(_rank: u8) {}
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;

    #[test]
    fn the_documented_order_is_accepted() {
        let reg: Ranked<u32, REGISTRY> = Ranked::new(0);
        let links: [Ranked<u32, LINK>; 2] = [Ranked::new(1), Ranked::new(2)];
        let leaf: Ranked<(), LEAF> = Ranked::new(());
        let r = reg.lock();
        for l in &links {
            // One link at a time under the registry, a leaf under a link.
            let g = l.lock();
            let _leaf = leaf.lock();
            assert_eq!(*g + *r, *g);
        }
        drop(r);
        // Released ranks can be taken again, in any order.
        let _l = links[0].lock();
        drop(_l);
        let _r = reg.lock();
    }

    #[test]
    #[should_panic(expected = "lock order violated: taking a rank-1 lock while holding ranks [2]")]
    fn the_registry_under_a_link_panics() {
        let reg: Ranked<(), REGISTRY> = Ranked::new(());
        let link: Ranked<(), LINK> = Ranked::new(());
        let _l = link.lock();
        let _r = reg.lock();
    }

    #[test]
    #[should_panic(expected = "lock order violated: taking a rank-2 lock while holding ranks [2]")]
    fn two_links_at_once_panic() {
        let a: Ranked<(), LINK> = Ranked::new(());
        let b: Ranked<(), LINK> = Ranked::new(());
        let _a = a.lock();
        let _b = b.lock();
    }

    #[test]
    fn a_condvar_wait_keeps_the_rank_and_returns_the_lock() {
        let link: Ranked<u32, LINK> = Ranked::new(7);
        let cv = RankedCondvar::default();
        let mut g = link.lock();
        cv.wait_for(&mut g, Duration::from_millis(1));
        *g += 1;
        assert_eq!(*g, 8);
        drop(g);
        let reg: Ranked<(), REGISTRY> = Ranked::new(());
        let _r = reg.lock();
    }
}
