//! `hc_set_log_callback`: the library's log lines to a C function instead
//! of stderr, through the core's sink (`headcount::logging::set_sink`).

use crate::boundary::guard;
use crate::status::hc_status;
use headcount::logging::{self, Level, Record};
use std::ffi::{c_char, c_void, CString};

/// Severity of a log line given to an `hc_log_callback`. The numeric values
/// are part of the ABI: a smaller number is more severe.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum hc_log_level {
    /// Something failed that an operator should look at.
    HC_LOG_ERROR = 1,
    /// Something unexpected that the node handled (a refused peer, a bad frame).
    HC_LOG_WARN = 2,
    /// Lifecycle: listening, a peer up, down or left.
    HC_LOG_INFO = 3,
    /// Detail: failed dials, duplicate connections.
    HC_LOG_DEBUG = 4,
}

impl From<Level> for hc_log_level {
    fn from(level: Level) -> Self {
        match level {
            Level::Error => hc_log_level::HC_LOG_ERROR,
            Level::Warn => hc_log_level::HC_LOG_WARN,
            Level::Info => hc_log_level::HC_LOG_INFO,
            // `Level` is non_exhaustive: a level added later is debug here.
            _ => hc_log_level::HC_LOG_DEBUG,
        }
    }
}

/// A function that receives the library's log lines: `user_data` as given
/// to `hc_set_log_callback`, the level, the target (the module that logged,
/// e.g. `"headcount::cluster::registry"`), the node's name and the message.
/// The three strings are NUL-terminated UTF-8, valid only during the call
/// (an interior NUL is written `\0`).
pub type hc_log_callback = Option<
    extern "C" fn(
        user_data: *mut c_void,
        level: hc_log_level,
        target: *const c_char,
        node: *const c_char,
        message: *const c_char,
    ),
>;

/// The callback and its `user_data`, which the caller of
/// `hc_set_log_callback` promised may be used from any thread.
struct Callback {
    f: extern "C" fn(*mut c_void, hc_log_level, *const c_char, *const c_char, *const c_char),
    user_data: *mut c_void,
}

// SAFETY: `user_data` is only handed back to the caller's callback, and
// `hc_set_log_callback`'s contract makes the caller promise that the
// callback may be called with it from any thread, concurrently.
unsafe impl Send for Callback {}
// SAFETY: as for `Send`: shared use is calls of the callback, which the
// caller promised are safe from many threads at once.
unsafe impl Sync for Callback {}

impl Callback {
    fn call(&self, record: &Record<'_>) {
        let c = |s: &str| CString::new(s.replace('\0', "\\0")).unwrap_or_default();
        let (target, node, message) = (c(record.target), c(record.node), c(record.message));
        (self.f)(self.user_data, record.level.into(), target.as_ptr(), node.as_ptr(), message.as_ptr());
    }
}

/// Sends the library's log lines, every node's, to `callback` instead of
/// stderr; `NULL` sends them back to stderr.
///
/// `callback` is called on the thread that logs: any of the library's
/// threads (and the caller's, inside `hc_node_start` and `hc_node_free`),
/// possibly several at once. So it must be thread-safe, return quickly, and
/// call no `hc_` function. Every level reaches it unless the
/// `HEADCOUNT_LOG` environment variable is set (`off`, `error`, `warn`,
/// `info`, `debug`), in which case only the lines it keeps do; the callback
/// does its own filtering.
///
/// When this returns, the previous callback is not running and will not be
/// called again, so its `user_data` may be freed. Never fails: returns
/// `HC_OK`.
#[no_mangle]
pub extern "C" fn hc_set_log_callback(callback: hc_log_callback, user_data: *mut c_void) -> hc_status {
    guard("hc_set_log_callback", || {
        let sink = callback.map(|f| {
            let cb = Callback { f, user_data };
            Box::new(move |r: &Record<'_>| cb.call(r)) as logging::Sink
        });
        logging::set_sink(sink);
        Ok(())
    })
}
