"""Per delivered change, from Python: one watch of every topic of a node
holding 1,000,000 topics, 10,000 changes per flush (issue 14's setup).

    bindings/python/run-tests.sh -q               # installs the package into .venv
    bindings/python/.venv/bin/python bindings/python/bench_watch.py [--topics N] [--changes N] [--rounds N]

Each round changes ``--changes`` distinct topics (one ``add`` of +-1 each,
then -1 on the same
topics in the next round: each count goes 1 -> 2 -> 1), waits for the watch's fd to poll readable and then
for the flush to have published them all, and times the ``next(0)`` calls
that take them: the consumer's cost per change, from the core's inbox to
the list of ``headcount.Change`` objects in Python. Side by side, in the same
round, the comparator: what a server without a change feed does, one
``count()`` call per topic it cares about (here only the changed ones, which
a poller would not know). Medians over rounds, in nanoseconds.

The flusher's share of a delivered change (offering it to the watch) is the
same code for every binding: ``core/benches/watch.rs`` measures it (its
"extra flush ns" column, BENCHMARKS.md); add it to the consumer's figure for
the whole cost.
"""

from __future__ import annotations

import argparse
import select
import statistics
import sys
import time

import headcount

FLUSH_MS = 50


def name(i: int) -> str:
    return f"room:{i:07d}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--topics", type=int, default=1_000_000)
    ap.add_argument("--changes", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=7)
    o = ap.parse_args()
    o.changes = min(o.changes, o.topics)

    with headcount.Node(node_name="bench", flush_interval_ms=FLUSH_MS, flush_mode="fixed") as node:
        t0 = time.perf_counter()
        for i in range(o.topics):
            node.add(name(i), 1)
        time.sleep(3 * FLUSH_MS / 1000)  # the first flush, before any watch
        print(
            f"python {sys.version.split()[0]}, {o.topics} topics ({time.perf_counter() - t0:.1f} s to add), "
            f"{o.changes} changes per flush, {o.rounds} rounds, medians"
        )
        take_ns, poll_ns, batches = [], [], []
        with node.watch() as w:
            fd = w.fileno()
            for r in range(o.rounds):
                # +1 then -1 on each set of topics: each count goes 1 -> 2 -> 1
                # (a watch made without `initial` says nothing of a topic
                # going to 0 that it never reported non-zero).
                base = (r // 2 * o.changes) % o.topics
                topics = [name((base + i) % o.topics) for i in range(o.changes)]
                delta = -1 if r % 2 else 1
                for t in topics:
                    node.add(t, delta)
                ready, _, _ = select.select([fd], [], [], 30)
                assert ready, "no flush in 30 s"
                time.sleep(3 * FLUSH_MS / 1000)  # the whole flush published
                got, calls = 0, 0
                t0 = time.perf_counter_ns()
                while got < o.changes:
                    got += len(w.next(0))
                    calls += 1
                take_ns.append((time.perf_counter_ns() - t0) / got)
                batches.append(calls)
                assert got == o.changes and w.next(0) == [], "a change delivered twice or late"
                t0 = time.perf_counter_ns()
                for t in topics:
                    node.count(t)
                poll_ns.append((time.perf_counter_ns() - t0) / len(topics))
        take, poll = statistics.median(take_ns), statistics.median(poll_ns)
        print(f"{'consumer: next() per delivered change':42s} {take:8.0f} ns  (batches per flush: {max(batches)})")
        print(f"{'comparator: one count() per changed topic':42s} {poll:8.0f} ns  ({poll / take:.2f}x the watch)")
        print(f"rounds: next() {[round(x) for x in take_ns]}, count() {[round(x) for x in poll_ns]}")


if __name__ == "__main__":
    main()
