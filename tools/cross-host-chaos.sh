#!/usr/bin/env bash
# Cross-host fault runs (README, "Across hosts"), RUNS times each (default 200) against a real
# nats-server -js: kill -9 of the downstream host's supervisor at a random moment and a restart,
# the same for the upstream host, the NATS server killed and restarted mid-run (file
# storage), and on a fresh 3-node cluster with `replicas: 3` the stream's leader killed
# mid-run. Every run must end byte-identical to the inline output (after the rerun a failed
# host names), and the cluster rows with no stream left. The test suite runs 20 of each of the
# first three and one cluster row.
#
#   tools/cross-host-chaos.sh                     # 200 runs per fault
#   RUNS=50 SEED=42 tools/cross-host-chaos.sh     # fewer runs, replay a seed
set -euo pipefail
cd "$(dirname "$0")/.."
export STREAM_KERNEL_XH_RUNS="${RUNS:-200}"
export STREAM_KERNEL_XH_CLUSTER_RUNS="${RUNS:-200}"
if [[ -n "${SEED:-}" ]]; then
  export STREAM_KERNEL_CHAOS_SEED="$SEED"
fi
for row in xh02 xh03 xh04 xh13; do
  cargo test --release --test cross_host -- "$row" --nocapture
done
