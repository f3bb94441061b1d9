#!/usr/bin/env bash
# Fuzzes the control frame decoder and its receive checks (docs/architecture.md CTRL-08) with
# cargo-fuzz (libFuzzer + AddressSanitizer) for DURATION seconds (default 600). A frame the
# fuzzer gets accepted that is not one of the signed seed frames aborts the run as a forgery;
# a panic or sanitizer report aborts it as a crash. libFuzzer's final stats give executions.
#
#   tools/fuzz-frames.sh                 # 10 minutes
#   DURATION=60 tools/fuzz-frames.sh     # a minute
#
# cargo-fuzz needs unstable compiler flags; RUSTC_BOOTSTRAP=1 allows them on a stable toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

cargo run --quiet --release --manifest-path fuzz/Cargo.toml --bin write_seeds -- fuzz/seeds/frame_decoder
mkdir -p fuzz/corpus/frame_decoder
cargo fuzz run frame_decoder fuzz/corpus/frame_decoder fuzz/seeds/frame_decoder -- \
  -max_total_time="$DURATION" -print_final_stats=1 -max_len=4096
