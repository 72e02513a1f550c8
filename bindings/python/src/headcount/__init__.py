"""headcount: exact cluster-wide counts of connected users per topic.

A native extension (``headcount._native``, built from the headcount Rust
library by ``pip install``)::

    import headcount

    with headcount.Node(node_name="a", flush_interval_ms=50) as node:
        node.track("room:1", 42)        # connection 42 joins room:1
        node.count("room:1")            # -> 1, summed over the cluster
        with node.watch("room:", initial=True) as w:
            w.next(timeout=1.0)         # -> [Change(topic='room:1', count=1, users=1)]

The library's log lines go to the :mod:`logging` logger ``headcount``.
"""

from ._node import (
    CONFIG_KEYS,
    Change,
    HeadcountError,
    LibraryNotFoundError,
    Node,
    Status,
    Topic,
    Watch,
    library_path,
    library_version,
)

__version__ = "0.1.0"

__all__ = [
    "Node",
    "Watch",
    "Change",
    "HeadcountError",
    "Status",
    "Topic",
    "CONFIG_KEYS",
    "LibraryNotFoundError",
    "library_path",
    "library_version",
    "__version__",
]
