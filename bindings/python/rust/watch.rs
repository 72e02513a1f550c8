//! `headcount.Watch`: a watch of a topic prefix, read by blocking calls
//! (`next`, `for batch in w`) or by an event loop through its fd
//! (`async for batch in w`, in `headcount/_aio.py`).
//!
//! # One consumer, and `close()` from anywhere
//!
//! The core watch sits in a mutex that a consumer holds for the whole of a
//! `next` call (GIL released), so concurrent `next` calls take turns. A
//! waiting consumer polls the watch's fd together with a [`Wake`] fd (see
//! `wait.rs`). `close()` sets `closed`, makes the wake fd readable for
//! good, then takes the mutex and drops the core watch: a consumer blocked
//! in `next` wakes at once, sees `closed` and raises `CLOSED` (iteration
//! ends), releasing the mutex, so `close()` returns promptly and no
//! consumer ever uses a dropped watch or polls a closed fd.
//!
//! No wake-up can be lost, whatever the interleaving: the wake socket is
//! never read, so once `close()` wrote to it every later poll returns at
//! once, and the consumer checks `closed` before each poll. A consumer that
//! checked `closed` just before it was set polls, returns at once, and sees
//! it on its next turn; no memory ordering beyond the mutex is relied on
//! for more than saving that turn. (No loom model: the only shared state
//! besides the mutex is this level-triggered kernel object.)
//!
//! The watch keeps its `Node` object alive; closing the node ends the
//! watch (the changes delivered before are still returned, then `CLOSED`).

use crate::change::{topic_object, PyChange};
use crate::errors::{self, OrRaise, Status};
use crate::fork;
use crate::node::PyNode;
use crate::wait::{self, Wake, Woken};
use headcount::{Change, Watch};
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A watch of every topic starting with a prefix, from :meth:`Node.watch`.
///
/// :meth:`next` returns the next batch of :class:`Change` (a topic at most
/// once per batch, with its latest count; an empty list on timeout).
/// ``for batch in w`` blocks for each batch; ``async for batch in w``
/// waits in the running asyncio loop, through :meth:`fileno`, with no
/// thread. Iteration ends when the watch or its node is closed.
///
/// A watch is a context manager; :meth:`close` (or leaving the ``with``
/// block) ends it, and may be called from any thread: a ``next`` blocked in
/// another thread then raises :class:`HeadcountError` (``CLOSED``) at once,
/// and a ``for`` loop there ends. One consumer at a time: concurrent
/// ``next`` calls take turns. The watch keeps its node object alive; once
/// the node is closed, the changes delivered before are still returned,
/// then ``next`` raises ``CLOSED``.
#[pyclass(module = "headcount", name = "Watch", frozen)]
#[derive(Debug)]
pub(crate) struct PyWatch {
    /// Only held: the node object lives as long as its watches.
    _node: Py<PyNode>,
    prefix: Box<[u8]>,
    /// `None` once closed; held by a consumer for the whole of a `next`.
    watch: Mutex<Option<Watch>>,
    /// The core watch's fd (its number handed out at creation, so it is
    /// level-triggered); open while `watch` holds the watch.
    fd: RawFd,
    wake: Wake,
    /// Set by `close()`, before the watch is dropped.
    closed: AtomicBool,
    /// [`fork::generation`] when the watch was made.
    generation: u64,
}

/// How a wait for a batch ended, besides with a batch.
enum Stop {
    /// `close()` was called.
    Closed,
    /// The node closed and every change was delivered.
    NodeClosed,
    /// A signal arrived: Python's handlers must run.
    Interrupted,
}

impl PyWatch {
    /// A watch of `prefix` on `core`, the node of `node`.
    pub(crate) fn start(
        py: Python<'_>,
        node: Py<PyNode>,
        core: &headcount::Node,
        prefix: &[u8],
        initial: bool,
    ) -> PyResult<PyWatch> {
        let wake = Wake::new().map_err(|e| errors::new(py, Status::Io, format!("watch: {e}")))?;
        let watch = py.detach(|| core.watch(prefix, initial)).or_raise(py, "watch")?;
        Ok(PyWatch {
            _node: node,
            prefix: prefix.into(),
            fd: watch.as_raw_fd(),
            watch: Mutex::new(Some(watch)),
            wake,
            closed: AtomicBool::new(false),
            generation: fork::generation(),
        })
    }

    fn inherited(&self) -> bool {
        self.generation != fork::generation()
    }

