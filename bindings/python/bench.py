"""Per-call cost of the Python binding, beside the ctypes binding it replaced,
in one process (the machine is shared and noisy: compare the columns of one
run, not figures of different runs).

    cargo build --release -p headcount-ffi        # the C ABI, for the ctypes side
    bindings/python/run-tests.sh -q               # installs the package into .venv
    bindings/python/.venv/bin/python bindings/python/bench.py

The ctypes binding is the package as it was at commit CTYPES_COMMIT, taken
from git into a temporary directory and imported as ``headcount_ctypes``,
loading target/release/libheadcount.so. Each figure is the best of several
timeit repeats (the least disturbed), in nanoseconds per call.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

import headcount

#: The last commit with the ctypes binding.
CTYPES_COMMIT = "7fcbc1b"
ROOT = Path(__file__).resolve().parents[2]
CALLS = 200_000
REPEATS = 7


def ctypes_package(dest: Path):
    """The ctypes binding of CTYPES_COMMIT, imported as headcount_ctypes."""
    pkg = dest / "headcount_ctypes"
    pkg.mkdir()
    for name in ("__init__.py", "_ffi.py", "_node.py"):
        src = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{CTYPES_COMMIT}:bindings/python/src/headcount/{name}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (pkg / name).write_text(src)
    lib = ROOT / "target" / "release" / "libheadcount.so"
    if not lib.is_file():
        sys.exit(f"{lib} is missing: cargo build --release -p headcount-ffi")
    os.environ["HEADCOUNT_LIB"] = str(lib)
    sys.path.insert(0, str(dest))
    return importlib.import_module("headcount_ctypes")


def best_ns(stmt: str, node: object, **names: object) -> float:
    t = timeit.Timer(stmt, globals={"n": node, **names})
    return min(t.repeat(REPEATS, CALLS)) / CALLS * 1e9


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        old = ctypes_package(Path(tmp))
        native, ctypes_node = headcount.Node(node_name="bench"), old.Node(node_name="bench")
        for n in (native, ctypes_node):
            n.track("room", 1)
        print(f"python {sys.version.split()[0]}, {CALLS} calls x {REPEATS} repeats, best repeat")
        print(f"{'call':28s} {'native ns':>10s} {'ctypes ns':>10s} {'ctypes/native':>14s}")
        for stmt in ('n.track("room", 1)', 'n.count("room")', 'n.track(b"room", 1)', "n.total()"):
            a, b = best_ns(stmt, native), best_ns(stmt, ctypes_node)
            print(f"{stmt:28s} {a:10.0f} {b:10.0f} {b / a:13.1f}x")
        # What the ctypes binding did in Python around each track, without
        # the foreign call: the argument checks and the open/close guard.
        # cffi over the C ABI would have kept this part.
        work = best_ns(
            "t = topic('room'); c = conn(1); n._enter(); n._exit()",
            ctypes_node,
            topic=old._node._topic,
            conn=old._node._conn,
        )
        print(f"{'ctypes: Python-side work':28s} {'':10s} {work:10.0f}   (of each track, no foreign call)")
        native.close()
        ctypes_node.close()


if __name__ == "__main__":
    main()
