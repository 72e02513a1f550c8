"""Every method of Node on a local-only node, and every error path."""

from __future__ import annotations

import gc
import os
import pickle
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import headcount
from _support import wait_until
from headcount import HeadcountError, Node, Status

# -- membership ---------------------------------------------------------------


def test_track_is_idempotent_and_counts(node: Node) -> None:
    assert node.track("room:1", 42) is True
    assert node.track("room:1", 42) is False
    assert node.track("room:1", 43) is True
    assert node.count("room:1") == 2
    assert node.count_local("room:1") == 2


def test_untrack(node: Node) -> None:
    node.track("room:1", 1)
    assert node.untrack("room:1", 1) is True
    assert node.untrack("room:1", 1) is False
    assert node.untrack("never-seen", 1) is False
    assert node.count("room:1") == 0


def test_untrack_all(node: Node) -> None:
    for topic in ("a", "b", "c"):
        node.track(topic, 7)
    node.track("a", 8)
    assert node.untrack_all(7) == 3
    assert node.untrack_all(7) == 0
    assert node.untrack_all(12345) == 0
    assert [node.count(t) for t in ("a", "b", "c")] == [1, 0, 0]


def test_add_is_raw_and_never_reads_below_zero(node: Node) -> None:
    assert node.add("raw", 5) is None
    assert node.count("raw") == 5
    node.add("raw", -2)
    assert node.count_local("raw") == 3
    node.add("raw", -10)
    assert node.count("raw") == 0
    node.add("raw", 0)
    assert node.count("raw") == 0


def test_str_and_bytes_topics_are_the_same_topic(node: Node) -> None:
    node.track("café", 1)
    node.track("café".encode("utf-8"), 2)
    node.track(bytearray("café".encode("utf-8")), 3)
    node.track(memoryview("café".encode("utf-8")), 4)
    assert node.count("café") == 4
    assert node.count(b"caf\xc3\xa9") == 4


def test_topics_are_arbitrary_bytes(node: Node) -> None:
    odd = b"\x00\xff\x00nul inside"
    assert node.track(odd, 1)
    assert node.count(odd) == 1
    assert node.count(b"\x00\xff\x00") == 0


def test_conn_range_edges(node: Node) -> None:
    assert node.track("edge", 0)
    assert node.track("edge", 2**64 - 1)
    assert node.count("edge") == 2
    assert node.untrack("edge", 2**64 - 1)
    assert node.untrack_all(0) == 1


def test_delta_range_edges(node: Node) -> None:
    node.add("big", 2**63 - 1)
    assert node.count("big") == 2**63 - 1
    node.add("big", -(2**63) + 1)
    assert node.count("big") == 0


# -- reads ----------------------------------------------------------------------


def test_count_of_unknown_topic_is_zero(node: Node) -> None:
    assert node.count("nobody") == 0
    assert node.count_local("nobody") == 0


def test_count_info_local_node(node: Node) -> None:
    node.track("room", 1)
    node.track("room", 2)
    info = node.count_info("room")
    assert info == {
        "count": 2,
        "local": 2,
        "peers_reporting": 0,
        "peers_known": 0,
        "oldest_report_age_ms": 0,
    }
    assert all(type(v) is int for v in info.values())


def test_total(node: Node) -> None:
    assert node.total() == 0
    node.track("a", 1)
    node.track("a", 2)
    node.track("b", 1)
    node.add("c", 4)
    assert node.total() == 7


def test_stats(node: Node) -> None:
    node.track("a", 1)
    node.track("b", 1)
    stats = node.stats()
    assert isinstance(stats, dict)
    assert stats["node"] == "t"
    assert stats["topics"] >= 2
    assert stats["tracked_pairs"] == 2
    assert stats["total_local"] == 2


def test_metrics_server_runs_inside_the_embedding_process() -> None:
    """metrics_listen is served by the library itself, through the C ABI."""
    import urllib.error
    import urllib.request

    with Node(node_name="scraped", metrics_listen="127.0.0.1:0") as n:
        n.track("room:1", 7)
        base = "http://" + n.stats()["metrics_listen"]
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            assert (r.status, r.read()) == (200, b"ok\n")
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            assert "headcount_tracked_pairs 1" in r.read().decode().splitlines()
    # Closed with the node.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(base + "/healthz", timeout=5)


def test_version_and_library_path() -> None:
    v = headcount.library_version()
    assert v and v[0].isdigit(), v
    # The library is compiled into the package's extension module.
    path = Path(headcount.library_path())
    assert path.is_file() and path.parent == Path(headcount.__file__).resolve().parent
    assert path.name.startswith("_native.") and path.suffix in (".so", ".pyd")
    assert headcount.__version__


# -- config -----------------------------------------------------------------


def test_config_keywords_are_passed(node: Node) -> None:
    with Node(node_name="named", max_topic_len=8, gc_after_ms=1000, down_grace_ms=0) as n:
        assert n.stats()["node"] == "named"
        n.track(b"12345678", 1)
        with pytest.raises(HeadcountError) as e:
            n.track(b"123456789", 1)
        assert e.value.status == Status.INVALID_TOPIC


