#!/usr/bin/env bash
# The C ABI suite: builds libheadcount, checks include/headcount.h is current,
# compiles every tests/c/test_*.c against the static library under
# AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer) and runs it,
# then compiles and runs the README's C example with the README's exact link
# line (and once more against the shared library).
#
# Usage: tests/c/run.sh [test_name ...]     (default: every test_*.c)
# Environment: CC (default cc), HC_PROFILE=debug|release (default debug).
# Ends with the line "N passed, M failed"; exits non-zero if M > 0.
# A test that exits 77 is skipped (printed, and counted in neither).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
CC="${CC:-cc}"
profile="${HC_PROFILE:-debug}"
libdir="$root/target/$profile"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

CFLAGS=(-std=c11 -Wall -Wextra -Werror -g -fno-omit-frame-pointer
        -fsanitize=address,undefined -fno-sanitize-recover=all -I"$root/include")
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-}"

passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1"; }

# --- the library, and the link line users are told to use -------------------
cargo_profile=()
[ "$profile" = release ] && cargo_profile=(--release)
# The system libraries rustc says a static libheadcount needs (same for both profiles).
native_libs="$(cargo rustc -q -p headcount-ffi --lib --crate-type staticlib "${cargo_profile[@]}" \
    -- --print native-static-libs 2>&1 | sed -n 's/.*native-static-libs: //p' | tail -n 1)"
if ! cargo build -q -p headcount-ffi "${cargo_profile[@]}"; then
    echo "FAIL: cargo build -p headcount-ffi"
    echo "0 passed, 1 failed"
    exit 1
fi
static_lib="$libdir/libheadcount.a"

# The README holding the C section.
readme=""
grep -q '<!-- c-example' README.md 2>/dev/null && readme=README.md

# --- 1. the header is what cbindgen generates -------------------------------
if scripts/check-header.sh >"$tmp/header.log" 2>&1; then pass "include/headcount.h is up to date"
else cat "$tmp/header.log"; fail "include/headcount.h is stale (run scripts/gen-header.sh)"; fi

# --- 2. the README's link line names exactly rustc's native libraries -------
link_line=""
if [ -n "$readme" ]; then
    link_line="$(awk '/<!-- link-line/ {f=1} f && /^cc / {print; exit}' "$readme")"
fi
readme_libs="$(tr ' ' '\n' <<<"$link_line" | grep '^-l' | tr '\n' ' ' | sed 's/ $//')"
if [ -z "$link_line" ]; then
    fail "no link line (a 'cc ...' line after <!-- link-line -->) in README.md"
elif [ -z "$native_libs" ]; then
    fail "could not read rustc's native-static-libs"
elif [ "$readme_libs" = "$native_libs" ]; then
    pass "$readme link line names exactly the native libs: $native_libs"
else
    echo "  $readme says:  $readme_libs"
    echo "  rustc says:    $native_libs"
    fail "$readme link line does not match rustc's native-static-libs (update the README)"
fi

# --- 2b. the exported symbols are exactly the contract's (issue 4) -----------
contract="hc_add hc_config_free hc_config_new hc_config_set hc_count hc_count_info hc_count_local \
hc_last_error hc_node_add_peer hc_node_free hc_node_local_addr hc_node_start hc_set_log_callback hc_stats_json hc_status_str \
hc_total hc_track hc_untrack hc_untrack_all hc_version"
contract="$(tr ' ' '\n' <<<"$contract" | sed '/^$/d' | sort | tr '\n' ' ')"
exported="$(nm -D --defined-only "$libdir/libheadcount.so" | awk '$2 == "T" {print $3}' | sort | tr '\n' ' ')"
declared="$(grep -oE '\bhc_[a-z_]+\(' include/headcount.h | tr -d '(' | sort -u | tr '\n' ' ')"
if [ "$exported" = "$contract" ] && [ "$declared" = "$contract" ]; then
    pass "libheadcount.so exports and the header declares exactly the 20 contract functions"
else
    echo "  contract: $contract"; echo "  exported: $exported"; echo "  declared: $declared"
    fail "exported or declared functions differ from the contract"
fi

