"""Helpers shared by the tests (imported as ``_support``).

Every cluster test runs on loopback only (127.0.0.1) and every wait is
bounded by a deadline.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, Optional, TypeVar

import pytest

import headcount

T = TypeVar("T")

#: The shared cluster secret every test cluster uses.
SECRET = "test-secret"
#: Short intervals so that convergence and failure detection are quick.
FAST = dict(flush_interval_ms=20, down_after_ms=300, secret=SECRET)


@functools.lru_cache(maxsize=None)
def clustering_unavailable() -> Optional[str]:
    """Why clustering cannot be used with this library, or None if it can.

    TEMPORARY: until the cluster branch lands, ``hc_node_start`` with
    ``listen`` returns HC_ERR_CONFIG. Any other failure is a real error.
    """
    try:
        node = headcount.Node(listen="127.0.0.1:0", secret="probe")
    except headcount.HeadcountError as e:
        if e.status == headcount.Status.CONFIG:
            return f"clustering unavailable in this libheadcount build: {e}"
        raise
    node.close()
    return None


#: Marks a test that needs clustering (listen/seeds). Temporary: see
#: clustering_unavailable().
needs_cluster = pytest.mark.skipif(
    clustering_unavailable() is not None,
    reason=clustering_unavailable() or "",
)


def wait_until(
    probe: Callable[[], T],
    want: Callable[[T], bool],
    timeout: float = 10.0,
    what: str = "condition",
) -> T:
    """Polls ``probe()`` until ``want(value)``; fails with the last value
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not want(value):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last value: {value!r}")
        time.sleep(0.01)
        value = probe()
    return value
