"""The :class:`Node` class, :class:`Status` and :class:`HeadcountError`."""

from __future__ import annotations

import ctypes
import enum
import json
import operator
import os
import threading
from ctypes import byref, c_bool, c_size_t, c_uint64, c_void_p
from typing import Any, Dict, Optional, Union

from . import _ffi

__all__ = ["Node", "Status", "HeadcountError", "Topic", "library_version"]

#: A topic: ``str`` (encoded as UTF-8) or bytes (``bytes``, ``bytearray``,
#: ``memoryview``). Topics are 1 to ``max_topic_len`` bytes (default 1024).
Topic = Union[str, bytes, bytearray, memoryview]

_U64_MAX = 2**64 - 1
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1


class Status(enum.IntEnum):
    """``hc_status``: the result code of every fallible C ABI call."""

    OK = 0
    NULL_ARG = 1
    INVALID_ARG = 2
    INVALID_TOPIC = 3
    CONFIG = 4
    IO = 5
    BUFFER_TOO_SMALL = 6
    CLOSED = 7
    PANIC = 8

    @classmethod
    def _missing_(cls, value: object) -> Optional["Status"]:
        # A newer library may return a code this package does not know: keep
        # the number rather than failing while reporting an error.
        if isinstance(value, int):
            member = int.__new__(cls, value)
            member._name_ = f"UNKNOWN_{value}"
            member._value_ = value
            return member
        return None


class HeadcountError(Exception):
    """An error reported by libheadcount (or a call on a closed node).

    ``status`` is the :class:`Status`; ``message`` the library's message
    (``hc_last_error``, read on the calling thread right after the call).
    """

    def __init__(self, status: Union[Status, int], message: str) -> None:
        self.status = Status(status)
        self.message = message
        super().__init__(f"{message} ({self.status.name})")

    def __reduce__(self) -> Any:
        return (type(self), (int(self.status), self.message))


def _error(status: int, what: str) -> HeadcountError:
    """The error for ``status`` from the C call ``what``, on this thread.

    The library's message (which already names the failing function) is
    used as is; ``what`` only stands in when the library gave none.
    """
    lib = _ffi.lib()
    raw = lib.hc_last_error()
    message = raw.decode("utf-8", "replace") if raw else ""
    if not message:
        s = lib.hc_status_str(status)
        message = f"{what}: " + (s.decode("utf-8", "replace") if s else f"status {status}")
    return HeadcountError(status, message)


def _check(status: int, what: str) -> None:
    if status != Status.OK:
        raise _error(status, what)


def library_version() -> str:
    """The version of the loaded libheadcount (``hc_version``)."""
    v = _ffi.lib().hc_version()
    return v.decode("utf-8", "replace") if v else ""


def _topic(topic: Topic) -> bytes:
    if isinstance(topic, str):
        try:
            return topic.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"topic is not encodable as UTF-8: {e}") from None
    if isinstance(topic, bytes):
        return topic
    if isinstance(topic, (bytearray, memoryview)):
        return bytes(topic)
    raise TypeError(f"topic must be str or bytes, not {type(topic).__name__}")


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def _conn(conn: Any) -> int:
    n = _integer(conn, "conn")
    if not 0 <= n <= _U64_MAX:
        raise ValueError(f"conn must be in 0..2**64-1, got {n}")
    return n


def _delta(delta: Any) -> int:
    n = _integer(delta, "delta")
    if not _I64_MIN <= n <= _I64_MAX:
        raise ValueError(f"delta must be in -2**63..2**63-1, got {n}")
    return n


