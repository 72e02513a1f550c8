#!/usr/bin/env bash
# Packaging checks: each package installed the way its README says, from
# fresh temporary directories outside the repository, as a new user would.
#
#   python   a new venv installs bindings/python by path and runs a 2-node
#            cluster; `pip wheel` is platform-tagged and holds the stripped
#            extension; the sdist builds and installs too
#   go       a new module with require + replace builds with plain `go build`
#            and runs; after `go mod vendor` it builds from vendor/ alone
#   rust     a new cargo project depends on core/ by path and calls
#            node.track("room", 1); `cargo publish --dry-run -p headcount`
#   c        scripts/install PREFIX, then `cc app.c $(pkg-config --cflags
#            --libs headcount)` builds and runs against libheadcount.so.0
#   erlang   `make -C bindings/erlang` links target/release by default
#
# Usage: tests/packaging/run.sh [python|go|rust|c|erlang ...]  (default: all)
# Needs the network only for PyPI (maturin, into the temporary venvs) and
# crates.io (cargo). Every step is bounded by `timeout`. Ends with the line
# "N passed, M failed"; exits non-zero if M > 0.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
python="${PYTHON:-python3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [ -z "${HOME:-}" ]; then
    export GOCACHE="${GOCACHE:-$root/target/go-cache}" GOPATH="${GOPATH:-$root/target/go-path}"
fi
# The builds below reuse the repository's Cargo caches (only the
# dependencies' artifacts are shared; the packages' own sources come from
# the temporary directories).
py_target="$root/bindings/python/target"

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1"; [ -f "$tmp/log" ] && sed 's/^/  | /' "$tmp/log" | tail -n 40; }
# run NAME SECONDS CMD...: runs CMD with its output in $tmp/log.
run() {
    local name="$1" secs="$2"; shift 2
    if timeout "$secs" "$@" >"$tmp/log" 2>&1; then pass "$name"; return 0; fi
    fail "$name"; return 1
}

# A two-node cluster on loopback: each counts one connection, both see 2,
# and a watch read with `async for` (headcount/_aio.py in the package) says 2.
CLUSTER_PY='
import asyncio, time, headcount
cfg = dict(secret="s", flush_interval_ms=20)
with headcount.Node(node_name="a", listen="127.0.0.1:0", **cfg) as a, \
     headcount.Node(node_name="b", listen="127.0.0.1:0", seeds=[a.local_addr], **cfg) as b:
    a.track("room", 1)
    b.track("room", 2)
    deadline = time.monotonic() + 10
    while (a.count("room"), b.count("room")) != (2, 2) and time.monotonic() < deadline:
        time.sleep(0.01)
    print(a.count("room"), b.count("room"))
    async def watched():
        with b.watch("ro", initial=True) as w:
            async for batch in w:
                return [(c.topic, c.count) for c in batch]
    print(asyncio.run(asyncio.wait_for(watched(), 10)))
'

check_python() {
    local venv="$tmp/venv" app="$tmp/py-app"
    mkdir -p "$app"
    "$python" -m venv "$venv" || { fail "python: create a venv"; return; }
    # pip install <path>, from a directory that is not the repository.
    run "python: pip install bindings/python into a new venv" 900 \
        env -C "$app" "$venv/bin/pip" install --quiet --disable-pip-version-check "$root/bindings/python" || return
    if (cd "$app" && timeout 60 "$venv/bin/python" -c "$CLUSTER_PY") >"$tmp/log" 2>&1 && grep -qx "2 2" "$tmp/log" && grep -qxF "[('room', 2)]" "$tmp/log"; then
        pass "python: a 2-node cluster from the installed package counts 2 on both, and a watch says so"
    else
        fail "python: a 2-node cluster from the installed package"
    fi

    local wheels="$tmp/wheels"
    run "python: pip wheel bindings/python" 900 \
        env -C "$app" "$venv/bin/pip" wheel --quiet --disable-pip-version-check --no-deps -w "$wheels" "$root/bindings/python" || return
    local whl
    whl="$(ls "$wheels"/headcount-*.whl 2>/dev/null | head -n 1)"
    case "$(basename "${whl:-none}")" in
        *-linux_x86_64.whl | *-manylinux*_x86_64.whl | *-linux_aarch64.whl | *-manylinux*_aarch64.whl)
            pass "python: the wheel is platform-tagged ($(basename "$whl"))" ;;
        *) echo "  wheels: $(ls "$wheels")"; fail "python: the wheel is not platform-tagged (${whl:-none})"; return ;;
    esac
    mkdir -p "$tmp/whl" && (cd "$tmp/whl" && "$python" -m zipfile -e "$whl" .)
    local so
    so="$(ls "$tmp"/whl/headcount/_native*.so 2>/dev/null | head -n 1)"
    if [ -z "$so" ]; then
        (cd "$tmp/whl" && find . -type f) >"$tmp/log"; fail "python: the wheel holds headcount/_native*.so"
    elif file "$so" | grep -q ', stripped' && ! readelf -S "$so" | grep -q '\.debug_'; then
        pass "python: the wheel holds headcount/$(basename "$so"), stripped (no .debug_* sections)"
    else
        { file "$so"; readelf -S "$so" | grep debug; } >"$tmp/log"; fail "python: the extension in the wheel is not stripped"
    fi
    if [ -f "$tmp/whl/headcount/py.typed" ] && [ -f "$tmp/whl/headcount/_native.pyi" ]; then
        pass "python: the wheel holds py.typed and _native.pyi"
    else
        fail "python: the wheel lacks py.typed or _native.pyi"
    fi

    # The sdist: built with maturin, then installed into a second new venv
    # from the tarball alone (its own copy of the Rust sources).
    run "python: maturin sdist" 300 env -C "$app" sh -c \
        "'$venv/bin/pip' install --quiet --disable-pip-version-check 'maturin>=1.5,<2' && '$venv/bin/maturin' sdist --manifest-path '$root/bindings/python/Cargo.toml' --out '$tmp/sdist'" || return
    local sdist venv2="$tmp/venv-sdist"
    sdist="$(ls "$tmp"/sdist/headcount-*.tar.gz | head -n 1)"
    "$python" -m venv "$venv2"
    run "python: pip install the sdist ($(basename "$sdist")) into another new venv" 900 \
        env -C "$app" CARGO_TARGET_DIR="$py_target" "$venv2/bin/pip" install --quiet --disable-pip-version-check "$sdist" || return
    if (cd "$app" && timeout 60 "$venv2/bin/python" -c "$CLUSTER_PY") >"$tmp/log" 2>&1 && grep -qx "2 2" "$tmp/log"; then
        pass "python: the package built from the sdist runs the 2-node cluster"
    else
        fail "python: the package built from the sdist"
    fi
}

