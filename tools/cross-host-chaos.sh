#!/usr/bin/env bash
# Cross-host fault runs (README, "Across hosts"), RUNS times each (default 200) against a real
# nats-server -js: kill -9 of the downstream host's supervisor at a random moment and a restart,
# the same for the upstream host, the NATS server killed and restarted mid-run (file
# storage), and on a fresh 3-node cluster with `replicas: 3` the stream's leader killed
# mid-run, and (as root, with network namespaces) a 15 s partition between the sink host and
# NATS. Every run must end byte-identical to the inline output (after the rerun a failed host
# names), and the cluster and partition rows with no stream left. The test suite runs 20 of
# each of the first three, one cluster row and one 4 s partition.
#
#   tools/cross-host-chaos.sh                     # 200 runs per fault
#   RUNS=50 SEED=42 tools/cross-host-chaos.sh     # fewer runs, replay a seed
#   PARTITION_SECONDS=30 tools/cross-host-chaos.sh # longer partitions
set -euo pipefail
cd "$(dirname "$0")/.."
export STREAM_KERNEL_XH_RUNS="${RUNS:-200}"
export STREAM_KERNEL_XH_CLUSTER_RUNS="${RUNS:-200}"
export STREAM_KERNEL_XH_PARTITION_RUNS="${RUNS:-200}"
export STREAM_KERNEL_XH_PARTITION_SECONDS="${PARTITION_SECONDS:-15}"
if [[ -n "${SEED:-}" ]]; then
  export STREAM_KERNEL_CHAOS_SEED="$SEED"
fi
for row in xh02 xh03 xh04 xh13 xh18; do
  cargo test --release --test cross_host -- "$row" --nocapture
done
