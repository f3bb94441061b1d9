#!/usr/bin/env bash
# Runs the 4-group job on 1,000,000 generated lines with --report, and takes a screenshot of
# the page in headless Chromium (Debian package `chromium`): docs/report.png, as the README
# shows it.
#
#   tools/report-screenshot.sh [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/report.png}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
bin=target/release/stream-kernel
"$bin" gen --lines 1000000 --output "$work/in.txt"
"$bin" run --quiet -c configs/fund_load_experiment_4proc.yml --input "$work/in.txt" \
  --output "$work/out.txt" --dead-letter "$work/rejects.jsonl" \
  --report "$work/run.html" --report "$work/run.json" >/dev/null
mkdir -p "$(dirname "$out")"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --hide-scrollbars --window-size=1000,2150 \
  --screenshot="$out" "file://$work/run.html" 2>/dev/null
echo "wrote $out"