GO_MAIN='package main

import (
	"fmt"
	"log"

	"github.com/headcount-rs/headcount/bindings/go"
)

func main() {
	n, err := headcount.Start(headcount.Config{NodeName: "app"})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	n.Track("room:lobby", 1)
	n.Track("room:lobby", 2)
	c, err := n.Count("room:lobby")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c, "in room:lobby")
}
'

check_go() {
    if ! command -v go >/dev/null; then fail "go: no go command (scripts/install-deps installs golang-go)"; return; fi
    local mod="$tmp/go-app"
    mkdir -p "$mod"
    # The one-time step the README names: build the native library into the module.
    run "go: go generate in bindings/go (release libheadcount.a into build/)" 900 \
        env -C "$root/bindings/go" go generate || return
    cat >"$mod/go.mod" <<GOMOD
module example.com/app

go 1.19

require github.com/headcount-rs/headcount/bindings/go v0.0.0

replace github.com/headcount-rs/headcount/bindings/go => $root/bindings/go
GOMOD
    printf '%s' "$GO_MAIN" >"$mod/main.go"
    run "go: a new module with require + replace builds with plain go build" 300 \
        env -C "$mod" GOPROXY=off GOFLAGS= go build -o app . || return
    if timeout 30 "$mod/app" >"$tmp/log" 2>&1 && grep -qx "2 in room:lobby" "$tmp/log"; then
        pass "go: the program runs (2 in room:lobby)"
    else
        fail "go: the program runs"
    fi
    run "go: go mod vendor" 120 env -C "$mod" GOPROXY=off go mod vendor || return
    local vendored="vendor/github.com/headcount-rs/headcount/bindings/go"
    if [ -f "$mod/$vendored/build/include/headcount.h" ] && { [ -f "$mod/$vendored/build/linux-amd64/libheadcount.a" ] \
        || [ -f "$mod/$vendored/build/linux-arm64/libheadcount.a" ]; }; then
        pass "go: vendor/ holds the header and the static library"
    else
        (cd "$mod" && find vendor -type f) >"$tmp/log"; fail "go: vendor/ lacks build/include/headcount.h or build/<os-arch>/libheadcount.a"
    fi
    # -a rebuilds everything, -x shows the commands: the link must use the
    # vendored library, not the checkout's.
    rm -f "$mod/app"
    if (cd "$mod" && timeout 300 env GOPROXY=off go build -a -x -o app .) >"$tmp/log" 2>&1 \
        && grep -q "$mod/$vendored/build/linux-[a-z0-9]*/libheadcount.a" "$tmp/log" \
        && ! grep -q "$root/bindings/go/build/linux-[a-z0-9]*/libheadcount.a" "$tmp/log" \
        && timeout 30 "$mod/app" >"$tmp/log" 2>&1 && grep -qx "2 in room:lobby" "$tmp/log"; then
        pass "go: after go mod vendor it builds from vendor/ alone and runs"
    else
        fail "go: building from vendor/"
    fi
}

RUST_MAIN='use headcount::{Config, Node};

