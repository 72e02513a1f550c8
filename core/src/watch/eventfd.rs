//! [`EventFd`]: a Linux eventfd used as a level-triggered "changes are
//! pending" signal that `poll(2)`, asyncio, Go's netpoller or an Erlang
//! `enif_select` can wait on.
//!
//! The inbox keeps the fd's counter non-zero exactly while it has pending
//! entries: [`EventFd::set`] when the first entry is queued, [`EventFd::reset`]
//! when the consumer takes them, both under the inbox lock. So the fd polls
//! readable iff changes are pending (and, after the node closes, always).
//! This is the only unsafe code of the change feed: three syscalls on an fd
//! this type owns.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// An owned, non-blocking, close-on-exec eventfd.
#[derive(Debug)]
pub(crate) struct EventFd(RawFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; a negative result is an error.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EventFd(fd))
    }

    /// Makes the fd readable (idempotent: the counter only grows).
    pub(crate) fn set(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to the fd we own. It can
        // only fail with EAGAIN at a counter of u64::MAX - 1, which `reset`
        // keeps us far from (and which would leave the fd readable anyway).
        unsafe { libc::write(self.0, (&one as *const u64).cast(), 8) };
    }

    /// Makes the fd unreadable (reads the counter back to zero).
    pub(crate) fn reset(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from the fd we own; EAGAIN
        // (already zero) is the only expected failure and means the same.
        unsafe { libc::read(self.0, (&mut n as *mut u64).cast(), 8) };
    }

    /// Waits up to `timeout` for the fd to become readable; `true` if it is.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let ms = i32::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        let mut p = libc::pollfd { fd: self.0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, nfds 1; EINTR returns early, which the
        // caller treats like a timeout it re-checks against its deadline.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        r > 0 && p.revents & libc::POLLIN != 0
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: we own the fd and close it once.
        unsafe { libc::close(self.0) };
    }
}
