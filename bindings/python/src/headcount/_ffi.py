"""Locating and loading libheadcount, and declaring the C ABI.

Every function of the C ABI used by this package is declared here with its
``argtypes`` and ``restype``, exactly as in ``include/headcount.h``; nothing
else in the package touches ctypes function objects directly.

The library is a :class:`ctypes.CDLL`, so each foreign call releases the GIL
for its duration: Python threads calling into one node run truly in
parallel (the library itself is thread-safe).

Lookup order (the first that exists wins):

1. the ``HEADCOUNT_LIB`` environment variable: a path to the library file;
2. a copy shipped inside this package, next to ``__init__.py``;
3. the Cargo workspace build output: from this package's directory upwards,
   the first ``target/`` directory holding ``release/`` or ``debug/``
   ``libheadcount.so`` (when both exist, the more recently built one), and
   ``$CARGO_TARGET_DIR`` likewise when it is set.

When none is found, :class:`LibraryNotFoundError` lists every path tried.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from ctypes import (
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import List, Optional

__all__ = ["LibraryNotFoundError", "lib", "library_path", "TopicCount", "LIB_ENV"]

#: Environment variable naming the library file to load.
LIB_ENV = "HEADCOUNT_LIB"

if sys.platform == "darwin":
    _LIB_NAME = "libheadcount.dylib"
elif sys.platform == "win32":
    _LIB_NAME = "headcount.dll"
else:
    _LIB_NAME = "libheadcount.so"


class LibraryNotFoundError(OSError):
    """libheadcount could not be found or loaded.

    ``tried`` lists every path that was considered, in order, each with why
    it was not used.
    """

    def __init__(self, message: str, tried: List[str]) -> None:
        super().__init__(message)
        self.tried = tried


class TopicCount(Structure):
    """``hc_topic_count``: a topic's count with its freshness and coverage."""

    _fields_ = [
        ("count", c_uint64),
        ("local", c_uint64),
        ("peers_reporting", c_uint32),
        ("peers_known", c_uint32),
        ("oldest_report_age_ms", c_uint64),
    ]


# hc_status is a C enum: an int on every ABI we support.
_status = c_int
_node_p = c_void_p
_config_p = c_void_p

# name -> (restype, argtypes), in the order of the contract (issue 4).
_SIGNATURES = {
    "hc_config_new": (_config_p, []),
    "hc_config_set": (_status, [_config_p, c_char_p, c_char_p]),
    "hc_config_free": (None, [_config_p]),
    "hc_node_start": (_status, [_config_p, POINTER(_node_p)]),
    "hc_node_free": (None, [_node_p]),
    "hc_node_local_addr": (_status, [_node_p, c_char_p, c_size_t, POINTER(c_size_t)]),
    "hc_node_add_peer": (_status, [_node_p, c_char_p]),
    "hc_track": (_status, [_node_p, c_char_p, c_size_t, c_uint64, POINTER(c_bool)]),
    "hc_untrack": (_status, [_node_p, c_char_p, c_size_t, c_uint64, POINTER(c_bool)]),
    "hc_untrack_all": (_status, [_node_p, c_uint64, POINTER(c_size_t)]),
    "hc_add": (_status, [_node_p, c_char_p, c_size_t, c_int64]),
    "hc_count": (_status, [_node_p, c_char_p, c_size_t, POINTER(c_uint64)]),
    "hc_count_local": (_status, [_node_p, c_char_p, c_size_t, POINTER(c_uint64)]),
    "hc_count_info": (_status, [_node_p, c_char_p, c_size_t, POINTER(TopicCount)]),
    "hc_total": (_status, [_node_p, POINTER(c_uint64)]),
    "hc_stats_json": (_status, [_node_p, c_char_p, c_size_t, POINTER(c_size_t)]),
    "hc_status_str": (c_char_p, [_status]),
    "hc_last_error": (c_char_p, []),
    "hc_version": (c_char_p, []),
}


def _candidates() -> "tuple[List[Path], List[str]]":
    """Every path to try, in order (without the environment override), and
    notes on places searched that yielded no path."""
    here = Path(__file__).resolve().parent
    found: List[Path] = [here / _LIB_NAME]

    def from_target(target: Path) -> List[Path]:
        builds = [target / "release" / _LIB_NAME, target / "debug" / _LIB_NAME]
        existing = [p for p in builds if p.is_file()]
        # The newest build first: a stale release build must not shadow the
        # debug build that was just made (or the other way round).
        existing.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        return existing + [p for p in builds if p not in existing]

    notes: List[str] = []
    env_target = os.environ.get("CARGO_TARGET_DIR")
    if env_target:
        found += from_target(Path(env_target))
    for parent in here.parents:
        target = parent / "target"
        if (target / "release" / _LIB_NAME).is_file() or (target / "debug" / _LIB_NAME).is_file():
            found += from_target(target)
            break
        if (parent / "Cargo.toml").is_file() and (parent / "ffi").is_dir():
            # The workspace root, but nothing built yet: say where it would be.
            found += from_target(target)
            break
    else:
        notes.append(
            f"no Cargo workspace or target/{{release,debug}}/{_LIB_NAME} in any directory above {here}"
        )
    return found, notes


def _declare(cdll: ctypes.CDLL) -> ctypes.CDLL:
    missing = [name for name in _SIGNATURES if not hasattr(cdll, name)]
    if missing:
        raise LibraryNotFoundError(
            f"{cdll._name} is not a compatible libheadcount: it lacks {', '.join(missing)}",
            [cdll._name],
        )
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(cdll, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return cdll


def _load() -> "tuple[ctypes.CDLL, str]":
    tried: List[str] = []
    env = os.environ.get(LIB_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise LibraryNotFoundError(
                f"{LIB_ENV}={env} does not name a file (unset it to search the default places)",
                [f"{env} (from {LIB_ENV}): no such file"],
            )
        try:
            return _declare(ctypes.CDLL(str(path))), str(path)
        except OSError as e:
            if isinstance(e, LibraryNotFoundError):
                raise
            raise LibraryNotFoundError(f"cannot load {env} (from {LIB_ENV}): {e}", [env]) from e
    candidates, notes = _candidates()
    for path in candidates:
        if not path.is_file():
            tried.append(f"{path}: no such file")
            continue
        try:
            return _declare(ctypes.CDLL(str(path))), str(path)
        except LibraryNotFoundError:
            raise
        except OSError as e:
            tried.append(f"{path}: {e}")
    tried += notes
    lines = "\n  ".join(tried) if tried else "(nothing)"
    raise LibraryNotFoundError(
        f"cannot find {_LIB_NAME}. Build it with `cargo build -p headcount-ffi` "
        f"(or --release) in the headcount workspace, or set {LIB_ENV} to its path. Tried:\n  {lines}",
        tried,
    )


_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_path: Optional[str] = None


def lib() -> ctypes.CDLL:
    """The loaded library (loaded on first use, once per process)."""
    global _lib, _path
    loaded = _lib
    if loaded is not None:
        return loaded
    with _lock:
        if _lib is None:
            _lib, _path = _load()
        return _lib


def library_path() -> str:
    """The path of the loaded library (loading it if needed)."""
    lib()
    assert _path is not None
    return _path
