//! A tiny logging facade: leveled lines to the `log` crate's logger when the
//! application installed one, else to stderr (never stdout), each
//! `<UTC time, ms> headcount <LEVEL> [<node>] <message>` (the CLI writes its
//! own lines in the same format).
//!
//! Where a line goes:
//!
//! | a `log` logger is installed | line goes to | filtered by |
//! |---|---|---|
//! | yes (`log::max_level()` is not `Off`: env_logger, the Python binding's bridge to `logging`, ...) | that logger, target `headcount` | the logger, and `HEADCOUNT_LOG` when set |
//! | no (the default, and always from C, Go and Erlang) | stderr, `<time> headcount LEVEL [node] message` | `HEADCOUNT_LOG` (default `warn`) |
//!
//! `HEADCOUNT_LOG` is read once: `off`, `error`, `warn`, `info`, `debug`.
//! Embedding runtimes that own stderr can set `HEADCOUNT_LOG=off`.

use crate::sync::OnceLock;
use std::io::Write;

/// The `log` target of every line.
const TARGET: &str = "headcount";

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    fn to_log(self) -> ::log::Level {
        match self {
            Level::Error => ::log::Level::Error,
            Level::Warn => ::log::Level::Warn,
            Level::Info => ::log::Level::Info,
            Level::Debug => ::log::Level::Debug,
        }
    }
}

/// `HEADCOUNT_LOG` as the most verbose level written, if it is set.
fn env_level() -> Option<u8> {
    static LEVEL: OnceLock<Option<u8>> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let value = std::env::var("HEADCOUNT_LOG").ok()?.to_ascii_lowercase();
        Some(match value.as_str() {
            "off" | "none" | "0" => 0,
            "error" => 1,
            "info" => 3,
            "debug" | "trace" => 4,
            _ => 2,
        })
    })
}

/// Whether the application installed a `log` logger.
fn facade() -> bool {
    ::log::max_level() != ::log::LevelFilter::Off
}

/// Whether lines at `level` are written.
pub(crate) fn enabled(level: Level) -> bool {
    if facade() {
        env_level().is_none_or(|max| level as u8 <= max) && ::log::log_enabled!(target: TARGET, level.to_log())
    } else {
        level as u8 <= env_level().unwrap_or(Level::Warn as u8)
    }
}

/// Writes one line (use the `log!` macro).
pub(crate) fn write(level: Level, node: &str, args: std::fmt::Arguments<'_>) {
    if facade() {
        ::log::log!(target: TARGET, level.to_log(), "[{node}] {args}");
        return;
    }
    let tag = match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
    };
    // One write_fmt on a locked handle keeps lines from interleaving; a
    // failed write to stderr is ignored (nowhere left to report it).
    let at = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    let _ = writeln!(std::io::stderr().lock(), "{at} headcount {tag} [{node}] {args}");
}

/// `log!(Level::Warn, node_name, "format {}", args)`.
macro_rules! log {
    ($level:expr, $node:expr, $($arg:tt)+) => {
        if $crate::cluster::log::enabled($level) {
            $crate::cluster::log::write($level, $node, format_args!($($arg)+));
        }
    };
}
pub(crate) use log;
