"""Finding libheadcount: HEADCOUNT_LIB, then a copy inside the package, then
the workspace's target/ directory; and the error when none is there.

Each case runs in a fresh interpreter (the library is loaded once per
process) on a copy of the installed package placed in a temporary tree.
"""

from __future__ import annotations

import _ctypes
import inspect
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import pytest

import headcount

PKG = Path(headcount.__file__).resolve().parent
LIB = Path(headcount.library_path()).resolve()
LIB_NAME = LIB.name

PROBE = (
    "import headcount\n"
    "try:\n"
    "    print(headcount.library_path())\n"
    "    with headcount.Node() as n:\n"
    "        n.track('a', 1); assert n.count('a') == 1\n"
    "except headcount.LibraryNotFoundError as e:\n"
    "    print('NOTFOUND'); print(e); print(e.tried)\n"
)


def run_probe(pythonpath: Path, lib_env: Optional[str]) -> subprocess.CompletedProcess:
    env: Dict[str, str] = {k: v for k, v in os.environ.items() if k not in ("HEADCOUNT_LIB", "CARGO_TARGET_DIR")}
    env["PYTHONPATH"] = str(pythonpath)
    if lib_env is not None:
        env["HEADCOUNT_LIB"] = lib_env
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60, cwd=pythonpath
    )


def copy_package(dest: Path) -> Path:
    """A copy of the package's Python files (no library) under ``dest``."""
    pkg = dest / "headcount"
    shutil.copytree(PKG, pkg, ignore=shutil.ignore_patterns("*.so", "*.dylib", "*.dll", "__pycache__"))
    return pkg


def test_env_var_wins(tmp_path: Path) -> None:
    root = tmp_path / "site"
    pkg = copy_package(root)
    shutil.copy(LIB, pkg / LIB_NAME)  # would be found second
    other = tmp_path / "elsewhere" / LIB_NAME
    other.parent.mkdir()
    shutil.copy(LIB, other)
    out = run_probe(root, str(other))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == str(other)


def test_env_var_naming_nothing_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "site"
    pkg = copy_package(root)
    shutil.copy(LIB, pkg / LIB_NAME)  # must not be used silently instead
    out = run_probe(root, str(tmp_path / "missing.so"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("NOTFOUND"), out.stdout
    assert "HEADCOUNT_LIB" in out.stdout and "missing.so" in out.stdout


@pytest.mark.skipif(not getattr(_ctypes, "__file__", None), reason="_ctypes is built into this Python")
def test_env_var_naming_a_foreign_library(tmp_path: Path) -> None:
    # A loadable shared object that is not libheadcount.
    out = run_probe(tmp_path, _ctypes.__file__)
    assert out.stdout.startswith("NOTFOUND"), out.stdout + out.stderr
    assert "hc_" in out.stdout


def test_copy_inside_the_package(tmp_path: Path) -> None:
    root = tmp_path / "site"
    pkg = copy_package(root)
    shutil.copy(LIB, pkg / LIB_NAME)
    out = run_probe(root, None)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == str(pkg / LIB_NAME)


def test_workspace_build_output(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "ffi").mkdir(parents=True)
    (ws / "Cargo.toml").write_text("[workspace]\n")
    src = ws / "bindings" / "python" / "src"
    copy_package(src)
    debug = ws / "target" / "debug" / LIB_NAME
    debug.parent.mkdir(parents=True)
    shutil.copy(LIB, debug)
    out = run_probe(src, None)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == str(debug)

    # With both builds present the newer one is used.
    release = ws / "target" / "release" / LIB_NAME
    release.parent.mkdir(parents=True)
    shutil.copy(LIB, release)
    old = time.time() - 3600
    os.utime(debug, (old, old))
    out = run_probe(src, None)
    assert out.stdout.splitlines()[0] == str(release)
    os.utime(release, (old - 10, old - 10))
    out = run_probe(src, None)
    assert out.stdout.splitlines()[0] == str(debug)


def test_not_found_lists_what_it_tried(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "ffi").mkdir(parents=True)
    (ws / "Cargo.toml").write_text("[workspace]\n")
    src = ws / "bindings" / "python" / "src"
    pkg = copy_package(src)
    out = run_probe(src, None)
    assert out.returncode == 0, out.stderr
    lines = out.stdout
    assert lines.startswith("NOTFOUND"), lines
    assert "cargo build -p headcount-ffi" in lines
    assert "HEADCOUNT_LIB" in lines
    assert str(pkg / LIB_NAME) in lines
    assert str(ws / "target" / "debug" / LIB_NAME) in lines
    assert str(ws / "target" / "release" / LIB_NAME) in lines


def test_import_does_not_need_the_library(tmp_path: Path) -> None:
    # `import headcount` works without the library; the error comes at use.
    root = tmp_path / "site"
    copy_package(root)
    env = {k: v for k, v in os.environ.items() if k != "HEADCOUNT_LIB"}
    env["PYTHONPATH"] = str(root)
    out = subprocess.run(
        [sys.executable, "-c", "import headcount; print(headcount.Node.__doc__ is not None)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_package_is_typed() -> None:
    assert (PKG / "py.typed").is_file()
    # Every public callable has a docstring.
    for name in headcount.__all__:
        obj = getattr(headcount, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, name
    for name, member in vars(headcount.Node).items():
        if not name.startswith("_") and (callable(member) or isinstance(member, property)):
            assert member.__doc__, name
