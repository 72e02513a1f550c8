//! The CLI's own log lines, on stderr, in the core's format:
//!
//! ```text
//! 2026-05-01T09:14:03.512Z headcount INFO [node-a] listening on 127.0.0.1:7401
//! ```
//!
//! UTC time to the millisecond, `headcount`, the level, the node's name in
//! brackets, the message. The level filter is the core's: the
//! `HEADCOUNT_LOG` environment variable (`off`, `error`, `warn`, `info`,
//! `debug`); the CLI's lines default to `info` where it is unset.
//! `tests/serve.rs` checks that every stderr line of `headcount serve`, the
//! core's included, has this shape.

use std::io::Write;
use std::sync::OnceLock;
use std::time::SystemTime;

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
        }
    }
}

/// The environment variable the core and the CLI read their level from.
pub(crate) const LOG_ENV: &str = "HEADCOUNT_LOG";

fn max_level() -> u8 {
    static LEVEL: OnceLock<u8> = OnceLock::new();
    *LEVEL.get_or_init(|| match std::env::var(LOG_ENV).as_deref().map(str::to_ascii_lowercase).as_deref() {
        Ok("off") | Ok("none") | Ok("0") => 0,
        Ok("error") => 1,
        Ok("warn") => 2,
        _ => 3,
    })
}

/// A named writer of log lines: one per node the CLI runs.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    node: String,
}

impl Log {
    pub(crate) fn new(node: &str) -> Self {
        Self { node: node.to_owned() }
    }

    pub(crate) fn error(&self, msg: &str) {
        self.write(Level::Error, msg);
    }

    pub(crate) fn warn(&self, msg: &str) {
        self.write(Level::Warn, msg);
    }

    pub(crate) fn info(&self, msg: &str) {
        self.write(Level::Info, msg);
    }

    fn write(&self, level: Level, msg: &str) {
        if level as u8 <= max_level() {
            // One write on a locked handle keeps lines whole; a failed write
            // to stderr is ignored (nowhere left to report it).
            let _ = writeln!(std::io::stderr().lock(), "{}", line(SystemTime::now(), level, &self.node, msg));
        }
    }
}

/// One log line, without its newline.
fn line(at: SystemTime, level: Level, node: &str, msg: &str) -> String {
    format!("{} headcount {} [{node}] {msg}", humantime::format_rfc3339_millis(at), level.tag())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_have_time_level_and_node() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_777_626_843_512);
        assert_eq!(
            line(at, Level::Warn, "a", "listening on 127.0.0.1:7401"),
            "2026-05-01T09:14:03.512Z headcount WARN [a] listening on 127.0.0.1:7401"
        );
    }
}
