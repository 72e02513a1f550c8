#!/usr/bin/env bash
# Builds libheadcount.a (go generate) and runs the Go binding's checks:
#   go vet, go test, go test -race, and go test under the strict cgo
#   pointer checker. Exits non-zero on the first failure.
#
# Environment:
#   HEADCOUNT_PROFILE=release|debug   which library go generate builds and
#                                     places in build/ (default release, as
#                                     for users)
#   HEADCOUNT_SKIP_CARGO=1            do not run go generate (build/ is in place)
#   GO_TEST_FLAGS                     extra flags for every go test run
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
profile="${HEADCOUNT_PROFILE:-release}"

# Go needs a cache and a module path; CI containers may have no HOME.
if [ -z "${HOME:-}" ]; then
    export GOCACHE="${GOCACHE:-$root/target/go-cache}"
    export GOPATH="${GOPATH:-$root/target/go-path}"
fi
export CGO_ENABLED=1

export GOPROXY=off # the package has no third-party dependencies

case "$profile" in
    debug) cargo_flags=() ;;
    release) cargo_flags=(--release) ;;
    *) echo "run-tests.sh: HEADCOUNT_PROFILE must be debug or release, not $profile" >&2; exit 2 ;;
esac

cd "$here"
if [ "${HEADCOUNT_SKIP_CARGO:-0}" != 1 ]; then
    echo "== go generate (cargo build -p headcount-ffi ${cargo_flags[*]:-}, into build/)"
    HEADCOUNT_PROFILE="$profile" go generate
fi
lib="$here/build/$(go env GOOS)-$(go env GOARCH)/libheadcount.a"
for f in "$lib" "$here/build/include/headcount.h"; do
    if [ ! -f "$f" ]; then
        echo "run-tests.sh: $f is missing (run go generate in $here)" >&2
        exit 1
    fi
done
if ! cmp -s "$here/build/include/headcount.h" "$root/include/headcount.h"; then
    echo "run-tests.sh: build/include/headcount.h differs from include/headcount.h (run go generate)" >&2
    exit 1
fi

# The system libraries in cgo.go must be exactly those rustc says the static
# library needs (less -lc, which the C compiler adds).
if [ "${HEADCOUNT_SKIP_CARGO:-0}" != 1 ]; then
    echo "== system libraries of libheadcount.a vs cgo.go"
    needed="$(cd "$root" && cargo rustc -p headcount-ffi --lib "${cargo_flags[@]}" --crate-type staticlib \
        -- --print native-static-libs 2>&1 | sed -n 's/.*native-static-libs: //p' | tail -n 1 \
        | tr ' ' '\n' | grep -vx -- '-lc' | grep -v '^$' | tr '\n' ' ')"
    linked="$(sed -n 's/^#cgo !headcount_external LDFLAGS: //p' "$here/cgo.go" | tr -s ' ' | tr '\n' ' ')"
    if [ -z "$needed" ] || [ "${needed% }" != "${linked% }" ]; then
        echo "run-tests.sh: cgo.go links [${linked% }] but rustc says the static library needs [${needed% }] (plus -lc)" >&2
        exit 1
    fi
fi

unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
    echo "run-tests.sh: not gofmt'ed: $unformatted" >&2
    exit 1
fi

echo "== go vet ./..."
go vet ./...

echo "== go test -count=1 ./..."
# shellcheck disable=SC2086
go test -count=1 ${GO_TEST_FLAGS:-} ./...

echo "== go test -count=1 -race ./..."
# shellcheck disable=SC2086
go test -count=1 -race ${GO_TEST_FLAGS:-} ./...

# The strict cgo pointer checker (cgocheck=2) verifies that no Go pointer
# is stored into C memory. Go up to 1.20 enables it at run time; from 1.21
# it is a build-time experiment.
minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
echo "== go test -count=1 with cgocheck=2"
if [ "$minor" -le 20 ]; then
    # shellcheck disable=SC2086
    GODEBUG=cgocheck=2 go test -count=1 ${GO_TEST_FLAGS:-} ./...
else
    # shellcheck disable=SC2086
    GOEXPERIMENT=cgocheck2 go test -count=1 ${GO_TEST_FLAGS:-} ./...
fi
echo "== Go binding: all checks passed"
