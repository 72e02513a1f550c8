//! `headcount.HeadcountError` from the core's errors.
//!
//! The exception class and its `Status` enum are Python (`headcount/_node.py`);
//! this module only picks the status and builds the message. The statuses are
//! the C ABI's `hc_status` numbers (`include/headcount.h`), so an error reads
//! the same from Python, C, Go and Erlang; `tests/test_node.py` checks the
//! enum against the header.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// `hc_status` values (`include/headcount.h`) that the binding reports.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub(crate) enum Status {
    InvalidArg = 2,
    InvalidTopic = 3,
    Config = 4,
    Io = 5,
    Closed = 7,
}

impl Status {
    /// The status the C ABI gives `e` (as `ffi/src/boundary.rs` maps it).
    fn of(e: &headcount::Error) -> Status {
        use headcount::Error;
        match e {
            Error::InvalidTopic { .. } => Status::InvalidTopic,
            Error::Config { .. } => Status::Config,
            Error::Io(_) => Status::Io,
            Error::Closed => Status::Closed,
            // TooManyTopics, InvalidArgument, and any variant added later.
            _ => Status::InvalidArg,
        }
    }
}

/// `HeadcountError(status, message)`.
pub(crate) fn new(py: Python<'_>, status: Status, message: String) -> PyErr {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match CLASS.import(py, "headcount._node", "HeadcountError") {
        Ok(class) => match class.call1((status as u32, message)) {
            Ok(err) => PyErr::from_value(err),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

/// The error of the core call `what` (the method's name, which prefixes the
/// message as the C ABI's function name does).
pub(crate) fn from_core(py: Python<'_>, what: &str, e: headcount::Error) -> PyErr {
    new(py, Status::of(&e), format!("{what}: {e}"))
}

/// Extension: `.or_raise(py, "track")?` on a core result.
pub(crate) trait OrRaise<T> {
    fn or_raise(self, py: Python<'_>, what: &str) -> PyResult<T>;
}

impl<T> OrRaise<T> for headcount::Result<T> {
    fn or_raise(self, py: Python<'_>, what: &str) -> PyResult<T> {
        self.map_err(|e| from_core(py, what, e))
    }
}
