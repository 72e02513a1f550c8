//! Python arguments to the values the core takes, checked here with the
//! errors the binding documents (`TypeError` for a wrong type, `ValueError`
//! for a number out of range), before the core is called.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyInt, PyList, PyMemoryView, PyString, PyTuple};
use std::borrow::Cow;

/// A topic's bytes: borrowed from an immutable `str` or `bytes` (which the
/// caller's reference keeps alive while the GIL is released), copied from a
/// `bytearray` or `memoryview` (another thread may change those meanwhile).
pub(crate) fn topic<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    topic_bytes(obj, "topic")
}

/// A watch's or `top`'s prefix: taken as a topic is (and may be empty).
pub(crate) fn prefix<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    topic_bytes(obj, "prefix")
}

fn topic_bytes<'a>(obj: &'a Bound<'_, PyAny>, name: &str) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return match s.to_str() {
            Ok(s) => Ok(Cow::Borrowed(s.as_bytes())),
            Err(e) => Err(PyValueError::new_err(format!("{name} is not encodable as UTF-8: {e}"))),
        };
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        let bytes = obj.call_method0("tobytes")?;
        return Ok(Cow::Owned(bytes.cast::<PyBytes>()?.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!("{name} must be str or bytes, not {}", type_name(obj))))
}

/// A connection id: an int (or anything with `__index__`, not `bool`) in
/// `0..2**64-1`.
pub(crate) fn conn(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    // The common case first: an exact int in range.
    if let Ok(i) = obj.cast_exact::<PyInt>() {
        if let Ok(n) = i.extract::<u64>() {
            return Ok(n);
        }
    }
    let n = integer(obj, "conn")?;
    n.extract::<u64>().map_err(|_| PyValueError::new_err(format!("conn must be in 0..2**64-1, got {n}")))
}

/// A size (`Node.top`'s `k`): an int in `0..=usize::MAX`, not `bool`.
pub(crate) fn size(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    let n = integer(obj, name)?;
    n.extract::<usize>().map_err(|_| PyValueError::new_err(format!("{name} must be a non-negative int, got {n}")))
}

/// A raw count change: an int in `-2**63..2**63-1`.
pub(crate) fn delta(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    let n = integer(obj, "delta")?;
    n.extract::<i64>().map_err(|_| PyValueError::new_err(format!("delta must be in -2**63..2**63-1, got {n}")))
}

/// `operator.index(obj)`, refusing `bool`.
fn integer<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Bound<'py, PyInt>> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!("{name} must be an int, not bool")));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        return Ok(i.clone());
    }
    let not_int = || PyTypeError::new_err(format!("{name} must be an int, not {}", type_name(obj)));
    if !obj.hasattr("__index__")? {
        return Err(not_int());
    }
    let index = obj.py().import("operator")?.getattr("index")?.call1((obj,)).map_err(|_| not_int())?;
    index.cast_into::<PyInt>().map_err(|_| not_int())
}

/// A `Node(**config)` entry as the key and value string `Config::set` takes,
/// or `None` for a value of `None` (the key keeps its default).
pub(crate) fn config_entry(key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<Option<(String, String)>> {
    let key: String = key.extract()?;
    if key.contains('\0') {
        return Err(PyValueError::new_err(format!("config key {key:?} must not contain a NUL character")));
    }
    if value.is_none() {
        return Ok(None);
    }
    let text = if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        let parts: PyResult<Vec<String>> = value.try_iter()?.map(|v| config_scalar(&key, &v?)).collect();
        parts?.join(",")
    } else {
        config_scalar(&key, value)?
    };
    if text.contains('\0') {
        return Err(PyValueError::new_err(format!("config {key:?} must not contain a NUL character")));
    }
    Ok(Some((key, text)))
}

/// One config value: `str`, `int` (written in decimal), `bool` (`true` /
/// `false`) or UTF-8 `bytes`.
fn config_scalar(key: &str, v: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(if b.is_true() { "true" } else { "false" }.to_owned());
    }
    if let Ok(s) = v.cast::<PyString>() {
        return s
            .to_str()
            .map(str::to_owned)
            .map_err(|e| PyValueError::new_err(format!("config {key:?}: value is not encodable as UTF-8: {e}")));
    }
    if v.is_instance_of::<PyInt>() {
        return Ok(v.str()?.to_str()?.to_owned());
    }
    let bytes = if let Ok(b) = v.cast::<PyBytes>() {
        Some(b.as_bytes().to_vec())
    } else {
        v.cast::<PyByteArray>().ok().map(|b| b.to_vec())
    };
    match bytes {
        Some(bytes) => String::from_utf8(bytes)
            .map_err(|_| PyValueError::new_err(format!("config {key:?}: bytes value is not UTF-8"))),
        None => Err(PyTypeError::new_err(format!(
            "config {key:?} must be str, int or a list of them, not {}",
            type_name(v)
        ))),
    }
}

/// `type(obj).__name__`, for messages.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".to_owned())
}

/// The entries of `**config`, in order.
pub(crate) fn config_entries(config: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, String)>> {
    let mut entries = Vec::new();
    if let Some(config) = config {
        for (key, value) in config.iter() {
            if let Some(entry) = config_entry(&key, &value)? {
                entries.push(entry);
            }
        }
    }
    Ok(entries)
}
