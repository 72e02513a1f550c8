#!/usr/bin/env bash
# Tests of the Python binding, from scratch:
#   1. a virtualenv at bindings/python/.venv (created when missing),
#   2. pytest and the package (`pip install ./bindings/python`) installed into it,
#   3. libheadcount built (`cargo build -p headcount-ffi`) unless HEADCOUNT_LIB
#      already names a library file,
#   4. pytest run against the installed package with HEADCOUNT_LIB set.
# Extra arguments go to pytest (e.g. `run-tests.sh -k cluster -x`).
# Exits non-zero on any failure, including "no tests collected".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
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
"$vpy" -m pip install "${pip_flags[@]}" "pytest>=7" "pytest-timeout>=2"
# setuptools builds in place (build/, *.egg-info): start from clean so a
# file deleted from src/ cannot survive in the installed copy.
rm -rf "$here/build" "$here"/src/*.egg-info
# A fresh, non-editable install every run, so the tests see exactly what
# `pip install ./bindings/python` gives a user.
"$vpy" -m pip install "${pip_flags[@]}" --no-deps --force-reinstall "$here"

if [ -n "${HEADCOUNT_LIB:-}" ] && [ -f "$HEADCOUNT_LIB" ]; then
    echo "run-tests.sh: using HEADCOUNT_LIB=$HEADCOUNT_LIB"
else
    (cd "$root" && cargo build -p headcount-ffi)
    case "$(uname -s)" in
        Darwin) lib_name=libheadcount.dylib ;;
        *) lib_name=libheadcount.so ;;
    esac
    target="${CARGO_TARGET_DIR:-$root/target}"
    case "$target" in /*) ;; *) target="$root/$target" ;; esac
    export HEADCOUNT_LIB="$target/debug/$lib_name"
    if [ ! -f "$HEADCOUNT_LIB" ]; then
        echo "run-tests.sh: cargo build succeeded but $HEADCOUNT_LIB does not exist" >&2
        exit 1
    fi
fi

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