def _config_value(key: str, value: Any) -> bytes:
    """A config value as the string ``hc_config_set`` takes."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return v
        if isinstance(v, int):
            return str(v)
        if isinstance(v, (bytes, bytearray)):
            try:
                return bytes(v).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"config {key!r}: bytes value is not UTF-8") from None
        raise TypeError(
            f"config {key!r} must be str, int or a list of them, not {type(v).__name__}"
        )

    if isinstance(value, (list, tuple)):
        text = ",".join(scalar(v) for v in value)
    else:
        text = scalar(value)
    if "\0" in text:
        raise ValueError(f"config {key!r} must not contain a NUL character")
    return text.encode("utf-8")


def _config_key(key: str) -> bytes:
    if "\0" in key:
        raise ValueError(f"config key {key!r} must not contain a NUL character")
    return key.encode("utf-8")


def _read_string(fn: Any, handle: int, what: str, initial: int) -> str:
    """Calls a ``(node, buf, cap, &len)`` function, growing the buffer."""
    cap = max(1, initial)
    for _ in range(8):
        buf = ctypes.create_string_buffer(cap)
        needed = c_size_t(0)
        status = fn(handle, buf, cap, byref(needed))
        if status == Status.BUFFER_TOO_SMALL:
            # len_out holds the length needed without the NUL.
            cap = max(needed.value + 1, cap * 2)
            continue
        _check(status, what)
        return buf.raw[: needed.value].decode("utf-8")
    raise HeadcountError(Status.BUFFER_TOO_SMALL, f"{what}: output kept growing; gave up")


_OPEN, _CLOSING, _CLOSED = 0, 1, 2

# Bumped in the child after fork(). A node's background threads do not
# survive a fork, so a forked child must neither use a node it inherited nor
# free it (hc_node_free would try to join threads that are not there).
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Node:
    """One headcount node: counts connections per topic, cluster-wide.

    Keyword arguments are configuration keys (every key of the library's
    table, in the top-level README and ``hc_config_set`` in
    ``include/headcount.h``: ``node_name``, ``listen``, ``secret``, ...);
    ints are turned into strings, lists and tuples are
    joined with commas, and ``None`` leaves a key at its default. Unknown keys
    and bad values raise :class:`HeadcountError` with status ``CONFIG``.

    A node is a context manager; :meth:`close` (or leaving the ``with``
    block) leaves the cluster gracefully. Every method is safe to call from
    many threads at once; the GIL is released during each call into the
    library. After :meth:`close`, every method raises
    :class:`HeadcountError` with status ``CLOSED``; a close that races other
    threads' calls waits for them to finish before freeing the node.

    >>> with Node(node_name="a") as node:
    ...     node.track("room:1", 42)
    ...     node.count("room:1")
    True
    1
    """

    _handle: Optional[int]

    # Initial buffer sizes for string results; they grow on
    # BUFFER_TOO_SMALL (tests shrink them to exercise that path).
    _addr_buffer = 64
    _stats_buffer = 4096

    def __init__(self, **config: Any) -> None:
        # Set first so that close()/__del__ work even if start fails.
        self._handle = None
        self._state = _CLOSED
        self._calls = 0
        self._cond = threading.Condition(threading.Lock())
        self._generation = _fork_generation
        lib = _ffi.lib()
        settings = [(_config_key(k), _config_value(k, v)) for k, v in config.items() if v is not None]
        cfg = lib.hc_config_new()
        if not cfg:
            raise MemoryError("hc_config_new returned NULL")
        try:
            for key, value in settings:
                _check(lib.hc_config_set(cfg, key, value), f"config {key!r}")
            out = c_void_p()
            _check(lib.hc_node_start(cfg, byref(out)), "starting the node")
        finally:
            lib.hc_config_free(cfg)
        if not out.value:
            raise HeadcountError(Status.PANIC, "hc_node_start returned OK but no node")
        self._lib = lib
        self._handle = out.value
        self._state = _OPEN

    # -- the handle guard -------------------------------------------------
    #
    # A reader-writer protocol on the raw handle: every call takes a shared
    # reference (``_calls += 1``) while the node is open and drops it when
    # the foreign call returns; close() moves to CLOSING (so no new call
    # starts), waits until ``_calls`` is zero, and only then frees the
    # handle. The lock is held only to update the counters, never across a
    # foreign call.

    def _inherited(self) -> bool:
        """Whether this process is a fork() child of the node's owner."""
        return self._generation != _fork_generation

    def _enter(self) -> int:
        if self._inherited():
            raise HeadcountError(
                Status.CLOSED,
                "this node was created before fork(); a forked child cannot use it (create a new one)",
            )
        with self._cond:
            if self._state != _OPEN or self._handle is None:
                raise HeadcountError(Status.CLOSED, "the node is closed")
            self._calls += 1
            return self._handle

    def _exit(self) -> None:
        with self._cond:
            self._calls -= 1
            if self._calls == 0 and self._state == _CLOSING:
                self._cond.notify_all()

    # -- membership -------------------------------------------------------

    def track(self, topic: Topic, conn: int) -> bool:
        """Counts connection ``conn`` in ``topic``.

        Returns True when the pair was new, False when it was already
        tracked (a second track is not counted twice).
        """
        t, c = _topic(topic), _conn(conn)
        added = c_bool(False)
        h = self._enter()
        try:
            status = self._lib.hc_track(h, t, len(t), c, byref(added))
            if status:
                raise _error(status, "track")
        finally:
            self._exit()
        return bool(added.value)

    def untrack(self, topic: Topic, conn: int) -> bool:
        """Stops counting ``conn`` in ``topic``. Returns True when it was
        tracked; untracking an untracked pair is a no-op returning False."""
        t, c = _topic(topic), _conn(conn)
        removed = c_bool(False)
        h = self._enter()
        try:
            status = self._lib.hc_untrack(h, t, len(t), c, byref(removed))
            if status:
                raise _error(status, "untrack")
        finally:
            self._exit()
        return bool(removed.value)

    def untrack_all(self, conn: int) -> int:
        """Untracks ``conn`` from every topic (the connection went away).
        Returns how many topics it was removed from."""
        c = _conn(conn)
        removed = c_size_t(0)
        h = self._enter()
        try:
            status = self._lib.hc_untrack_all(h, c, byref(removed))
            if status:
                raise _error(status, "untrack_all")
        finally:
            self._exit()
        return int(removed.value)

    def add(self, topic: Topic, delta: int) -> None:
        """Adds ``delta`` (may be negative) to this node's count of ``topic``
        directly, for callers that keep membership themselves. Counts are
        never reported below zero (a negative running sum reads as 0 until
        enough is added back)."""
        t, d = _topic(topic), _delta(delta)
        h = self._enter()
        try:
            status = self._lib.hc_add(h, t, len(t), d)
            if status:
                raise _error(status, "add")
        finally:
            self._exit()

    # -- reads ------------------------------------------------------------

    def _count(self, fn_name: str, topic: Topic) -> int:
        t = _topic(topic)
        out = c_uint64(0)
        h = self._enter()
        try:
            status = getattr(self._lib, fn_name)(h, t, len(t), byref(out))
            if status:
                raise _error(status, fn_name[3:])
        finally:
            self._exit()
        return int(out.value)

    def count(self, topic: Topic) -> int:
        """The cluster-wide count of ``topic``: this node's exact count plus
        the last count each live peer reported."""
        return self._count("hc_count", topic)

    def count_local(self, topic: Topic) -> int:
        """This node's exact count of ``topic``."""
        return self._count("hc_count_local", topic)

    def count_info(self, topic: Topic) -> Dict[str, int]:
        """The count of ``topic`` with how fresh and complete it is.

        Returns a dict with ``count`` (cluster-wide), ``local`` (this node),
        ``peers_reporting`` (live peers that reported the topic),
        ``peers_known`` (peers currently known) and
        ``oldest_report_age_ms`` (age of the oldest report summed in).
        """
        t = _topic(topic)
        info = _ffi.TopicCount()
        h = self._enter()
        try:
            status = self._lib.hc_count_info(h, t, len(t), byref(info))
            if status:
                raise _error(status, "count_info")
        finally:
            self._exit()
        return {field[0]: int(getattr(info, field[0])) for field in _ffi.TopicCount._fields_}

    def total(self) -> int:
        """The sum of all counts of all topics across the cluster."""
        out = c_uint64(0)
        h = self._enter()
        try:
            status = self._lib.hc_total(h, byref(out))
            if status:
                raise _error(status, "total")
        finally:
            self._exit()
        return int(out.value)

    # -- cluster ----------------------------------------------------------

    @property
    def local_addr(self) -> str:
        """The address this node listens on (``host:port``), with the real
        port when ``listen`` asked for port 0."""
        h = self._enter()
        try:
            return _read_string(self._lib.hc_node_local_addr, h, "local_addr", self._addr_buffer)
        finally:
            self._exit()

    def add_peer(self, addr: str) -> None:
        """Connects this node to the node at ``addr`` (``host:port``)."""
        if not isinstance(addr, str):
            raise TypeError(f"addr must be str, not {type(addr).__name__}")
        if "\0" in addr:
            raise ValueError("addr must not contain a NUL character")
        a = addr.encode("utf-8")
        h = self._enter()
        try:
            status = self._lib.hc_node_add_peer(h, a)
            if status:
                raise _error(status, "add_peer")
        finally:
            self._exit()

    def stats(self) -> Dict[str, Any]:
        """The node's counters and peer states (``hc_stats_json``), parsed."""
        h = self._enter()
        try:
            text = _read_string(self._lib.hc_stats_json, h, "stats", self._stats_buffer)
        finally:
            self._exit()
        result: Dict[str, Any] = json.loads(text)
        return result

    # -- lifetime ---------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._state != _OPEN

    def close(self) -> None:
        """Leaves the cluster gracefully (peers drop this node's counts at
        once) and frees the node. Idempotent; waits for calls in progress on
        other threads to finish. Later calls raise ``HeadcountError``
        (``CLOSED``)."""
        cond = getattr(self, "_cond", None)
        if cond is None:
            return
        if self._inherited():
            # The parent still owns it; here it is only forgotten. (The lock
            # is not taken: another thread may have held it at fork time.)
            self._handle = None
            self._state = _CLOSED
            return
        with cond:
            if self._state == _CLOSED:
                return
            if self._state == _CLOSING:
                # Another thread is freeing it: return once it is gone.
                while self._state != _CLOSED:
                    cond.wait()
                return
            self._state = _CLOSING
            while self._calls:
                cond.wait()
            handle, self._handle = self._handle, None
        try:
            if handle:
                self._lib.hc_node_free(handle)
        finally:
            with cond:
                self._state = _CLOSED
                cond.notify_all()

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = {_OPEN: "open", _CLOSING: "closing", _CLOSED: "closed"}[self._state]
        return f"<headcount.Node {state}>"
