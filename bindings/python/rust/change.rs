//! `headcount.Change`, and topics handed back to Python (`str` when the
//! bytes are UTF-8, else `bytes`), as watches and `top` return them.

use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// A topic's bytes as Python sees them: `str` when they are UTF-8 (the
/// common case: topics given as `str`), else `bytes`.
pub(crate) fn topic_object<'py>(py: Python<'py>, topic: &[u8]) -> Bound<'py, PyAny> {
    match std::str::from_utf8(topic) {
        Ok(s) => PyString::new(py, s).into_any(),
        Err(_) => PyBytes::new(py, topic).into_any(),
    }
}

/// One topic's new cluster-wide count, as a watch delivers it.
///
/// ``topic`` is a ``str`` (``bytes`` when the topic is not UTF-8),
/// ``count`` the topic's count now (what ``Node.count`` returns; 0 when it
/// emptied) and ``users`` its distinct users (equal to ``count`` until
/// distinct users are counted). Immutable; compares equal to a ``Change``
/// with the same three values.
#[pyclass(module = "headcount", name = "Change", frozen)]
#[derive(Debug)]
pub(crate) struct PyChange {
    #[pyo3(get)]
    topic: Py<PyAny>,
    #[pyo3(get)]
    count: u64,
    #[pyo3(get)]
    users: u64,
}

impl PyChange {
    pub(crate) fn from_core(py: Python<'_>, c: headcount::Change) -> PyChange {
        PyChange { topic: topic_object(py, &c.topic).unbind(), count: c.count, users: c.users }
    }
}

#[pymethods]
impl PyChange {
    #[new]
    fn new(topic: &Bound<'_, PyAny>, count: u64, users: u64) -> PyResult<PyChange> {
        let bytes = crate::args::topic(topic)?;
        Ok(PyChange { topic: topic_object(topic.py(), &bytes).unbind(), count, users })
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Ok(other) = other.cast::<PyChange>() else { return Ok(py.NotImplemented()) };
        let other = other.get();
        let same =
            self.count == other.count && self.users == other.users && self.topic.bind(py).eq(other.topic.bind(py))?;
        match op {
            CompareOp::Eq => Ok(same.into_pyobject(py)?.to_owned().into_any().unbind()),
            CompareOp::Ne => Ok((!same).into_pyobject(py)?.to_owned().into_any().unbind()),
            _ => Ok(py.NotImplemented()),
        }
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        (self.topic.clone_ref(py), self.count, self.users).into_pyobject(py)?.hash()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Change(topic={}, count={}, users={})", self.topic.bind(py).repr()?, self.count, self.users))
    }
}
