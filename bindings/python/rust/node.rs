//! `headcount.Node`: one node, its methods taking Python arguments.
//!
//! Every method checks its arguments, then releases the GIL for the core
//! call, so Python threads calling one node run in parallel (the core is
//! thread-safe) and a core thread that logs can always take the GIL (see
//! `logging.rs`).
//!
//! Lifetime: the core's `Node` lives as long as this Python object, so no
//! call can outlive it; `close` leaves the cluster (calls after it raise
//! `CLOSED`) and a node never closed is closed when it is garbage collected.
//! A node inherited through `fork()` is neither used nor closed in the
//! child, where its threads do not exist.

use crate::args;
use crate::change::topic_object;
use crate::errors::{self, OrRaise, Status};
use crate::fork;
use crate::watch::PyWatch;
use headcount::{Config, TopicCount};
use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};

/// One headcount node: counts connections per topic, cluster-wide.
///
/// Keyword arguments are configuration keys (every key of the library's
/// table, listed by ``headcount.CONFIG_KEYS``: ``node_name``, ``listen``,
/// ``secret``, ...); ints are turned into strings, lists and tuples are
/// joined with commas, and ``None`` leaves a key at its default. Unknown keys
/// and bad values raise :class:`HeadcountError` with status ``CONFIG``.
///
/// A node is a context manager; :meth:`close` (or leaving the ``with``
/// block) leaves the cluster gracefully. Every method is safe to call from
/// many threads at once; the GIL is released during each call into the
/// library. After :meth:`close`, every method raises
/// :class:`HeadcountError` with status ``CLOSED``.
#[pyclass(module = "headcount", name = "Node", frozen)]
#[derive(Debug)]
pub(crate) struct PyNode {
    /// Not dropped in a `fork()` child (see [`Drop`]).
    node: ManuallyDrop<headcount::Node>,
    /// [`fork::generation`] when the node started.
    generation: u64,
    /// Set by the first `close()`.
    closed: AtomicBool,
    /// Held while closing: a second `close()` returns once the first is done.
    closing: Mutex<()>,
}

impl PyNode {
    /// The core node, unless this process is a `fork()` child of its owner.
    fn node(&self, py: Python<'_>) -> PyResult<&headcount::Node> {
        if self.inherited() {
            return Err(errors::new(
                py,
                Status::Closed,
                "this node was created before fork(); a forked child cannot use it (create a new one)".to_owned(),
            ));
        }
        Ok(&self.node)
    }

    fn inherited(&self) -> bool {
        self.generation != fork::generation()
    }
}

#[pymethods]
impl PyNode {
    #[new]
    #[pyo3(signature = (**config))]
    fn new(py: Python<'_>, config: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let entries = args::config_entries(config)?;
        let mut cfg = Config::new();
        for (key, value) in &entries {
            cfg.set(key, value).or_raise(py, "config")?;
        }
        // Binding and name resolution may block.
        let node = py.detach(|| headcount::Node::start(&cfg)).or_raise(py, "starting the node")?;
        Ok(PyNode {
            node: ManuallyDrop::new(node),
            generation: fork::generation(),
            closed: AtomicBool::new(false),
            closing: Mutex::new(()),
        })
    }

    // -- membership -------------------------------------------------------

    /// Counts connection ``conn`` in ``topic``.
    ///
    /// Returns True when the pair was new, False when it was already
    /// tracked (a second track is not counted twice).
    fn track(&self, py: Python<'_>, topic: &Bound<'_, PyAny>, conn: &Bound<'_, PyAny>) -> PyResult<bool> {
        let (topic, conn) = (args::topic(topic)?, args::conn(conn)?);
        let node = self.node(py)?;
        py.detach(|| node.track(&topic, conn)).or_raise(py, "track")
    }

