//! A global allocator that counts, per thread, the bytes live and the peak,
//! so a target can check how much one call allocated.
//!
//! Per thread, because the replay test runs under libtest, whose other
//! threads allocate too. A block freed on another thread than the one that
//! allocated it lowers that thread's figure; the peak above a baseline taken
//! on the measuring thread still bounds what that thread allocated.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations on top of [`System`]. Install it with
/// `#[global_allocator] static A: CountingAlloc = CountingAlloc;`.
#[derive(Debug)]
pub struct CountingAlloc;

thread_local! {
    // Const-initialised `Cell`s of `Copy` types: no destructor to register,
    // so touching them never allocates (which an allocator must not do).
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn grow(n: usize) {
    // `try_with`: during thread teardown the slots may be gone; not counting
    // then is harmless.
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(n as i64);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

fn shrink(n: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().wrapping_sub(n as i64)));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and only updates thread-local counters besides.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as the new block appearing before the old one goes,
            // which is the worst case a realloc can cost.
            grow(new_size);
            shrink(layout.size());
        }
        p
    }
}

/// Runs `f` and returns its result with the most bytes that were live at
/// once during it, above those live when it started (on this thread).
///
/// Panics if [`CountingAlloc`] is not the global allocator, so a check that
/// relies on it can never pass vacuously.
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    assert!(installed(), "CountingAlloc is not the global allocator of this binary");
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    let peak = PEAK.with(Cell::get);
    (r, peak.saturating_sub(base).max(0) as usize)
}

/// Whether allocations are being counted (i.e. [`CountingAlloc`] is installed).
pub fn installed() -> bool {
    let before = LIVE.with(Cell::get);
    let probe = std::hint::black_box(vec![0u8; 64]);
    let during = LIVE.with(Cell::get);
    drop(probe);
    during.wrapping_sub(before) >= 64
}
