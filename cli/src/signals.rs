//! The signals on which `headcount node` and `headcount serve` leave the
//! cluster gracefully (peers are told at once) and exit 0. They are caught
//! with `signal-hook`'s iterator, which turns them into ordinary values on
//! an ordinary thread (no code of ours runs in a signal handler).
//!
//! SIGHUP is among them: these commands have nothing to reload, and dying
//! on a hang-up would leave peers to time the node out.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// SIGINT, SIGTERM and SIGHUP.
pub(crate) const LEAVE_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// `SIGTERM` for 15, for a log line.
pub(crate) fn signal_name(signal: i32) -> String {
    signal_hook::low_level::signal_name(signal).map_or_else(|| format!("signal {signal}"), str::to_owned)
}