def test_config_none_means_default() -> None:
    with Node(node_name=None, listen=None, seeds=None) as n:
        assert n.stats()["node"]


def test_config_unknown_key() -> None:
    with pytest.raises(HeadcountError) as e:
        Node(colour="blue")
    assert e.value.status == Status.CONFIG
    assert "colour" in str(e.value)
    assert "unknown" in e.value.message


def test_config_bad_value() -> None:
    with pytest.raises(HeadcountError) as e:
        Node(flush_interval_ms=0)
    assert e.value.status == Status.CONFIG
    assert "flush_interval_ms" in str(e.value)
    assert "range" in e.value.message


def test_config_lists_are_joined() -> None:
    # A bad second element proves that the list reached the library whole.
    with pytest.raises(HeadcountError) as e:
        Node(seeds=["127.0.0.1:7401", "not-an-address"], secret="s")
    assert e.value.status == Status.CONFIG
    assert "not-an-address" in e.value.message


def test_config_network_needs_a_secret() -> None:
    with pytest.raises(HeadcountError) as e:
        Node(listen="127.0.0.1:0")
    assert e.value.status == Status.CONFIG
    assert "secret" in e.value.message


@pytest.mark.parametrize("value", [1.5, object(), {"a": 1}, [1.5], {1, 2}])
def test_config_wrong_type(value: Any) -> None:
    with pytest.raises(TypeError):
        Node(node_name=value)


def test_config_nul_is_rejected() -> None:
    with pytest.raises(ValueError):
        Node(node_name="a\0b")
    with pytest.raises(ValueError):
        Node(**{"node\0name": "a"})


# -- argument checking before C -------------------------------------------------


@pytest.mark.parametrize("topic", [None, 1, 1.0, ["a"], object()])
def test_topic_wrong_type(node: Node, topic: Any) -> None:
    for call in (
        lambda: node.track(topic, 1),
        lambda: node.untrack(topic, 1),
        lambda: node.add(topic, 1),
        lambda: node.count(topic),
        lambda: node.count_local(topic),
        lambda: node.count_info(topic),
    ):
        with pytest.raises(TypeError, match="topic"):
            call()


def test_topic_not_utf8_encodable(node: Node) -> None:
    with pytest.raises(ValueError):
        node.track("\udcff", 1)


@pytest.mark.parametrize("conn", ["1", 1.0, None, True, b"1"])
def test_conn_wrong_type(node: Node, conn: Any) -> None:
    with pytest.raises(TypeError, match="conn"):
        node.track("a", conn)
    with pytest.raises(TypeError, match="conn"):
        node.untrack("a", conn)
    with pytest.raises(TypeError, match="conn"):
        node.untrack_all(conn)


@pytest.mark.parametrize("conn", [-1, 2**64, 2**100, -(2**64)])
def test_conn_out_of_range(node: Node, conn: int) -> None:
    # Out of range is a ValueError naming the argument (not a silent wrap,
    # nor an OverflowError).
    with pytest.raises(ValueError, match="conn"):
        node.track("a", conn)
    with pytest.raises(ValueError, match="conn"):
        node.untrack("a", conn)
    with pytest.raises(ValueError, match="conn"):
        node.untrack_all(conn)
    assert node.total() == 0


@pytest.mark.parametrize("delta", [2**63, -(2**63) - 1])
def test_delta_out_of_range(node: Node, delta: int) -> None:
    with pytest.raises(ValueError, match="delta"):
        node.add("a", delta)
    assert node.total() == 0


@pytest.mark.parametrize("delta", ["1", 1.0, None, False])
def test_delta_wrong_type(node: Node, delta: Any) -> None:
    with pytest.raises(TypeError, match="delta"):
        node.add("a", delta)


def test_int_like_conn_is_accepted(node: Node) -> None:
    class Id:
        def __index__(self) -> int:
            return 9

    assert node.track("a", Id())
    assert node.untrack("a", 9)


def test_arguments_are_checked_before_the_library() -> None:
    # On a closed node any call that reached the library side would raise
    # CLOSED; a type or range error proves the check came first.
    n = Node()
    n.close()
    with pytest.raises(TypeError):
        n.track(5, 1)
    with pytest.raises(ValueError):
        n.track("a", -1)
    with pytest.raises(ValueError):
        n.add("a", 2**63)
    with pytest.raises(TypeError):
        n.add_peer(b"127.0.0.1:1")


# -- errors from the library ----------------------------------------------------


def test_empty_topic(node: Node) -> None:
    for call in (
        lambda: node.track("", 1),
        lambda: node.untrack(b"", 1),
        lambda: node.add("", 1),
        lambda: node.count(""),
        lambda: node.count_local(""),
        lambda: node.count_info(""),
    ):
        with pytest.raises(HeadcountError) as e:
            call()
        assert e.value.status == Status.INVALID_TOPIC
        assert "empty" in e.value.message


