//! `headcount._native`: the Python binding's extension module (PyO3).
//!
//! The Python package `headcount` re-exports what is here (`Node`, `Watch`,
//! `Change`, `library_version`, `CONFIG_KEYS`) beside its pure-Python `Status` and
//! `HeadcountError` (`headcount/_node.py`). Typed by `_native.pyi`.

mod args;
mod change;
mod errors;
mod fork;
mod logging;
mod node;
mod wait;
mod watch;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// The version of the headcount library compiled into this module.
#[pyfunction]
fn library_version() -> &'static str {
    headcount::VERSION
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    fork::watch();
    logging::install();
    m.add_class::<node::PyNode>()?;
    m.add_class::<watch::PyWatch>()?;
    m.add_class::<change::PyChange>()?;
    m.add_function(wrap_pyfunction!(library_version, m)?)?;
    m.add("CONFIG_KEYS", PyTuple::new(m.py(), headcount::CONFIG_KEYS)?)?;
    Ok(())
}
