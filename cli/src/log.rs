//! The CLI's own log lines: the core's [`headcount::logging`] records, target
//! `headcount::cli`, so that one stderr holds one format (the node's
//! `log_format`):
//!
//! ```text
//! 2026-05-01T09:14:03.512Z INFO headcount::cli [node-a] ready: listening on 127.0.0.1:7401
//! ```
//!
//! The level filter is the core's, the `HEADCOUNT_LOG` environment variable
//! (`off`, `error`, `warn`, `info`, `debug`), which the commands set to
//! `info` where it is unset ([`default_to_info`]). `tests/serve.rs` checks
//! that every stderr line of `headcount serve`, the core's included, has
//! this shape.

use headcount::logging::{Level, LogFormat, NodeLog};

/// The environment variable the core reads its level from.
const LOG_ENV: &str = "HEADCOUNT_LOG";

/// The target of the CLI's lines.
const TARGET: &str = "headcount::cli";

/// Makes `info` the level where `HEADCOUNT_LOG` is unset: a service logs what
/// it does (the core's default, for libraries, is `warn`). Call before any
/// thread starts and before anything is logged (the core reads it once).
pub(crate) fn default_to_info() {
    if std::env::var_os(LOG_ENV).is_none() {
        std::env::set_var(LOG_ENV, "info");
    }
}

/// A named writer of log lines: one per node the CLI runs.
#[derive(Debug, Clone)]
pub(crate) struct Log(NodeLog);

impl Log {
    pub(crate) fn new(node: &str, format: LogFormat) -> Self {
        Self(NodeLog::new(node, format))
    }

    pub(crate) fn error(&self, msg: &str) {
        self.0.write(Level::Error, TARGET, format_args!("{msg}"));
    }

    pub(crate) fn warn(&self, msg: &str) {
        self.0.write(Level::Warn, TARGET, format_args!("{msg}"));
    }

    pub(crate) fn info(&self, msg: &str) {
        self.0.write(Level::Info, TARGET, format_args!("{msg}"));
    }
}