def test_oversize_topic(node: Node) -> None:
    node.track("x" * 1024, 1)
    with pytest.raises(HeadcountError) as e:
        node.track("x" * 1025, 1)
    assert e.value.status == Status.INVALID_TOPIC
    assert "1025" in e.value.message
    with pytest.raises(HeadcountError) as e:
        node.count(b"y" * 5000)
    assert e.value.status == Status.INVALID_TOPIC


def test_add_peer_bad_address(node: Node) -> None:
    with pytest.raises(HeadcountError) as e:
        node.add_peer("not an address")
    assert e.value.status in (Status.INVALID_ARG, Status.CONFIG)
    assert e.value.message


def test_add_peer_wrong_type(node: Node) -> None:
    with pytest.raises(TypeError):
        node.add_peer(1234)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        node.add_peer("127.0.0.1:1\0")


def test_error_is_an_exception_with_status_and_message(node: Node) -> None:
    with pytest.raises(HeadcountError) as e:
        node.track("", 1)
    err = e.value
    assert isinstance(err, Exception)
    assert isinstance(err.status, Status)
    assert err.status.name in str(err)
    assert err.message in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert (again.status, again.message) == (err.status, err.message)


def test_status_matches_the_c_header() -> None:
    # The statuses are the C ABI's hc_status numbers, so an error reads the
    # same from every language.
    header = (Path(__file__).resolve().parents[3] / "include" / "headcount.h").read_text()
    body = header[: header.index("} hc_status;")]
    body = body[body.rindex("typedef enum {") :]
    declared = {name: int(value) for name, value in re.findall(r"\b(HC_[A-Z_]+) = (\d+)", body)}
    assert declared, "no hc_status values found in include/headcount.h"
    assert {("HC_OK" if s == Status.OK else f"HC_ERR_{s.name}"): int(s) for s in Status} == declared


def test_unknown_status_is_kept() -> None:
    s = Status(99)
    assert int(s) == 99 and s.name == "UNKNOWN_99"
    assert HeadcountError(99, "x").status == 99


# -- lifetime -------------------------------------------------------------------


def test_context_manager_closes() -> None:
    with Node() as n:
        n.track("a", 1)
        assert not n.closed
    assert n.closed
    with pytest.raises(HeadcountError) as e:
        n.count("a")
    assert e.value.status == Status.CLOSED


def test_close_is_idempotent() -> None:
    n = Node()
    n.close()
    n.close()
    assert n.closed
    assert "closed" in repr(n)


def test_every_method_raises_closed_after_close() -> None:
    n = Node()
    n.close()
    calls = [
        lambda: n.track("a", 1),
        lambda: n.untrack("a", 1),
        lambda: n.untrack_all(1),
        lambda: n.add("a", 1),
        lambda: n.count("a"),
        lambda: n.count_local("a"),
        lambda: n.count_info("a"),
        lambda: n.total(),
        lambda: n.local_addr,
        lambda: n.add_peer("127.0.0.1:1"),
        lambda: n.stats(),
    ]
    for call in calls:
        with pytest.raises(HeadcountError) as e:
            call()
        assert e.value.status == Status.CLOSED
        assert "closed" in e.value.message


def test_dropping_an_unclosed_node_leaves_the_cluster() -> None:
    # An unclosed node that is garbage collected is closed: it says BYE, so
    # its peer drops its counts at once, long before down_after_ms (60 s)
    # of silence could.
    slow = dict(secret="s", flush_interval_ms=20, down_after_ms=60_000)
    with Node(node_name="a", listen="127.0.0.1:0", **slow) as a:
        b = Node(node_name="b", seeds=[a.local_addr], **slow)
        b.track("room", 1)
        wait_until(lambda: a.count("room"), lambda v: v == 1, what="b's count reaches a")
        del b
        gc.collect()
        wait_until(lambda: a.count("room"), lambda v: v == 0, timeout=10, what="b's count dropped")


def test_close_twice_then_drop() -> None:
    n = Node()
    n.close()
    n.close()
    assert n.closed
    del n
    gc.collect()


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_failed_start_leaves_nothing_to_free() -> None:
    with pytest.raises(HeadcountError):
        Node(flush_interval_ms=-1)
    gc.collect()  # __del__ of the half-built node must not raise or free


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_neither_uses_nor_frees_the_parents_node(node: Node) -> None:
    node.track("a", 1)
    pid = os.fork()
    if pid == 0:  # child: report through the exit code, never return
        code = 0
        try:
            try:
                node.count("a")
                code = 2
            except HeadcountError as e:
                code = 0 if e.status == Status.CLOSED and "fork" in e.message else 3
            node.close()  # must not hang joining threads that are not here
            node.close()
        except BaseException:
            code = 4
        os._exit(code)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("forked child hung")
        time.sleep(0.01)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    # The parent's node is untouched.
    assert node.count("a") == 1