    /// Stops counting ``conn`` in ``topic``. Returns True when it was
    /// tracked; untracking an untracked pair is a no-op returning False.
    fn untrack(&self, py: Python<'_>, topic: &Bound<'_, PyAny>, conn: &Bound<'_, PyAny>) -> PyResult<bool> {
        let (topic, conn) = (args::topic(topic)?, args::conn(conn)?);
        let node = self.node(py)?;
        py.detach(|| node.untrack(&topic, conn)).or_raise(py, "untrack")
    }

    /// Untracks ``conn`` from every topic (the connection went away).
    /// Returns how many topics it was removed from.
    fn untrack_all(&self, py: Python<'_>, conn: &Bound<'_, PyAny>) -> PyResult<usize> {
        let conn = args::conn(conn)?;
        let node = self.node(py)?;
        py.detach(|| node.untrack_all(conn)).or_raise(py, "untrack_all")
    }

    /// Adds ``delta`` (may be negative) to this node's count of ``topic``
    /// directly, for callers that keep membership themselves. Counts are
    /// never reported below zero (a negative running sum reads as 0 until
    /// enough is added back).
    fn add(&self, py: Python<'_>, topic: &Bound<'_, PyAny>, delta: &Bound<'_, PyAny>) -> PyResult<()> {
        let (topic, delta) = (args::topic(topic)?, args::delta(delta)?);
        let node = self.node(py)?;
        py.detach(|| node.add(&topic, delta)).or_raise(py, "add")
    }

    // -- reads ------------------------------------------------------------

    /// The cluster-wide count of ``topic``: this node's exact count plus
    /// the last count each live peer reported.
    fn count(&self, py: Python<'_>, topic: &Bound<'_, PyAny>) -> PyResult<u64> {
        let topic = args::topic(topic)?;
        let node = self.node(py)?;
        py.detach(|| node.count(&topic)).or_raise(py, "count")
    }

    /// This node's exact count of ``topic``.
    fn count_local(&self, py: Python<'_>, topic: &Bound<'_, PyAny>) -> PyResult<u64> {
        let topic = args::topic(topic)?;
        let node = self.node(py)?;
        py.detach(|| node.count_local(&topic)).or_raise(py, "count_local")
    }

