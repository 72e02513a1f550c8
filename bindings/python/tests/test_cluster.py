"""Nodes on loopback: three in one process converging, peers added at run
time, a wrong secret refused, and a node in a child process stopped
(SIGSTOP) or killed (SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import ExitStack
from typing import Iterator, List

import pytest

from _support import FAST, SECRET, wait_until
from headcount import HeadcountError, Node, Status


def test_local_only_node_has_no_listener(node: Node) -> None:
    # A node without listen reports the empty string (hc_node_local_addr
    # writes "" and returns HC_OK).
    assert node.local_addr == ""


def test_bad_listen_address() -> None:
    with pytest.raises(HeadcountError) as e:
        Node(listen="no-port", secret=SECRET)
    assert e.value.status == Status.CONFIG


@pytest.fixture
def cluster() -> Iterator[List[Node]]:
    """Three nodes, b and c seeded with a only: gossip makes the mesh."""
    with ExitStack() as stack:
        a = stack.enter_context(Node(node_name="a", listen="127.0.0.1:0", **FAST))
        b = stack.enter_context(
            Node(node_name="b", listen="127.0.0.1:0", seeds=[a.local_addr], **FAST)
        )
        c = stack.enter_context(
            Node(node_name="c", listen="127.0.0.1:0", seeds=(a.local_addr,), **FAST)
        )
        yield [a, b, c]


def counts(nodes: List[Node], topic: str) -> List[int]:
    return [n.count(topic) for n in nodes]


def test_local_addr_is_loopback_with_a_real_port() -> None:
    with Node(listen="127.0.0.1:0", secret=SECRET) as n:
        host, port = n.local_addr.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert 0 < int(port) < 65536


def test_three_nodes_converge(cluster: List[Node]) -> None:
    a, b, c = cluster
    for i in range(3):
        a.track("room", 100 + i)
    for i in range(5):
        b.track("room", 200 + i)
    for i in range(7):
        c.track(b"room", 300 + i)
    c.add("raw", 4)

    wait_until(lambda: counts(cluster, "room"), lambda v: v == [15, 15, 15], what="room == 15 everywhere")
    wait_until(lambda: counts(cluster, "raw"), lambda v: v == [4, 4, 4], what="raw == 4 everywhere")
    assert [n.count_local("room") for n in cluster] == [3, 5, 7]
    wait_until(lambda: [n.total() for n in cluster], lambda v: v == [19, 19, 19], what="totals")

    info = wait_until(
        lambda: a.count_info("room"),
        lambda i: i["peers_reporting"] == 2,
        what="both peers reporting to a",
    )
    assert info["count"] == 15 and info["local"] == 3 and info["peers_known"] == 2

    stats = a.stats()
    assert stats["node"] == "a"
    assert len(stats["peers"]) == 2

    # Leaves propagate too.
    assert b.untrack_all(200) == 1
    b.untrack("room", 201)
    wait_until(lambda: counts(cluster, "room"), lambda v: v == [13, 13, 13], what="room == 13")

    # A graceful close (BYE) drops c's counts everywhere.
    c.close()
    wait_until(lambda: counts([a, b], "room"), lambda v: v == [6, 6], what="c's counts dropped")
    wait_until(lambda: counts([a, b], "raw"), lambda v: v == [0, 0], what="c's raw count dropped")


def test_add_peer_joins_a_cluster() -> None:
    with Node(node_name="a", listen="127.0.0.1:0", **FAST) as a, Node(
        node_name="d", listen="127.0.0.1:0", **FAST
    ) as d:
        a.track("lobby", 1)
        d.track("lobby", 2)
        assert counts([a, d], "lobby") == [1, 1]
        d.add_peer(a.local_addr)
        wait_until(lambda: counts([a, d], "lobby"), lambda v: v == [2, 2], what="lobby == 2")


def test_wrong_secret_gets_no_state() -> None:
    with Node(node_name="a", listen="127.0.0.1:0", **FAST) as a:
        a.track("secret-room", 1)
        bad = dict(FAST, secret="not-the-secret")
        with Node(node_name="x", listen="127.0.0.1:0", seeds=[a.local_addr], **bad) as x:
            x.track("secret-room", 2)
            # Give it many flush intervals to (wrongly) converge.
            time.sleep(0.5)
            assert a.count("secret-room") == 1
            assert x.count("secret-room") == 1


CHILD = textwrap.dedent(
    """
    import sys, time
    import headcount
    seed, secret = sys.argv[1], sys.argv[2]
    node = headcount.Node(node_name="child", listen="127.0.0.1:0", seeds=[seed],
                          secret=secret, flush_interval_ms=20, down_after_ms=300)
    for conn in range(6):
        node.track("room", 1000 + conn)
    node.add("child-only", 3)
    print(node.local_addr, flush=True)
    time.sleep(60)  # bounded: the test kills it long before
    """
)


def start_child(seed: str) -> "subprocess.Popen[str]":
    """A node in a child Python process, seeded with ``seed``; returns once
    it has started and tracked (6 conns in "room", +3 raw in "child-only")."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, seed, SECRET], stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline() if child.stdout else ""
    if not line.strip():
        child.kill()
        pytest.fail(f"child did not start (exit code {child.wait(10)})")
    return child


def reap(child: "subprocess.Popen[str]") -> None:
    if child.poll() is None:
        child.kill()
    child.wait(10)
    if child.stdout:
        child.stdout.close()


def test_sigstopped_child_is_dropped_after_down_after_ms() -> None:
    # A stopped process keeps its sockets open: only silence for
    # down_after_ms (300) tells the others it is gone.
    with Node(node_name="a", listen="127.0.0.1:0", **FAST) as a:
        a.track("room", 1)
        child = start_child(a.local_addr)
        try:
            wait_until(lambda: a.count("room"), lambda v: v == 7, what="child counted")
            os.kill(child.pid, signal.SIGSTOP)
            t0 = time.monotonic()
            wait_until(lambda: a.count("room"), lambda v: v == 1, timeout=5, what="stopped child dropped")
            assert time.monotonic() - t0 >= 0.2, "dropped before down_after_ms of silence"
        finally:
            reap(child)


def test_sigkilled_child_process_is_dropped() -> None:
    with Node(node_name="a", listen="127.0.0.1:0", **FAST) as a, Node(
        node_name="b", listen="127.0.0.1:0", seeds=[], **FAST
    ) as b:
        b.add_peer(a.local_addr)
        a.track("room", 1)
        b.track("room", 2)
        child = start_child(a.local_addr)
        try:
            wait_until(lambda: counts([a, b], "room"), lambda v: v == [8, 8], what="child counted")
            wait_until(lambda: counts([a, b], "child-only"), lambda v: v == [3, 3], what="child raw")
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(10) == -signal.SIGKILL
            # down_after_ms=300: gone within a few seconds at most (the
            # closed socket usually makes it immediate).
            wait_until(lambda: counts([a, b], "room"), lambda v: v == [2, 2], timeout=5, what="child dropped")
            assert counts([a, b], "child-only") == [0, 0]
            assert [a.total(), b.total()] == [2, 2]
        finally:
            reap(child)
