//! Waiting for a watch's changes *or* its `close()`: the watch's own fd and
//! a wake-up eventfd, polled together.
//!
//! The core's `Watch::next_batch` waits on the watch's fd alone, so a
//! thread blocked in it could not be woken by `close()` from another thread
//! before its timeout. The binding instead polls the watch's fd (readable
//! while changes are pending or once the node closed) together with a
//! [`Wake`] fd that `close()` makes readable for good, then takes what is
//! pending without waiting.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// An eventfd that, once [`Wake::set`], stays readable.
#[derive(Debug)]
pub(crate) struct Wake(OwnedFd);

impl Wake {
    pub(crate) fn new() -> io::Result<Wake> {
        // SAFETY: eventfd takes no pointers; a negative result is an error.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(Wake(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the fd readable (for good: nobody reads it).
    pub(crate) fn set(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an fd we own. It fails
        // only with EAGAIN at a counter near u64::MAX, readable anyway.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// How a [`wait`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Woken {
    /// One of the fds is readable, or the time is up.
    Ready,
    /// A signal interrupted the wait (Python may need to run its handler).
    Interrupted,
}

/// Waits up to `timeout` (`None`: for ever) for `watch_fd` or `wake` to
/// poll readable.
pub(crate) fn wait(watch_fd: RawFd, wake: &Wake, timeout: Option<Duration>) -> Woken {
    let ms = match timeout {
        None => -1,
        Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
    };
    let mut fds = [
        libc::pollfd { fd: watch_fd, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: wake.0.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: two valid pollfds in a live array, nfds 2; both fds stay open
    // while the caller holds the watch (see `watch.rs`).
    let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
        Woken::Interrupted
    } else {
        Woken::Ready
    }
}
