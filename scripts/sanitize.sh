#!/usr/bin/env bash
# Memory checks of the unsafe code: the kernels' tests, and the safe crate's tests that drive
# the kernels on many shapes, under AddressSanitizer (nightly `-Zsanitizer=address`: heap,
# stack and global out-of-bounds, use after free; the standard library itself is not
# instrumented). Falls back to valgrind memcheck when no nightly toolchain is installed.
#
#   scripts/sanitize.sh            # ASan (or valgrind)
#   scripts/sanitize.sh valgrind   # valgrind memcheck on the kernels' tests
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
mode="${1:-asan}"
if [ "$mode" = asan ] && ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "no nightly toolchain: using valgrind"
    mode=valgrind
fi
# The safe crate's tests that reach every kernel (modules of the one integration binary):
# references on random shapes, buffers, determinism across thread counts, robustness, thread
# safety, truncated BPTT, gradient checks.
safe_tests=(--test integration -- reference:: buffers:: determinism:: robustness::
    thread_safety:: tbptt:: gradcheck::)

case "$mode" in
asan)
    export RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address"
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
    # Fewer proptest cases: instrumented code is several times slower.
    export PROPTEST_CASES="${PROPTEST_CASES:-64}"
    cargo +nightly test --target "$target" --target-dir target/asan -p fused-rnn-kernels --features testing
    cargo +nightly test --target "$target" --target-dir target/asan -p fused-rnn "${safe_tests[@]}"
    FUSED_RNN_FORCE_ARCH=scalar cargo +nightly test --target "$target" --target-dir target/asan \
        -p fused-rnn --test integration -- reference::
    echo "AddressSanitizer: clean"
    ;;
valgrind)
    command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
    export PROPTEST_CASES="${PROPTEST_CASES:-16}"
    cargo test --release -p fused-rnn-kernels --features testing --no-run --message-format=json |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])' |
        while read -r exe; do
            valgrind --error-exitcode=1 --leak-check=full --quiet "$exe" --test-threads=1
        done
    echo "valgrind memcheck: clean"
    ;;
*)
    echo "usage: $0 [asan|valgrind]"
    exit 2
    ;;
esac
