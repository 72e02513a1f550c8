"""The :class:`Node` class, :class:`Status` and :class:`HeadcountError`.

``Node``, ``Watch`` and ``Change`` are the native extension's classes
(``headcount._native``); the exception and the status enum are defined here, in Python, and the extension
raises them.

>>> with Node(node_name="a") as node:
...     node.track("room:1", 42)
...     node.count("room:1")
True
1

>>> with Node(node_name="a", flush_interval_ms=10) as node:
...     node.track("room:1", 42)
...     node.track("room:1", 43)
...     node.track("lobby", 42)
...     with node.watch("room:", initial=True) as w:
...         w.next(timeout=1.0)
...     node.top(10)
True
True
True
[Change(topic='room:1', count=2, users=2)]
[('room:1', 2), ('lobby', 1)]
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, List, Optional, Union

__all__ = [
    "Node",
    "Watch",
    "Change",
    "Status",
    "HeadcountError",
    "Topic",
    "CONFIG_KEYS",
    "LibraryNotFoundError",
    "library_path",
    "library_version",
]

#: A topic: ``str`` (encoded as UTF-8) or bytes (``bytes``, ``bytearray``,
#: ``memoryview``). Topics are 1 to ``max_topic_len`` bytes (default 1024).
Topic = Union[str, bytes, bytearray, memoryview]


class LibraryNotFoundError(ImportError):
    """The native extension ``headcount._native`` is missing or cannot be
    loaded: the package was not installed with ``pip install`` (which builds
    it), or was built for another Python or platform.

    ``tried`` lists what was looked for.
    """

    def __init__(self, message: str, tried: List[str]) -> None:
        super().__init__(message)
        self.tried = tried


try:
    from . import _native
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    _here = Path(__file__).resolve().parent
    raise LibraryNotFoundError(
        f"the headcount native extension (headcount._native) is missing from {_here} or cannot be "
        f"loaded ({e}); install the package with `pip install <checkout>/bindings/python`, "
        "which builds it (needs a Rust toolchain)",
        [str(_here / "_native.*.so")],
    ) from e

Node = _native.Node
Watch = _native.Watch
Change = _native.Change

#: Every configuration key ``Node(...)`` accepts (the library's own list).
CONFIG_KEYS = tuple(_native.CONFIG_KEYS)


class Status(enum.IntEnum):
    """The result code of a failed call: the C ABI's ``hc_status`` numbers,
    so an error reads the same from every language."""

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
    """An error reported by the library (or a call on a closed node).

    ``status`` is the :class:`Status`; ``message`` the library's message,
    starting with the method that failed (``"track: topic is empty; ..."``).
    """

    def __init__(self, status: Union[Status, int], message: str) -> None:
        self.status = Status(status)
        self.message = message
        super().__init__(f"{message} ({self.status.name})")

    def __reduce__(self) -> Any:
        return (type(self), (int(self.status), self.message))


def library_version() -> str:
    """The version of the headcount library compiled into the extension."""
    return _native.library_version()


def library_path() -> str:
    """The path of the native extension module holding the library."""
    return str(Path(_native.__file__).resolve())
