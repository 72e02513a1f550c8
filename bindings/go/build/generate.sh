#!/bin/sh
# Run by "go generate" in bindings/go (once, and again after changing the
# Rust code): builds libheadcount in release mode and places, inside this
# module, what the package links:
#
#   build/include/headcount.h           (a copy of include/headcount.h)
#   build/$GOOS-$GOARCH/libheadcount.a
#
# Both are generated files, ignored by git. HEADCOUNT_PROFILE=debug builds
# and places the debug library instead (faster to build, several times
# slower to run); CARGO_TARGET_DIR is honoured.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
goos="${GOOS:-$(go env GOOS)}"
goarch="${GOARCH:-$(go env GOARCH)}"
profile="${HEADCOUNT_PROFILE:-release}"
platform="$goos-$goarch"
PATH="$HOME/.cargo/bin:$PATH"

if [ ! -d "$here/$platform" ]; then
    echo "go generate: no build/$platform directory: this package links only on" \
        "$(cd "$here" && ls -d linux-* | tr '\n' ' ')(build with -tags headcount_external elsewhere)" >&2
    exit 1
fi
case "$profile" in
    release) flag=--release ;;
    debug) flag= ;;
    *) echo "go generate: HEADCOUNT_PROFILE must be release or debug, not $profile" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
(cd "$root" && cargo build --locked -p headcount-ffi $flag)
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
cp "$target/$profile/libheadcount.a" "$here/$platform/libheadcount.a"
cp "$root/include/headcount.h" "$here/include/headcount.h"
echo "go generate: build/$platform/libheadcount.a ($profile) and build/include/headcount.h are in place"
