#!/usr/bin/env bash
# Chaos runs (docs/failures-and-resume.md R1): `kill -9` of a random worker at a random moment of the 4-group
# fund-load job, RUNS times (default 500), each checked for hangs, orphans and lost records
# against the inline output. The test suite runs a CI-sized slice (20 runs) of the same test.
#
#   tools/chaos.sh                     # 500 runs
#   RUNS=100 SEED=42 tools/chaos.sh    # fewer runs, replay a seed
set -euo pipefail
cd "$(dirname "$0")/.."
export STREAM_KERNEL_CHAOS_RUNS="${RUNS:-500}"
if [[ -n "${SEED:-}" ]]; then
  export STREAM_KERNEL_CHAOS_SEED="$SEED"
fi
exec cargo test --release --test faults -- r1_kill_9 --nocapture
