//! Log lines: one record shape (time, level, target, node, message), one
//! filter (`HEADCOUNT_LOG`), and three places a line can go.
//!
//! | where | when | filtered by |
//! |---|---|---|
//! | the **sink** ([`set_sink`]) | one is set: the C ABI's `hc_set_log_callback`, the Python binding's bridge to `logging`, a Rust application | `HEADCOUNT_LOG` when set, else nothing (every level reaches the sink, which filters) |
//! | the **`log` crate**'s logger, target = the module (`headcount::cluster::registry`, ...), message `[<node>] <message>` | no sink, and the application installed a `log` logger (env_logger, ...) | `HEADCOUNT_LOG` when set, and the logger |
//! | **stderr** (never stdout), in the node's `log_format` ([`format::line`]) | otherwise (the default) | `HEADCOUNT_LOG`, default `warn` |
//!
//! `HEADCOUNT_LOG` is read once per process: `off`, `error`, `warn`, `info`,
//! `debug`. Logging is rare (connections, peers, errors), never on the
//! counting path, so a line may allocate and take the sink's lock.
//!
//! The sink is called on the thread that logs: any of a node's threads
//! (listener, dialer, readers, writers, flusher, metrics), often several at
//! once. It is called under a shared lock, which is what lets [`set_sink`]
//! promise that once it returns the previous sink is neither running nor
//! called again (so a C caller may free its `user_data`); the price is that a
//! sink must not call [`set_sink`] itself.

pub mod format;

use crate::sync::{OnceLock, RwLock};
use std::io::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::SystemTime;

pub use format::LogFormat;

/// Severity of a log line; `Error` is the most severe, and a level is
/// "at most" another when it is as severe or more (`Error < Debug`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Level {
    /// Something failed that an operator should look at.
    Error = 1,
    /// Something unexpected that the node handled (a refused peer, a bad frame).
    Warn = 2,
    /// Lifecycle: listening, a peer up, down or left.
    Info = 3,
    /// Detail: dial attempts, duplicate connections.
    Debug = 4,
}

/// One log line, as a sink receives it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Record<'a> {
    /// How severe.
    pub level: Level,
    /// The module that logged, e.g. `headcount::cluster::registry`.
    pub target: &'a str,
    /// The name of the node it is about (`node_name`).
    pub node: &'a str,
    /// The message (may hold peers' names and addresses; never a secret).
    pub message: &'a str,
}

/// Where a process's log lines go instead of stderr; see [`set_sink`].
pub type Sink = Box<dyn Fn(&Record<'_>) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Sends every log line of the process (every node's) to `sink`, or back to
/// the default (the `log` crate's logger if one is installed, else stderr)
/// with `None`. When this returns, the previous sink is not running and will
/// not be called again; it is dropped. `sink` is called from any node
/// thread, concurrently; it must return soon, and must not call `set_sink`
/// (that would wait for itself). A panic in it is caught and the line lost.
///
/// ```
/// use headcount::logging::{set_sink, Level, Record};
/// use std::sync::{Arc, Mutex};
///
/// let lines = Arc::new(Mutex::new(Vec::new()));
/// let keep = lines.clone();
/// set_sink(Some(Box::new(move |r: &Record<'_>| {
///     keep.lock().unwrap().push((r.level, r.target.to_owned(), r.node.to_owned(), r.message.to_owned()));
/// })));
/// let cfg = headcount::Config::builder().node_name("a").listen("127.0.0.1:0").secret("s").build()?;
/// let node = headcount::Node::start(&cfg)?;
/// set_sink(None); // from here on, stderr again
/// if std::env::var_os("HEADCOUNT_LOG").is_none() {
///     let lines = lines.lock().unwrap();
///     assert!(lines.iter().any(|(level, target, node, message)| *level == Level::Info
///         && target == "headcount::cluster::runtime"
///         && node == "a"
///         && message.contains("listening on 127.0.0.1:")));
/// }
/// # drop(node);
/// # Ok::<(), headcount::Error>(())
/// ```
pub fn set_sink(sink: Option<Sink>) {
    let old = std::mem::replace(&mut *SINK.write(), sink);
    drop(old);
}