# --- 2c. the header stands alone, as C99 and as C++ --------------------------
hdr_ok=1
printf '#include "headcount.h"\n#include "headcount.h"\nint main(void) { return HC_OK; }\n' >"$tmp/hdr.c"
"$CC" -std=c99 -pedantic -Wall -Wextra -Werror -I"$root/include" -fsyntax-only "$tmp/hdr.c" || hdr_ok=0
if command -v c++ >/dev/null 2>&1; then
    c++ -x c++ -std=c++11 -Wall -Wextra -Werror -I"$root/include" -fsyntax-only "$tmp/hdr.c" || hdr_ok=0
fi
if [ $hdr_ok = 1 ]; then pass "include/headcount.h compiles on its own (C99 -pedantic, C++11)"
else fail "include/headcount.h does not compile on its own"; fi

# --- 3. the C tests, under sanitizers ----------------------------------------
if [ $# -gt 0 ]; then tests=("$@"); else
    tests=()
    for f in tests/c/test_*.c; do tests+=("$(basename "$f" .c)"); done
fi
for t in "${tests[@]}"; do
    src="tests/c/$t.c"
    if ! "$CC" "${CFLAGS[@]}" "$src" "$static_lib" $native_libs -o "$tmp/$t" 2>"$tmp/$t.cc.log"; then
        cat "$tmp/$t.cc.log"; fail "$t (does not compile)"; continue
    fi
    timeout 300 "$tmp/$t" >"$tmp/$t.log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        pass "$t ($(grep -c '^ok - ' "$tmp/$t.log") cases)"
    elif [ $rc -eq 77 ]; then
        skipped=$((skipped + 1)); echo "SKIP: $t: $(grep -m1 '^SKIP' "$tmp/$t.log")"
    else
        sed 's/^/  | /' "$tmp/$t.log"; fail "$t (exit $rc)"
    fi
done

# --- 4. the README example, linked exactly as the README says ----------------
if [ -n "$readme" ] && [ -n "$link_line" ]; then
    awk '/<!-- c-example/ {f=1; next} f && /^```c/ {c=1; next} c && /^```/ {exit} c {print}' "$readme" >"$tmp/app.c"
    # The README's words, with the example, the output and the profile's directory put in.
    read -ra words <<<"$link_line"
    cmd=()
    for w in "${words[@]}"; do
        case "$w" in
            app.c) cmd+=("$tmp/app.c") ;;
            app) cmd+=("$tmp/app") ;;
            -Iinclude) cmd+=("-I$root/include") ;;
            target/release/*) cmd+=("$libdir/${w#target/release/}") ;;
            cc) cmd+=("$CC") ;;
            *) cmd+=("$w") ;;
        esac
    done
    if "${cmd[@]}" 2>"$tmp/app.cc.log" && "$tmp/app" >"$tmp/app.out" 2>&1 \
        && grep -qx '2 in room:lobby' "$tmp/app.out"; then
        pass "README example links statically with: $link_line"
    else
        cat "$tmp/app.cc.log" "$tmp/app.out" 2>/dev/null; fail "README example with the README's static link line"
    fi
    # The shared library's SONAME is libheadcount.so.0: a program linked
    # against it loads that name, which scripts/install provides as a
    # symlink (as here).
    if [ "$(readelf -d "$libdir/libheadcount.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')" = libheadcount.so.0 ]; then
        pass "libheadcount.so has the SONAME libheadcount.so.0"
    else
        readelf -d "$libdir/libheadcount.so" | grep -i soname; fail "libheadcount.so lacks the SONAME libheadcount.so.0"
    fi
    mkdir -p "$tmp/lib" && ln -sf "$libdir/libheadcount.so" "$tmp/lib/libheadcount.so.0"
    if "$CC" -std=c11 -Wall -Wextra -Werror "$tmp/app.c" -I"$root/include" -L"$libdir" -lheadcount \
        -Wl,-rpath,"$tmp/lib" -o "$tmp/app_shared" 2>"$tmp/app_shared.log" \
        && "$tmp/app_shared" >"$tmp/app_shared.out" 2>&1 && grep -qx '2 in room:lobby' "$tmp/app_shared.out"; then
        pass "README example links against libheadcount.so"
    else
        cat "$tmp/app_shared.log" "$tmp/app_shared.out" 2>/dev/null; fail "README example against libheadcount.so"
    fi
else
    fail "no C example (a \`\`\`c block after <!-- c-example -->) in README.md"
fi

[ $skipped -gt 0 ] && echo "$skipped skipped"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
