"""The package as installed: the extension module inside it, a clear error
when it is missing, the type stub (every config key, checked by mypy), and
the library's log lines reaching :mod:`logging`."""

from __future__ import annotations

import ast
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

import headcount
from _support import mypy

PKG = Path(headcount.__file__).resolve().parent


def python(code: str, cwd: Path, pythonpath: "Path | None" = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=cwd
    )


def test_extension_is_inside_the_package() -> None:
    path = Path(headcount.library_path())
    assert path.parent == PKG
    with headcount.Node() as n:
        n.track("a", 1)
        assert n.count("a") == 1


def test_missing_extension_is_a_clear_import_error(tmp_path: Path) -> None:
    # The Python files without the extension module (a source checkout that
    # was never built): importing says what is missing and how to build it.
    root = tmp_path / "site"
    shutil.copytree(PKG, root / "headcount", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    out = python(
        "import headcount\n",
        cwd=root,
        pythonpath=root,
    )
    assert out.returncode != 0
    assert "LibraryNotFoundError" in out.stderr, out.stderr
    assert "pip install" in out.stderr and "_native" in out.stderr, out.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_package_is_typed() -> None:
    assert (PKG / "py.typed").is_file()
    assert (PKG / "_native.pyi").is_file()
    # Every public callable has a docstring.
    for name in headcount.__all__:
        obj = getattr(headcount, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
            assert obj.__doc__, name
    for name, member in vars(headcount.Node).items():
        if not name.startswith("_") and (callable(member) or inspect.isdatadescriptor(member)):
            assert member.__doc__, name


def stub_keywords() -> List[str]:
    """The keyword-only parameters of ``Node.__init__`` in ``_native.pyi``."""
    tree = ast.parse((PKG / "_native.pyi").read_text())
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef) and cls.name == "Node":
            for fn in cls.body:
                if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
                    return [a.arg for a in fn.args.kwonlyargs]
    raise AssertionError("no Node.__init__ in _native.pyi")


def test_stub_lists_exactly_the_config_keys() -> None:
    # headcount.CONFIG_KEYS is the library's own list (headcount::CONFIG_KEYS):
    # a key added to the library without the stub, or the other way round,
    # fails here.
    assert stub_keywords() == list(headcount.CONFIG_KEYS)
    # And every key really is accepted (None: the default).
    with headcount.Node(**{k: None for k in headcount.CONFIG_KEYS}) as n:
        assert not n.closed


def test_mypy_flags_a_misspelt_config_key(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    good = mypy(
        tmp_path,
        """
        import headcount
        with headcount.Node(node_name="a", flush_interval_ms=50, seeds=["127.0.0.1:7401"], secret="s") as n:
            added: bool = n.track("room", 1)
            c: int = n.count(b"room")
        """,
    )
    assert good.returncode == 0, good.stdout + good.stderr
    bad = mypy(
        tmp_path,
        """
        import headcount
        headcount.Node(node_nme="a")
        """,
    )
    assert bad.returncode != 0
    assert 'Unexpected keyword argument "node_nme"' in bad.stdout, bad.stdout


LOGGING_CHILD = """
import logging, time
import headcount

records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record)
logging.getLogger("headcount").addHandler(Keep())

fast = dict(flush_interval_ms=20, down_after_ms=300)
with headcount.Node(node_name="a", listen="127.0.0.1:0", secret="right", **fast) as a:
    with headcount.Node(node_name="x", seeds=[a.local_addr], secret="wrong", **fast):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("authentication failed" in r.getMessage() for r in records):
            time.sleep(0.01)
for r in records:
    print(r.name, r.levelname, r.node, r.getMessage())
"""


def test_library_log_lines_go_to_logging(tmp_path: Path) -> None:
    # A peer with the wrong secret makes the node log a warning; it must
    # arrive as a record of the "headcount" logger, not as raw stderr.
    out = python(LOGGING_CHILD, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(
        line.startswith("headcount.cluster.shared WARNING a ") and "authentication failed" in line for line in lines
    ), out.stdout
    # A handler is configured, so logging's last-resort stderr handler stays
    # silent and the core writes nothing to stderr itself.
    assert "authentication failed" not in out.stderr, out.stderr


def test_log_records_reach_caplog_with_level_target_and_node(caplog: pytest.LogCaptureFixture) -> None:
    # In this process: a node's threads log through the bridge, and pytest's
    # caplog (a logging handler) sees the records, at their levels.
    import logging
    import time

    caplog.set_level(logging.DEBUG, logger="headcount")
    fast = dict(flush_interval_ms=20, down_after_ms=300)
    with headcount.Node(node_name="logged", listen="127.0.0.1:0", secret="right", **fast) as a:
        with headcount.Node(node_name="stranger", seeds=[a.local_addr], secret="wrong", **fast):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                "authentication failed" in r.getMessage() for r in caplog.records
            ):
                time.sleep(0.01)
    ours = [r for r in caplog.records if r.name.startswith("headcount.")]
    auth = [r for r in ours if "authentication failed" in r.getMessage()]
    seen = [(r.levelno, r.name, getattr(r, "node")) for r in auth]
    assert (logging.WARNING, "headcount.cluster.shared", "logged") in seen, seen
    listening = [r for r in ours if "listening on 127.0.0.1:" in r.getMessage()]
    assert any(r.levelno == logging.INFO and getattr(r, "node") == "logged" for r in listening), listening


def test_exit_with_an_open_cluster_node_is_clean(tmp_path: Path) -> None:
    # Nodes left open at exit are closed during interpreter shutdown while
    # their threads may be logging: the process must exit, not hang.
    code = """
import logging, time
import headcount
logging.basicConfig(level=logging.DEBUG)
fast = dict(flush_interval_ms=20, down_after_ms=300)
a = headcount.Node(node_name="a", listen="127.0.0.1:0", secret="right", **fast)
b = headcount.Node(node_name="b", seeds=[a.local_addr], secret="right", **fast)
x = headcount.Node(node_name="x", seeds=[a.local_addr], secret="wrong", **fast)
b.track("room", 1)
deadline = time.monotonic() + 10
while a.count("room") != 1 and time.monotonic() < deadline:
    time.sleep(0.01)
print(a.count("room"))
"""
    out = python(code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