    /// The count of ``topic`` with how fresh and complete it is.
    ///
    /// Returns a dict with ``count`` (cluster-wide), ``local`` (this node),
    /// ``peers_reporting`` (live peers that reported the topic),
    /// ``peers_known`` (peers currently known) and
    /// ``oldest_report_age_ms`` (age of the oldest report summed in).
    fn count_info<'py>(&self, py: Python<'py>, topic: &Bound<'_, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let topic = args::topic(topic)?;
        let node = self.node(py)?;
        let TopicCount { count, local, peers_reporting, peers_known, oldest_report_age_ms } =
            py.detach(|| node.count_info(&topic)).or_raise(py, "count_info")?;
        let info = PyDict::new(py);
        info.set_item("count", count)?;
        info.set_item("local", local)?;
        info.set_item("peers_reporting", peers_reporting)?;
        info.set_item("peers_known", peers_known)?;
        info.set_item("oldest_report_age_ms", oldest_report_age_ms)?;
        Ok(info)
    }

    /// The sum of all counts of all topics across the cluster.
    fn total(&self, py: Python<'_>) -> PyResult<u64> {
        let node = self.node(py)?;
        py.detach(|| node.total()).or_raise(py, "total")
    }

    // -- change feed and ranked reads ---------------------------------------

    /// A :class:`Watch` of every topic starting with ``prefix`` (``str`` or
    /// bytes; ``""``, the default, watches every topic). With
    /// ``initial=True`` its first batch holds every matching topic whose
    /// count is non-zero. Later batches hold each topic whose cluster-wide
    /// count changed: local tracks (with the flush that ships them), peers'
    /// reports, peers going down or coming back.
    #[pyo3(signature = (prefix = None, *, initial = false))]
    fn watch(slf: &Bound<'_, Self>, prefix: Option<&Bound<'_, PyAny>>, initial: bool) -> PyResult<PyWatch> {
        let py = slf.py();
        let prefix = prefix.map(args::prefix).transpose()?.unwrap_or_default();
        let this = slf.get();
        let node = this.node(py)?;
        PyWatch::start(py, slf.clone().unbind(), node, &prefix, initial)
    }

    /// The ``k`` topics starting with ``prefix`` with the highest
    /// cluster-wide counts, as ``(topic, count)`` tuples, highest first, ties
    /// broken by topic bytes ascending; topics at 0 are never listed.
    /// Topics are ``str`` (``bytes`` when not UTF-8). Exact: scans every
    /// topic.
    #[pyo3(signature = (k, prefix = None))]
    fn top<'py>(
        &self,
        py: Python<'py>,
        k: &Bound<'_, PyAny>,
        prefix: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let k = args::size(k, "k")?;
        let prefix = prefix.map(args::prefix).transpose()?.unwrap_or_default();
        let node = self.node(py)?;
        let top = py.detach(|| node.top(k, &prefix)).or_raise(py, "top")?;
        let items = top.iter().map(|(t, n)| PyTuple::new(py, [topic_object(py, t), n.into_pyobject(py)?.into_any()]));
        PyList::new(py, items.collect::<PyResult<Vec<_>>>()?)
    }

    // -- cluster ----------------------------------------------------------

    /// The address this node listens on (``host:port``), with the real
    /// port when ``listen`` asked for port 0; ``""`` without ``listen``.
    #[getter]
    fn local_addr(&self, py: Python<'_>) -> PyResult<String> {
        let node = self.node(py)?;
        if self.closed.load(Ordering::Acquire) {
            return Err(errors::new(py, Status::Closed, "local_addr: the node is closed".to_owned()));
        }
        Ok(node.local_addr().map(|a| a.to_string()).unwrap_or_default())
    }

    /// Connects this node to the node at ``addr`` (``host:port``).
    fn add_peer(&self, py: Python<'_>, addr: &Bound<'_, PyAny>) -> PyResult<()> {
        let addr = addr
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err(format!("addr must be str, not {}", args::type_name(addr))))?
            .to_str()?;
        if addr.contains('\0') {
            return Err(PyValueError::new_err("addr must not contain a NUL character"));
        }
        let node = self.node(py)?;
        py.detach(|| node.add_peer(addr)).or_raise(py, "add_peer")
    }

    /// The node's counters and peer states (the library's stats JSON), parsed.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let node = self.node(py)?;
        let text = py.detach(|| node.stats_json()).or_raise(py, "stats")?;
        LOADS.import(py, "json", "loads")?.call1((text,))
    }

    // -- lifetime ---------------------------------------------------------

    /// Whether :meth:`close` has been called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.inherited()
    }

    /// Leaves the cluster gracefully (peers drop this node's counts at
    /// once) and stops the node's threads. Idempotent; a close racing
    /// another returns once that one is done. Later calls raise
    /// ``HeadcountError`` (``CLOSED``).
    fn close(&self, py: Python<'_>) {
        if self.inherited() {
            // The parent still owns it; here it is only forgotten.
            return;
        }
        py.detach(|| {
            let _closing = self.closing.lock();
            self.closed.store(true, Ordering::Release);
            self.node.close();
        });
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) {
        self.close(py);
    }

    fn __repr__(&self) -> &'static str {
        if self.closed() {
            "<headcount.Node closed>"
        } else {
            "<headcount.Node open>"
        }
    }
}

impl Drop for PyNode {
    fn drop(&mut self) {
        if self.inherited() {
            // Its threads are the parent's: closing would wait for them
            // forever. The memory is left to the child's exit.
            return;
        }
        // Closing joins threads that may be waiting for the GIL to log.
        Python::attach(|py| py.detach(|| self.node.close()));
        // SAFETY: `node` is dropped only here, once, and not used after.
        unsafe { ManuallyDrop::drop(&mut self.node) };
    }
}
