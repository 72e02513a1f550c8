//! The core's log lines to Python's `logging`.
//!
//! At import this module sets the core's sink (`headcount::logging::set_sink`,
//! see `core/src/logging/mod.rs`) to a function that hands each line to
//! `logging.getLogger(target)`, the target's `::` written `.`
//! (`headcount.cluster.registry`, ...: children of the logger `headcount`),
//! with the node's name as the record's `node` attribute. Python's own
//! logging configuration decides what is shown and where; with none, its
//! last-resort handler prints warnings and errors to stderr, as the core did
//! before. `HEADCOUNT_LOG`, when set, still filters first.
//!
//! Lines come from the node's background threads, which take the GIL to log.
//! That cannot deadlock because the binding never waits for the core while
//! holding the GIL: every call into the core (including `close` and the
//! node's destructor) releases it first. While the interpreter shuts down a
//! thread cannot take the GIL; lines are then dropped instead
//! (`Python::try_attach`), where waiting for the GIL would hang the thread.
//! This is why the bridge is these few lines rather than `pyo3-log`, which
//! takes the GIL unconditionally.

use headcount::logging::{set_sink, Level, Record};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Python's level number for a core level (`logging.ERROR` is 40, ...).
fn python_level(level: Level) -> u32 {
    match level {
        Level::Error => 40,
        Level::Warn => 30,
        Level::Info => 20,
        // `Level` is non_exhaustive: a level added later is debug here.
        _ => 10,
    }
}

fn forward(record: &Record<'_>) {
    let _ = Python::try_attach(|py| -> PyResult<()> {
        let logger = py.import("logging")?.call_method1("getLogger", (record.target.replace("::", "."),))?;
        let level = python_level(record.level);
        if logger.call_method1("isEnabledFor", (level,))?.is_truthy()? {
            let extra = PyDict::new(py);
            extra.set_item("node", record.node)?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("extra", extra)?;
            logger.call_method("log", (level, "%s", record.message), Some(&kwargs))?;
        }
        Ok(())
    });
}

/// Makes the bridge the core's sink: every node's lines go to `logging`.
pub(crate) fn install() {
    set_sink(Some(Box::new(forward)));
}
