//! A tiny logging facade: leveled lines on stderr, never stdout, each
//! `<UTC time, ms> headcount <LEVEL> [<node>] <message>` (the CLI writes
//! its own lines in the same format).
//!
//! The level comes from the `HEADCOUNT_LOG` environment variable (`off`,
//! `error`, `warn`, `info`, `debug`; default `warn`), read once. Embedding
//! runtimes that own stderr can set `HEADCOUNT_LOG=off`.

use crate::sync::OnceLock;
use std::io::Write;

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

fn max_level() -> u8 {
    static LEVEL: OnceLock<u8> = OnceLock::new();
    *LEVEL.get_or_init(|| match std::env::var("HEADCOUNT_LOG").as_deref().map(str::to_ascii_lowercase).as_deref() {
        Ok("off") | Ok("none") | Ok("0") => 0,
        Ok("error") => 1,
        Ok("info") => 3,
        Ok("debug") | Ok("trace") => 4,
        _ => 2,
    })
}

/// Whether lines at `level` are written.
pub(crate) fn enabled(level: Level) -> bool {
    level as u8 <= max_level()
}

/// Writes one line (use the `log!` macro).
pub(crate) fn write(level: Level, node: &str, args: std::fmt::Arguments<'_>) {
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
