//! Which side of a `fork()` this process is on.
//!
//! A node's background threads do not survive `fork()`, so a child must
//! neither use a node it inherited nor close it (closing joins threads that
//! are not there). A `pthread_atfork` child handler bumps a generation
//! number; a node remembers the generation it started in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The current generation: how many `fork()`s separate this process from
/// the one that imported the module.
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// Registers the child handler (once per process).
pub(crate) fn watch() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `in_child` is async-signal-safe (one atomic add), as a
        // handler run in the child of a multi-threaded fork must be.
        // pthread_atfork fails only on ENOMEM, in which case forked children
        // are not detected (and nothing else changes).
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
}