fn main() -> Result<(), headcount::Error> {
    let node = Node::start(&Config::new())?;
    node.track("room", 1)?;
    node.track(String::from("room"), 2)?;
    node.track(b"room", 3)?;
    println!("{} in room", node.count("room")?);
    Ok(())
}
'

check_rust() {
    local app="$tmp/rust-app"
    run "rust: cargo new" 60 cargo new --quiet --bin --vcs none "$app" || return
    printf 'headcount = { path = "%s/core" }\n' "$root" >>"$app/Cargo.toml"
    printf '%s' "$RUST_MAIN" >"$app/src/main.rs"
    if (cd "$app" && timeout 900 env CARGO_TARGET_DIR="$root/target/packaging" cargo run --quiet) >"$tmp/log" 2>&1 \
        && grep -qx "3 in room" "$tmp/log"; then
        pass "rust: a new cargo project depending on core/ by path calls node.track(\"room\", 1)"
    else
        fail "rust: a new cargo project depending on core/ by path"
    fi
    # --allow-dirty: a working tree with uncommitted changes still checks
    # the metadata and that the packaged crate builds on its own.
    run "rust: cargo package -p headcount" 900 env -C "$root" cargo package --quiet --locked --allow-dirty -p headcount
    run "rust: cargo publish --dry-run -p headcount" 900 \
        env -C "$root" cargo publish --quiet --locked --allow-dirty --dry-run -p headcount
}

C_APP='#include <stdio.h>
#include <headcount.h>

int main(void) {
    hc_config *cfg = hc_config_new();
    hc_node *node;
    if (hc_node_start(cfg, &node) != HC_OK) { fprintf(stderr, "%s\n", hc_last_error()); return 1; }
    hc_config_free(cfg);
    hc_track(node, (const uint8_t *)"room:lobby", 10, 1, NULL);
    hc_track(node, (const uint8_t *)"room:lobby", 10, 2, NULL);
    uint64_t n = 0;
    hc_count(node, (const uint8_t *)"room:lobby", 10, &n);
    printf("%llu in room:lobby\n", (unsigned long long)n);
    hc_node_free(node);
    return 0;
}
'

check_c() {
    local prefix="$tmp/prefix" app="$tmp/c-app"
    mkdir -p "$app"
    run "c: scripts/install PREFIX" 900 "$root/scripts/install" "$prefix" || return
    local missing=""
    for f in include/headcount.h lib/libheadcount.a lib/libheadcount.so.0 lib/libheadcount.so lib/pkgconfig/headcount.pc; do
        [ -e "$prefix/$f" ] || missing="$missing $f"
    done
    if [ -z "$missing" ] && [ "$(readlink "$prefix/lib/libheadcount.so")" = libheadcount.so.0 ]; then
        pass "c: PREFIX holds the header, libheadcount.{a,so.0}, the .so -> .so.0 symlink and headcount.pc"
    else
        fail "c: PREFIX lacks:$missing"
    fi
    printf '%s' "$C_APP" >"$app/app.c"
    # The README's line, word for word.
    if (cd "$app" && export PKG_CONFIG_PATH="$prefix/lib/pkgconfig" \
        && timeout 120 sh -c 'cc app.c $(pkg-config --cflags --libs headcount) -o app') >"$tmp/log" 2>&1; then
        pass "c: cc app.c \$(pkg-config --cflags --libs headcount) builds"
    else
        fail "c: cc app.c \$(pkg-config --cflags --libs headcount)"; return
    fi
    if readelf -d "$app/app" | grep -q 'NEEDED.*\[libheadcount.so.0\]' \
        && LD_LIBRARY_PATH="$prefix/lib" timeout 30 "$app/app" >"$tmp/log" 2>&1 && grep -qx "2 in room:lobby" "$tmp/log"; then
        pass "c: the program needs libheadcount.so.0 and runs (2 in room:lobby)"
    else
        { readelf -d "$app/app" | grep NEEDED; cat "$tmp/log"; } >"$tmp/log2" 2>&1; mv "$tmp/log2" "$tmp/log"
        fail "c: the program against the installed libheadcount.so.0"
    fi
}

check_erlang() {
    # What the Makefile links when nothing is set (make's own view of HC_LIB).
    local lib
    lib="$(make --no-print-directory -s -C "$root/bindings/erlang" -f Makefile -f - print-hc-lib <<<'print-hc-lib: ; @echo $(HC_LIB)' 2>"$tmp/log")"
    if [ "$lib" = "$root/target/release/libheadcount.a" ]; then
        pass "erlang: make -C bindings/erlang links target/release/libheadcount.a by default"
    else
        echo "HC_LIB=$lib" >>"$tmp/log"; fail "erlang: make -C bindings/erlang links $lib by default, not target/release"
    fi
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(python go rust c erlang)
for s in "${steps[@]}"; do
    echo "== $s"
    rm -f "$tmp/log"
    case "$s" in
        python | go | rust | c | erlang) "check_$s" ;;
        *) fail "unknown step $s (python, go, rust, c, erlang)" ;;
    esac
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