/// `HEADCOUNT_LOG`: `None` when unset, `Some(None)` for `off`.
fn env_level() -> Option<Option<Level>> {
    static LEVEL: OnceLock<Option<Option<Level>>> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let value = std::env::var("HEADCOUNT_LOG").ok()?;
        Some(parse_level(&value))
    })
}

/// A `HEADCOUNT_LOG` value: the most verbose level written, `None` for
/// `off`. Anything unknown means the default, `warn`.
fn parse_level(value: &str) -> Option<Level> {
    match value.trim().to_ascii_lowercase().as_str() {
        "off" | "none" | "0" => None,
        "error" => Some(Level::Error),
        "info" => Some(Level::Info),
        "debug" | "trace" => Some(Level::Debug),
        _ => Some(Level::Warn),
    }
}

/// Whether the application installed a `log` logger.
fn facade() -> bool {
    ::log::max_level() != ::log::LevelFilter::Off
}

/// Whether lines at `level` are written anywhere (checked before a line is
/// formatted).
pub fn enabled(level: Level) -> bool {
    let max = match env_level() {
        Some(max) => max,
        None if SINK.read_recursive().is_some() || facade() => Some(Level::Debug),
        None => Some(Level::Warn),
    };
    max.is_some_and(|max| level <= max)
}

/// The log lines of one node: its name, and the format of its stderr lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLog {
    node: String,
    format: LogFormat,
}

impl NodeLog {
    /// Lines about node `node`, written to stderr in `format` when no sink or
    /// `log` logger takes them.
    pub fn new(node: impl Into<String>, format: LogFormat) -> Self {
        NodeLog { node: node.into(), format }
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Writes one line from module `target` (use `module_path!()`), if
    /// `level` is [`enabled`].
    pub fn write(&self, level: Level, target: &str, message: std::fmt::Arguments<'_>) {
        if !enabled(level) {
            return;
        }
        let message = message.to_string();
        let record = Record { level, target, node: &self.node, message: &message };
        {
            // Recursive: a sink whose work logs again (a Python handler
            // calling into a node) must not wait behind a queued set_sink.
            let sink = SINK.read_recursive();
            if let Some(sink) = sink.as_ref() {
                // A panicking sink loses its line, not the node's thread.
                let _ = catch_unwind(AssertUnwindSafe(|| sink(&record)));
                return;
            }
        }
        if facade() {
            ::log::log!(target: target, to_log(level), "[{}] {message}", self.node);
            return;
        }
        let line = format::line(self.format, SystemTime::now(), &record);
        // One write on a locked handle keeps lines whole; a failed write to
        // stderr is ignored (nowhere left to report it).
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

fn to_log(level: Level) -> ::log::Level {
    match level {
        Level::Error => ::log::Level::Error,
        Level::Warn => ::log::Level::Warn,
        Level::Info => ::log::Level::Info,
        Level::Debug => ::log::Level::Debug,
    }
}

/// `log!(Level::Warn, &node_log, "format {}", args)`: one line from the
/// calling module, formatted only if its level is enabled.
macro_rules! log {
    ($level:expr, $log:expr, $($arg:tt)+) => {
        if $crate::logging::enabled($level) {
            $crate::logging::NodeLog::write($log, $level, module_path!(), format_args!($($arg)+));
        }
    };
}
pub(crate) use log;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headcount_log_values() {
        assert_eq!(parse_level("off"), None);
        assert_eq!(parse_level(" ERROR "), Some(Level::Error));
        assert_eq!(parse_level("info"), Some(Level::Info));
        assert_eq!(parse_level("trace"), Some(Level::Debug));
        assert_eq!(parse_level("loud"), Some(Level::Warn));
        assert!(Level::Error < Level::Warn && Level::Info < Level::Debug);
    }
}
