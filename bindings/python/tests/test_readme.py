"""The README's examples run as written and print what their comments say."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import List


README = Path(__file__).resolve().parent.parent / "README.md"


def blocks() -> List[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def run(code: str) -> List[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_readme_has_the_three_examples() -> None:
    assert len(blocks()) == 3


def test_local_example() -> None:
    assert run(blocks()[0]) == ["2", "2", "1 1", "INVALID_TOPIC"]


def test_cluster_example() -> None:
    lines = run(blocks()[1])
    assert lines[0] == "2 1"
    info = ast.literal_eval(lines[1])  # the dict the example prints
    assert info["count"] == 2 and info["local"] == 1 and info["peers_reporting"] == 1


def test_docstring_examples() -> None:
    import doctest

    import headcount._node

    result = doctest.testmod(headcount._node)
    assert result.attempted > 0 and result.failed == 0, result


def test_watch_example() -> None:
    assert run(blocks()[2]) == [
        "[('room:games', 2), ('room:lobby', 1)]",
        "[Change(topic='room:lobby', count=0, users=0)]",
        "[]",
        "[('room:games', 2)]",
        "[('room:lobby', 1)]",
    ]
