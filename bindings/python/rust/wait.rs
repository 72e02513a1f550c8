//! Waiting for a watch's changes *or* its `close()`: the watch's own fd and
//! a wake-up socket, polled together.
//!
//! The core's `Watch::next_batch` waits on the watch's fd alone, so a
//! thread blocked in it could not be woken by `close()` from another thread
//! before its timeout. The binding instead polls the watch's fd (readable
//! while changes are pending or once the node closed) together with a
//! [`Wake`] socket that `close()` makes readable for good, then takes what is
//! pending without waiting.

use std::io;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A socket pair whose reading end, once [`Wake::set`], stays readable
/// (nobody reads it). Plain std: no fd of our own to open or close.
#[derive(Debug)]
pub(crate) struct Wake {
    rx: UnixStream,
    tx: UnixStream,
}

impl Wake {
    pub(crate) fn new() -> io::Result<Wake> {
        let (rx, tx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        Ok(Wake { rx, tx })
    }

    /// Makes the reading end readable, for good. Never blocks: once the
    /// socket buffer is full (many calls), it is readable anyway.
    pub(crate) fn set(&self) {
        let _ = (&self.tx).write(&[1]);
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
        libc::pollfd { fd: wake.rx.as_raw_fd(), events: libc::POLLIN, revents: 0 },
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
