"""The change feed from Python: ``Node.watch`` (blocking, iteration, asyncio
through the fd), closing from another thread, a watch outliving its node,
and ``Node.top`` against a brute-force answer."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple, Union

import pytest

from _support import FAST, mypy, wait_until
from headcount import Change, HeadcountError, Node, Status, Watch

TopicT = Union[str, bytes]


@pytest.fixture
def fast() -> Iterator[Node]:
    """A local-only node flushing every 10 ms."""
    with Node(node_name="w", flush_interval_ms=10, flush_mode="fixed") as n:
        yield n


def drain(w: Watch, seen: Dict[TopicT, int], want: Dict[TopicT, int], timeout: float = 10.0) -> None:
    """Reads batches into ``seen`` (topic -> last count) until every topic
    of ``want`` has its value there, checking each batch names a topic once."""
    deadline = time.monotonic() + timeout
    while any(seen.get(t) != n for t, n in want.items()):
        if time.monotonic() > deadline:
            pytest.fail(f"watch did not reach {want}; saw {seen}")
        batch = w.next(timeout=0.5)
        topics = [c.topic for c in batch]
        assert len(topics) == len(set(topics)), f"a topic twice in one batch: {batch}"
        for c in batch:
            assert c.users == c.count
            seen[c.topic] = c.count


def test_initial_batch_holds_every_non_zero_matching_topic(fast: Node) -> None:
    fast.track("room:1", 1)
    fast.track("room:1", 2)
    fast.track("room:2", 1)
    fast.track("lobby", 1)
    fast.track("room:gone", 3)
    fast.untrack("room:gone", 3)
    with fast.watch("room:", initial=True) as w:
        first = w.next(timeout=5)
        assert sorted(first, key=lambda c: c.topic) == [Change("room:1", 2, 2), Change("room:2", 1, 1)]
        assert w.next(timeout=0.1) == []  # nothing changed since
    with fast.watch("room:") as w:
        assert w.next(timeout=0.1) == []  # no initial: only changes
        fast.track("room:2", 9)
        assert w.next(timeout=5) == [Change("room:2", 2, 2)]


def test_prefix_filters_and_empty_prefix_watches_everything(fast: Node) -> None:
    with fast.watch("room:") as rooms, fast.watch() as every, fast.watch(b"room:1") as one:
        assert (rooms.prefix, every.prefix, one.prefix) == ("room:", "", "room:1")
        for i, topic in enumerate(["room:1", "room:12", "lobby", "room", "room:2"]):
            fast.track(topic, i)
        seen: Dict[TopicT, int] = {}
        drain(every, seen, {t: 1 for t in ["room:1", "room:12", "lobby", "room", "room:2"]})
        seen = {}
        drain(rooms, seen, {"room:1": 1, "room:12": 1, "room:2": 1})
        assert set(seen) == {"room:1", "room:12", "room:2"}
        seen = {}
        drain(one, seen, {"room:1": 1, "room:12": 1})
        assert set(seen) == {"room:1", "room:12"}
        time.sleep(0.05)
        assert rooms.next(0) == [] and one.next(0) == []


def test_an_unread_watch_coalesces_to_the_latest_value_per_topic(fast: Node) -> None:
    with fast.watch("c:") as w:
        for round_ in range(10):  # spread over several flushes
            for conn in range(50):
                fast.track("c:busy", round_ * 100 + conn)
            for conn in range(40):
                fast.untrack("c:busy", round_ * 100 + conn)
            fast.track("c:emptied", round_)
            fast.untrack("c:emptied", round_)
            time.sleep(0.005)
            # Unread, the watch holds at most one entry per topic.
            assert fast.stats()["watch_backlog"] <= 2
        fast.track("c:emptied", 1000)
        fast.untrack("c:emptied", 1000)
        wait_until(lambda: fast.stats()["watch_backlog"], lambda n: n >= 1, what="a pending change")
        time.sleep(0.1)  # let the last flushes publish
        assert fast.stats()["watch_backlog"] <= 2
        # Each topic once per batch, with its latest value: c:emptied ends
        # at 0 (or never appears, if every flush saw it at 0).
        seen: Dict[TopicT, int] = {}
        drain(w, seen, {"c:busy": 100})
        assert seen.get("c:emptied", 0) == 0
        assert w.next(timeout=0.05) == []


def test_an_unread_watch_of_many_churning_topics_is_bounded_by_topics(fast: Node) -> None:
    topics = [f"m:{i}" for i in range(10_000)]
    with fast.watch("m:") as w:
        for round_ in range(6):
            for t in topics:
                fast.add(t, 1 if round_ % 2 == 0 else -1)
            fast.add(topics[round_], 5)
            time.sleep(0.03)
            assert fast.stats()["watch_backlog"] <= len(topics)
        wait_until(lambda: fast.stats()["watch_backlog"], lambda n: n > 0, what="pending changes")
        seen: Dict[TopicT, int] = {}
        drain(w, seen, {t: fast.count(t) for t in topics[:6]})
        time.sleep(0.1)
        for c in w.next(0):
            seen[c.topic] = c.count
        assert all(seen.get(t, 0) == fast.count(t) for t in topics)
        assert fast.stats()["watch_backlog"] == 0


def test_a_topic_that_empties_ends_at_zero(fast: Node) -> None:
    with fast.watch("z:") as w:
        fast.track("z:1", 1)
        assert w.next(timeout=5) == [Change("z:1", 1, 1)]
        fast.untrack("z:1", 1)
        assert w.next(timeout=5) == [Change("z:1", 0, 0)]
        assert w.next(timeout=0.05) == []


def test_close_and_context_manager(fast: Node) -> None:
    with fast.watch("x") as w:
        assert not w.closed
        assert isinstance(w.fileno(), int) and w.fileno() >= 0
        assert repr(w) == "<headcount.Watch 'x' open>"
    assert w.closed and repr(w) == "<headcount.Watch 'x' closed>"
    for call in (lambda: w.next(0), lambda: w.next(timeout=1.0), w.fileno):
        with pytest.raises(HeadcountError) as e:
            call()
        assert e.value.status == Status.CLOSED
    w.close()  # idempotent
    assert list(w) == []  # iteration of a closed watch ends at once
    assert fast.stats()["watches"] == 0  # closing unregistered it
    unclosed = fast.watch("y")
    assert fast.stats()["watches"] == 1
    del unclosed  # a watch never closed ends when it is collected
    assert fast.stats()["watches"] == 0
    fast.track("x", 1)  # the node is unaffected
    assert fast.count("x") == 1


def test_bad_arguments(fast: Node) -> None:
    with pytest.raises(TypeError, match="prefix must be str or bytes"):
        fast.watch(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fast.watch("a", True)  # type: ignore[misc]  # initial is keyword-only
    with pytest.raises(HeadcountError) as e:
        fast.watch("x" * 2000)
    assert e.value.status == Status.INVALID_ARG and "prefix" in e.value.message
    with fast.watch() as w:
        for bad in (-1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="timeout"):
                w.next(bad)
        with pytest.raises(TypeError):
            w.next("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-negative"):
        fast.top(-1)
    with pytest.raises(ValueError, match="non-negative"):
        fast.top(2**64)
    fast.track("t", 1)
    assert fast.top(2**64 - 1) == [("t", 1)]  # no k-sized allocation
    with pytest.raises(TypeError):
        fast.top(True)
    with pytest.raises(TypeError, match="prefix"):
        fast.top(1, prefix=1)  # type: ignore[arg-type]


def test_close_from_another_thread_wakes_a_blocked_next(fast: Node) -> None:
    w = fast.watch("b")
    outcome: List[object] = []

    def consume() -> None:
        t0 = time.monotonic()
        try:
            w.next(timeout=30)
            outcome.append("returned")
        except HeadcountError as e:
            outcome.append((e.status, time.monotonic() - t0))

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    time.sleep(0.2)  # the consumer is blocked in next() now
    t0 = time.monotonic()
    w.close()
    assert time.monotonic() - t0 < 2, "close() waited for the blocked next()"
    t.join(5)
    assert not t.is_alive()
    assert len(outcome) == 1 and outcome[0][0] == Status.CLOSED  # type: ignore[index]
    assert outcome[0][1] < 5  # type: ignore[index]


def test_close_from_another_thread_ends_a_for_loop(fast: Node) -> None:
    w = fast.watch("loop:")
    got: List[List[Change]] = []
    done = threading.Event()

    def consume() -> None:
        for batch in w:
            got.append(batch)
        done.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    fast.track("loop:1", 1)
    wait_until(lambda: len(got), lambda n: n >= 1, what="a batch in the loop")
    assert got[0] == [Change("loop:1", 1, 1)]
    w.close()
    assert done.wait(5), "the for loop did not end on close()"


def test_iteration_blocks_per_batch(fast: Node) -> None:
    with fast.watch("it:") as w:
        def produce() -> None:
            for i in range(5):
                fast.track("it:a", i)
                time.sleep(0.03)

        threading.Thread(target=produce, daemon=True).start()
        last = 0
        batches = 0
        for batch in w:
            assert batch, "iteration yields non-empty batches only"
            batches += 1
            last = {c.topic: c.count for c in batch}.get("it:a", last)
            if last == 5:
                break
        assert last == 5 and batches >= 1


def test_next_releases_the_gil(fast: Node) -> None:
    with fast.watch("g") as w:
        ticks = 0
        stop = threading.Event()

        def tick() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1

        t = threading.Thread(target=tick, daemon=True)
        t.start()
        time.sleep(0.05)
        before = ticks
        assert w.next(timeout=0.3) == []
        progressed = ticks - before
        stop.set()
        t.join(5)
        assert progressed > 1000, "Python threads did not run while next() waited"


def test_a_signal_handler_runs_while_next_waits(fast: Node) -> None:
    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    old = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        with fast.watch("s") as w:
            timer.start()
            t0 = time.monotonic()
            with pytest.raises(Interrupted):
                w.next(timeout=20)
            assert time.monotonic() - t0 < 10, "the handler waited for next()'s timeout"
            assert w.next(timeout=0) == []  # still usable
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, old)


def test_a_watch_outlives_its_node(fast: Node) -> None:
    node = Node(node_name="short", flush_interval_ms=10)
    w = node.watch("o", initial=True)
    node.track("o", 1)
    blocked: List[object] = []

    def consume() -> None:
        try:
            while True:
                blocked.extend(w.next(timeout=30))
        except HeadcountError as e:
            blocked.append(e.status)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    wait_until(lambda: list(blocked), lambda v: v == [Change("o", 1, 1)], what="the track delivered")
    node.close()  # the blocked next() ends: the node is closed
    t.join(5)
    assert not t.is_alive()
    assert blocked[-1] == Status.CLOSED
    with pytest.raises(HeadcountError) as e:
        w.next(0)
    assert e.value.status == Status.CLOSED and "node is closed" in e.value.message
    assert list(w) == []
    w.close()
    del node, w


def test_the_watch_keeps_its_node_object_alive() -> None:
    w = Node(node_name="kept", flush_interval_ms=10).watch("k", initial=True)
    # The node object is referenced by the watch only: it is not collected
    # (which would close it and end the watch).
    import gc

    gc.collect()
    assert w.next(timeout=0.05) == []
    assert not w.closed
    w.close()


def test_non_utf8_topics_come_back_as_bytes(fast: Node) -> None:
    raw = b"\xffroom\xfe"
    with fast.watch(b"\xff") as w, fast.watch() as every:
        fast.track(raw, 1)
        fast.track("\xff-but-text", 1)  # U+00FF as UTF-8 is b"\xc3\xbf": not the prefix
        assert w.next(timeout=5) == [Change(raw, 1, 1)]
        assert isinstance(w.prefix, bytes)
        seen: Dict[TopicT, int] = {}
        drain(every, seen, {raw: 1, "\xff-but-text": 1})
        assert isinstance([t for t in seen if t != "\xff-but-text"][0], bytes)
    assert fast.top(5) == [("\xff-but-text", 1), (raw, 1)]


def test_change_values() -> None:
    a, b = Change("t", 2, 2), Change(b"t", 2, 2)
    assert a == b and hash(a) == hash(b) and a.topic == "t"
    assert a != Change("t", 2, 1) and a != ("t", 2, 2)
    assert repr(Change(b"\xff", 0, 0)) == "Change(topic=b'\\xff', count=0, users=0)"
    with pytest.raises(AttributeError):
        a.count = 3  # type: ignore[misc]


def test_top_against_brute_force(fast: Node) -> None:
    rng = random.Random(14)
    counts: Dict[str, int] = {}
    for i in range(300):
        topic = f"{rng.choice(['room:', 'rooms', 'lobby:', 'r'])}{rng.randrange(60)}"
        n = rng.randrange(0, 6)
        if n:
            fast.add(topic, n)
            counts[topic] = counts.get(topic, 0) + n
    fast.track("room:emptied", 1)
    fast.untrack("room:emptied", 1)

    def brute(k: int, prefix: str) -> List[Tuple[str, int]]:
        hits = [(t, n) for t, n in counts.items() if t.startswith(prefix) and n > 0]
        return sorted(hits, key=lambda tn: (-tn[1], tn[0].encode()))[:k]

    for prefix in ["", "room:", "r", "rooms", "lobby:1", "nothing"]:
        for k in [0, 1, 3, 10, 1000]:
            assert fast.top(k, prefix=prefix) == brute(k, prefix), (k, prefix)
    assert fast.top(2, "r") == fast.top(2, prefix=b"r")


def test_last_values_equal_count_under_concurrent_churn(fast: Node) -> None:
    topics = [f"churn:{i}" for i in range(20)]
    with fast.watch("churn:", initial=True) as w:
        stop = threading.Event()
        seen: Dict[TopicT, int] = {}

        def consume() -> None:
            while not stop.is_set():
                for c in w.next(timeout=0.05):
                    seen[c.topic] = c.count

        def churn(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(3000):
                topic, conn = rng.choice(topics), rng.randrange(30) + seed * 100
                (fast.track if rng.random() < 0.55 else fast.untrack)(topic, conn)

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        workers = [threading.Thread(target=churn, args=(s,), daemon=True) for s in range(4)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(60)
        time.sleep(0.1)
        stop.set()
        reader.join(5)
        drain(w, seen, {t: fast.count(t) for t in topics})
        assert {t: seen.get(t, 0) for t in topics} == {t: fast.count(t) for t in topics}


# -- asyncio ------------------------------------------------------------------


def test_async_for_with_a_timeout(fast: Node) -> None:
    async def main() -> None:
        with fast.watch("a:") as w:
            it = w.__aiter__()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(it.__anext__(), 0.2)  # nothing yet
            fast.track("a:1", 1)
            batch = await asyncio.wait_for(it.__anext__(), 5)
            assert batch == [Change("a:1", 1, 1)]
            got: List[Change] = []

            async def read_all() -> None:
                async for b in w:
                    got.extend(b)

            fast.track("a:1", 2)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(read_all(), 1.5)
            assert got == [Change("a:1", 2, 2)]

    asyncio.run(asyncio.wait_for(main(), 30))


def test_two_watches_in_one_loop_without_threads(fast: Node) -> None:
    threads_before = threading.active_count()

    async def main() -> None:
        with fast.watch("left:") as left, fast.watch("right:") as right:
            threads: List[int] = []

            async def consume(w: Watch, topic: str, want: int) -> List[int]:
                values: List[int] = []
                async for batch in w:
                    threads.append(threading.active_count())
                    values.extend(c.count for c in batch if c.topic == topic)
                    if values and values[-1] == want:
                        return values
                return values

            tasks = [
                asyncio.ensure_future(consume(left, "left:x", 3)),
                asyncio.ensure_future(consume(right, "right:y", 2)),
            ]
            await asyncio.sleep(0.05)  # both are waiting on their fds now
            threads.append(threading.active_count())
            for conn in range(3):
                fast.track("left:x", conn)
                fast.track("right:y", conn)
                await asyncio.sleep(0.03)
            fast.untrack("right:y", 0)
            values = await asyncio.wait_for(asyncio.gather(*tasks), 10)
            assert values[0][-1] == 3 and values[1][-1] == 2
            assert set(threads) == {threads_before}, "a watch started a thread"

    asyncio.run(asyncio.wait_for(main(), 30))
    assert threading.active_count() == threads_before


def test_closing_a_watch_ends_async_for_in_the_loop(fast: Node) -> None:
    async def main() -> None:
        w = fast.watch("e:")
        ended = asyncio.Event()

        async def consume() -> None:
            async for _ in w:
                pass
            ended.set()

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.05)  # waiting on the fd
        w.close()
        await asyncio.wait_for(ended.wait(), 5)
        await task

    asyncio.run(asyncio.wait_for(main(), 30))


def test_closing_the_node_ends_async_for() -> None:
    async def main() -> None:
        node = Node(node_name="n", flush_interval_ms=10)
        w = node.watch("n:")
        node.track("n:1", 1)
        got: List[Change] = []

        async def consume() -> None:
            async for batch in w:
                got.extend(batch)

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.2)
        node.close()
        await asyncio.wait_for(task, 5)
        assert got == [Change("n:1", 1, 1)]
        w.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_closing_a_watch_from_another_thread_ends_async_for(fast: Node) -> None:
    async def main() -> None:
        w = fast.watch("e:")
        timer = threading.Timer(0.1, w.close)
        timer.start()
        batches = [b async for b in w]
        timer.join()
        assert batches == []

    asyncio.run(asyncio.wait_for(main(), 30))


# -- cluster ------------------------------------------------------------------


def test_two_node_cluster_watch_sees_peer_changes_and_departure() -> None:
    with Node(node_name="a", listen="127.0.0.1:0", **FAST) as a:
        b = Node(node_name="b", listen="127.0.0.1:0", seeds=[a.local_addr], **FAST)
        try:
            with a.watch("room:", initial=True) as w:
                seen: Dict[TopicT, int] = {}
                b.track("room:1", 1)
                b.track("room:1", 2)
                b.track("room:2", 1)
                drain(w, seen, {"room:1": 2, "room:2": 1})
                a.track("room:1", 7)
                drain(w, seen, {"room:1": 3})
                b.untrack("room:2", 1)
                drain(w, seen, {"room:2": 0})
                b.close()  # b leaves: its counts drop out of a's
                drain(w, seen, {"room:1": 1})
                assert a.count("room:1") == 1 and a.top(5, "room:") == [("room:1", 1)]
        finally:
            b.close()


def test_the_stub_types_watches_and_top(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    good = mypy(
        tmp_path,
        """
        import asyncio
        from typing import List, Tuple, Union
        import headcount

        with headcount.Node() as n:
            top: List[Tuple[Union[str, bytes], int]] = n.top(3, prefix="r")
            with n.watch("r", initial=True) as w:
                batch: List[headcount.Change] = w.next(timeout=0.1)
                fd: int = w.fileno()
                for b in w:
                    count: int = b[0].count
                    break

            async def main(w: headcount.Watch) -> None:
                async for b in w:
                    topic: Union[str, bytes] = b[0].topic
        """,
    )
    assert good.returncode == 0, good.stdout + good.stderr
    bad = mypy(
        tmp_path,
        """
        import headcount
        with headcount.Node() as n:
            n.watch("r", True)
        """,
    )
    assert bad.returncode != 0 and "Too many positional arguments" in bad.stdout, bad.stdout
