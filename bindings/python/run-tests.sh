#!/usr/bin/env bash
# Tests of the Python binding, from scratch:
#   0. rustfmt and clippy on the extension crate (rust/),
#   1. a virtualenv at bindings/python/.venv (created when missing),
#   2. pytest, pytest-timeout and mypy installed into it,
#   3. the package installed exactly as a user does (`pip install
#      ./bindings/python`: maturin builds the extension in release mode;
#      Cargo's cache in bindings/python/target makes a rebuild quick),
#   4. pytest run against the installed package.
# Extra arguments go to pytest (e.g. `run-tests.sh -k cluster -x`).
# Exits non-zero on any failure, including "no tests collected".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
pip_flags=(--quiet --disable-pip-version-check)

if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -c "import ensurepip, venv" 2>/dev/null; then
        echo "run-tests.sh: $python cannot create a venv with pip (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
    echo "run-tests.sh: creating $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
vpy="$venv/bin/python"
# The extension crate is a workspace of its own (Cargo.toml), outside the
# root's fmt and clippy runs.
echo "run-tests.sh: cargo fmt --check, cargo clippy -D warnings (bindings/python)"
(cd "$here" && cargo fmt --check && cargo clippy --quiet --locked --all-targets -- -D warnings)
"$vpy" -m pip install "${pip_flags[@]}" "pytest>=7" "pytest-timeout>=2" "mypy>=1"
# A fresh, non-editable install every run, so the tests see exactly what
# `pip install ./bindings/python` gives a user.
"$vpy" -m pip install "${pip_flags[@]}" --no-deps --force-reinstall "$here"

cd "$here"
set +e
"$vpy" -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "run-tests.sh: pytest collected no tests; treating that as a failure" >&2
    exit 1
fi
exit "$rc"
