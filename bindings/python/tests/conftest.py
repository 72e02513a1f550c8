"""Fixtures shared by the headcount binding's tests."""

from __future__ import annotations

from typing import Iterator

import pytest

import headcount


@pytest.fixture
def node() -> Iterator[headcount.Node]:
    """A local-only node, closed after the test."""
    with headcount.Node(node_name="t", flush_interval_ms=20) as n:
        yield n
