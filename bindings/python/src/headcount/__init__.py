"""headcount: exact cluster-wide counts of connected users per topic.

A pure-Python (ctypes) binding of libheadcount's C ABI::

    import headcount

    with headcount.Node(node_name="a", flush_interval_ms=50) as node:
        node.track("room:1", 42)        # connection 42 joins room:1
        node.count("room:1")            # -> 1, summed over the cluster

The shared library is found through ``HEADCOUNT_LIB``, then a copy inside
this package, then the Cargo workspace's ``target/`` (see
:mod:`headcount._ffi`).
"""

from ._ffi import LibraryNotFoundError, library_path
from ._node import HeadcountError, Node, Status, Topic, library_version

__version__ = "0.1.0"

__all__ = [
    "Node",
    "HeadcountError",
    "Status",
    "Topic",
    "LibraryNotFoundError",
    "library_path",
    "library_version",
    "__version__",
]
