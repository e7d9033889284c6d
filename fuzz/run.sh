#!/usr/bin/env bash
# Builds and runs every fuzz target for a bounded time each.
#
#   fuzz/run.sh [SECONDS]      # default 60 per target
#   FUZZ_DEV=1 fuzz/run.sh 5   # unoptimized (cargo fuzz --dev): builds in a third of the
#                              # time and runs far fewer inputs; CI's smoke run
#
# cargo-fuzz needs a nightly compiler: the machine's nightly toolchain when there is one
# (`rustup toolchain list`), else stable with RUSTC_BOOTSTRAP=1. Crashes land in
# fuzz/artifacts/<target>/; reproduce one with `cargo +nightly fuzz run <target> <file>` and
# turn it into a regression test under tests/.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

# Seeds: the committed safetensors fixtures (PyTorch state_dicts) and a tiny char-rnn
# checkpoint, so that the loader target starts from valid files and mutates them; and the
# inputs of crashes found before, so that every run replays them.
mkdir -p corpus/load_files corpus/layer_api
cp ../tests/fixtures/safetensors/*.safetensors seeds/load_files/* corpus/load_files/
cp seeds/layer_api/* corpus/layer_api/

build=()
if [ "${FUZZ_DEV:-0}" = 1 ]; then
    build=(--dev)
fi

status=0
mkdir -p logs
for target in $("${fuzz[@]}" list); do
    echo "== $target: ${seconds}s"
    mkdir -p "corpus/$target"
    rc=0
    "${fuzz[@]}" run "${build[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 \
        >"logs/$target.log" 2>&1 || rc=$?
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|panicked|ERROR|SUMMARY' \
        "logs/$target.log" || true
    if [ "$rc" -ne 0 ]; then
        echo "!! $target failed (exit $rc): see fuzz/logs/$target.log and fuzz/artifacts/$target/"
        status=1
    fi
done
exit "$status"
