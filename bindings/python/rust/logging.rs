//! The core's log lines to Python's `logging` (logger `headcount`).
//!
//! The core writes through the `log` crate whenever a `log` logger is
//! installed (see `core/src/cluster/log.rs`); this module installs one, at
//! import, that hands each line to `logging.getLogger(target)` (the core's
//! target is `headcount`), so Python's own logging configuration decides
//! what is shown and where. With no configuration, Python's last-resort
//! handler prints warnings and errors to stderr, as the core did before.
//!
//! Lines come from the node's background threads, which take the GIL to log.
//! That cannot deadlock because the binding never waits for the core while
//! holding the GIL: every call into the core (including `close` and the
//! node's destructor) releases it first. While the interpreter shuts down a
//! thread cannot take the GIL; lines are then dropped instead
//! (`Python::try_attach`), where waiting for the GIL would hang the thread.
//! This is why the bridge is these few lines rather than `pyo3-log`, which
//! takes the GIL unconditionally.

use pyo3::prelude::*;

/// Python's level number for a `log` level (`logging.ERROR` is 40, ...).
fn python_level(level: log::Level) -> u32 {
    match level {
        log::Level::Error => 40,
        log::Level::Warn => 30,
        log::Level::Info => 20,
        log::Level::Debug | log::Level::Trace => 10,
    }
}

#[derive(Debug)]
struct Bridge;

impl log::Log for Bridge {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        // `logging` filters (deciding here would need the GIL).
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let _ = Python::try_attach(|py| -> PyResult<()> {
            let logger = py.import("logging")?.call_method1("getLogger", (record.target().replace("::", "."),))?;
            let level = python_level(record.level());
            if logger.call_method1("isEnabledFor", (level,))?.is_truthy()? {
                logger.call_method1("log", (level, "%s", record.args().to_string()))?;
            }
            Ok(())
        });
    }

    fn flush(&self) {}
}

/// Installs the bridge as the process's `log` logger, unless another logger
/// was installed first (then the core's lines go to that one).
pub(crate) fn install() {
    if log::set_boxed_logger(Box::new(Bridge)).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}
