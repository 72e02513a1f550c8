"""Helpers shared by the tests (imported as ``_support``).

Every cluster test runs on loopback only (127.0.0.1) and every wait is
bounded by a deadline.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest


T = TypeVar("T")

#: The shared cluster secret every test cluster uses.
SECRET = "test-secret"
#: Short intervals so that convergence and failure detection are quick.
FAST = dict(flush_interval_ms=20, down_after_ms=300, secret=SECRET)


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


def mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    """``mypy --strict`` on ``code`` (dedented), against the installed stub."""
    src = tmp_path / "app.py"
    src.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