    /// The next batch (empty once `deadline` passed); runs without the GIL.
    fn wait_batch(&self, deadline: Option<Instant>) -> Result<Vec<Change>, Stop> {
        let mut guard = match deadline {
            None => self.watch.lock(),
            Some(d) => match self.watch.try_lock_until(d) {
                Some(g) => g,
                None => return Ok(Vec::new()), // another consumer's turn lasted all our time
            },
        };
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(Stop::Closed);
            }
            let Some(w) = guard.as_mut() else { return Err(Stop::Closed) };
            let batch = w.next_batch(Duration::ZERO).map_err(|_| Stop::NodeClosed)?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.saturating_duration_since(Instant::now()) {
                    left if left.is_zero() => return Ok(batch),
                    left => Some(left),
                },
            };
            if wait::wait(self.fd, &self.wake, left) == Woken::Interrupted {
                return Err(Stop::Interrupted);
            }
        }
    }

    /// The next batch as a list, or the reason there is none (`Closed` or
    /// `NodeClosed`); runs signal handlers while waiting.
    fn batch<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Result<Bound<'py, PyList>, Stop>> {
        if self.inherited() {
            return Err(errors::new(py, Status::Closed, "watch: made before fork(); unusable in the child".into()));
        }
        let deadline = deadline(timeout)?;
        loop {
            match py.detach(|| self.wait_batch(deadline)) {
                Ok(batch) => {
                    let changes = batch.into_iter().map(|c| Bound::new(py, PyChange::from_core(py, c)));
                    return Ok(Ok(PyList::new(py, changes.collect::<PyResult<Vec<_>>>()?)?));
                }
                Err(Stop::Interrupted) => py.check_signals()?,
                Err(stop) => return Ok(Err(stop)),
            }
        }
    }
}

/// The instant a `next(timeout)` gives up (`None`: never).
fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    let Some(t) = timeout else { return Ok(None) };
    let t = Duration::try_from_secs_f64(t).map_err(|_| {
        PyValueError::new_err(format!("timeout must be a finite, non-negative number of seconds or None, got {t}"))
    })?;
    Ok(Instant::now().checked_add(t))
}

#[pymethods]
impl PyWatch {
    /// Waits up to ``timeout`` seconds (``None``: as long as it takes) for
    /// changes and returns them as a list of :class:`Change`, each topic at
    /// most once with its latest count; an empty list on timeout.
    ///
    /// Raises :class:`HeadcountError` (``CLOSED``) once the watch is closed,
    /// or once its node is closed and every change was returned.
    #[pyo3(signature = (timeout = None))]
    fn next<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyList>> {
        match self.batch(py, timeout)? {
            Ok(list) => Ok(list),
            Err(Stop::NodeClosed) => Err(errors::new(py, Status::Closed, "watch: the node is closed".into())),
            Err(_) => Err(errors::new(py, Status::Closed, "watch: the watch is closed".into())),
        }
    }

    /// The watch's file descriptor: it polls readable while changes are
    /// pending (level-triggered), and for good once the node closed. For
    /// event loops (``loop.add_reader``, ``selectors``): do not read or
    /// close it, and stop polling it before :meth:`close`.
    fn fileno(&self, py: Python<'_>) -> PyResult<RawFd> {
        if self.closed.load(Ordering::Acquire) || self.inherited() {
            return Err(errors::new(py, Status::Closed, "fileno: the watch is closed".into()));
        }
        Ok(self.fd)
    }

    /// The prefix watched (``str``, or ``bytes`` when not UTF-8).
    #[getter]
    fn prefix<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        topic_object(py, &self.prefix)
    }

    /// Whether :meth:`close` has been called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.inherited()
    }

    /// Ends the watch (idempotent, from any thread): see the class docs.
    fn close(&self, py: Python<'_>) {
        if self.inherited() {
            return; // its node's threads are the parent's; see Drop
        }
        py.detach(|| {
            self.closed.store(true, Ordering::Release);
            self.wake.set();
            let watch = self.watch.lock().take();
            drop(watch);
        });
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next batch, waiting as long as it takes; ends when the watch or
    /// its node is closed.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        Ok(self.batch(py, None)?.ok())
    }

    /// ``async for batch in watch``: see ``headcount/_aio.py``.
    fn __aiter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        static BATCHES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        BATCHES.import(slf.py(), "headcount._aio", "Batches")?.call1((slf,))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) {
        self.close(py);
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let state = if self.closed() { "closed" } else { "open" };
        Ok(format!("<headcount.Watch {} {state}>", topic_object(py, &self.prefix).repr()?))
    }
}

impl Drop for PyWatch {
    fn drop(&mut self) {
        if self.inherited() {
            // Unregistering could wait for a lock held by a thread that does
            // not exist in this fork() child: leave it to the child's exit.
            std::mem::forget(self.watch.get_mut().take());
        }
    }
}
