//! `hc_status`: what every fallible export returns.

/// What a call did. `HC_OK` (0) is success; every other value is a failure
/// whose message `hc_last_error()` returns on the same thread.
///
/// The numeric values are part of the ABI and never change; new statuses are
/// only ever added at the end.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum hc_status {
    /// Success.
    HC_OK = 0,
    /// A required pointer argument was NULL.
    HC_ERR_NULL_ARG = 1,
    /// An argument other than a topic or a config entry is invalid (for
    /// example an address that is not `host:port`), or the node has no room
    /// for another topic.
    HC_ERR_INVALID_ARG = 2,
    /// A topic is empty or longer than the node's `max_topic_len`.
    HC_ERR_INVALID_TOPIC = 3,
    /// A configuration key is unknown, a value is invalid (including a key or
    /// value that is not UTF-8), or the configuration as a whole cannot start
    /// a node.
    HC_ERR_CONFIG = 4,
    /// A socket or other operating-system call failed.
    HC_ERR_IO = 5,
    /// An output buffer is too small; `*len_out` holds the length needed,
    /// not counting the terminating NUL.
    HC_ERR_BUFFER_TOO_SMALL = 6,
    /// The node has been closed.
    HC_ERR_CLOSED = 7,
    /// A bug inside the library was caught before it could unwind into the
    /// caller. The node may still be used, but please report the message.
    HC_ERR_PANIC = 8,
}

impl hc_status {
    /// Every status, in numeric order.
    pub(crate) const ALL: [hc_status; 9] = [
        hc_status::HC_OK,
        hc_status::HC_ERR_NULL_ARG,
        hc_status::HC_ERR_INVALID_ARG,
        hc_status::HC_ERR_INVALID_TOPIC,
        hc_status::HC_ERR_CONFIG,
        hc_status::HC_ERR_IO,
        hc_status::HC_ERR_BUFFER_TOO_SMALL,
        hc_status::HC_ERR_CLOSED,
        hc_status::HC_ERR_PANIC,
    ];

    /// The status with this numeric value, if there is one.
    pub fn from_raw(raw: u32) -> Option<hc_status> {
        hc_status::ALL.get(usize::try_from(raw).ok()?).copied()
    }

    /// A short, static, NUL-terminated description.
    pub fn describe(self) -> &'static std::ffi::CStr {
        match self {
            hc_status::HC_OK => c"HC_OK: success",
            hc_status::HC_ERR_NULL_ARG => c"HC_ERR_NULL_ARG: a required pointer argument was NULL",
            hc_status::HC_ERR_INVALID_ARG => c"HC_ERR_INVALID_ARG: invalid argument",
            hc_status::HC_ERR_INVALID_TOPIC => c"HC_ERR_INVALID_TOPIC: topic is empty or longer than max_topic_len",
            hc_status::HC_ERR_CONFIG => c"HC_ERR_CONFIG: invalid configuration",
            hc_status::HC_ERR_IO => c"HC_ERR_IO: I/O error",
            hc_status::HC_ERR_BUFFER_TOO_SMALL => c"HC_ERR_BUFFER_TOO_SMALL: output buffer too small",
            hc_status::HC_ERR_CLOSED => c"HC_ERR_CLOSED: the node is closed",
            hc_status::HC_ERR_PANIC => c"HC_ERR_PANIC: internal error (a bug in headcount)",
        }
    }
}

/// An `hc_status` exactly as a C caller passed it.
///
/// C lets a caller pass any `unsigned int` where an enum is expected
/// (`hc_status_str(42)` compiles), but a Rust enum holding a value outside
/// its variants is undefined behaviour. So the one export that takes a
/// status takes it as this transparent `u32` (the same size and calling
/// convention as the C enum) and checks it with [`hc_status::from_raw`].
/// `ffi/cbindgen.toml` renames it to `hc_status` in the header and does not
/// emit it, so the C prototype reads `hc_status_str(hc_status status)`.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawStatus(pub u32);

const _: () = assert!(std::mem::size_of::<hc_status>() == std::mem::size_of::<RawStatus>());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_values_are_stable() {
        for (i, s) in hc_status::ALL.iter().enumerate() {
            assert_eq!(*s as u32, i as u32);
            assert_eq!(hc_status::from_raw(i as u32), Some(*s));
        }
        assert_eq!(hc_status::from_raw(9), None);
        assert_eq!(hc_status::from_raw(u32::MAX), None);
    }

    #[test]
    fn descriptions_start_with_the_name() {
        for s in hc_status::ALL {
            let d = s.describe().to_str().unwrap();
            assert!(d.starts_with(&format!("{s:?}: ")), "{d}");
        }
    }
}
