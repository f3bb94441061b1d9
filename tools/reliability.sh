#!/usr/bin/env bash
# The fault table of docs/failures-and-resume.md, every row, with long counts, printed as one table.
#
# Each row is a test of the suite (tests/faults.rs, tests/hostile.rs and the contract tests)
# run with raised counts; each prints its figure on a line starting with its row id, which
# this script collects. A row whose test fails is marked FAILED and the script exits 1.
#
#   tools/reliability.sh                  # the whole table (about 20-30 minutes here)
#   R1_RUNS=50 tools/reliability.sh       # fewer chaos runs
#   FUZZ=1 tools/reliability.sh           # also tools/fuzz-frames.sh (libFuzzer, 10 min)
set -uo pipefail
cd "$(dirname "$0")/.."

export STREAM_KERNEL_CHAOS_RUNS="${R1_RUNS:-500}"
export STREAM_KERNEL_R3_RUNS="${R3_RUNS:-50}"
export STREAM_KERNEL_R6_ALL=1
export STREAM_KERNEL_R7_FRAMES="${R7_FRAMES:-1000000}"
export STREAM_KERNEL_R8_CASES="${R8_CASES:-100000}"
export STREAM_KERNEL_R9_LINES="${R9_LINES:-1000000}"
export STREAM_KERNEL_R10_LINES="${R10_LINES:-1000000}"
export STREAM_KERNEL_R12_RUNS="${R12_RUNS:-100}"
export STREAM_KERNEL_JOURNAL_KILL_RUNS="${JOURNAL_KILL_RUNS:-20}"
export STREAM_KERNEL_JOURNAL_EDIT_RUNS="${JOURNAL_EDIT_RUNS:-20}"
export STREAM_KERNEL_REPORT_ROUNDS="${REPORT_ROUNDS:-20}"
export STREAM_KERNEL_STOP_SECONDS="${STOP_SECONDS:-20}"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=()

# run NAME CARGO-TEST-ARGS...: runs one test selection, keeps its output.
run() {
  local name=$1
  shift
  echo "running $name ..." >&2
  if ! cargo test --quiet "$@" -- --nocapture --test-threads 1 >>"$log" 2>&1; then
    failed+=("$name")
  fi
}

cargo build --quiet --tests >&2 || exit 1
run "R1 R2 R3 R4 R6 R11 R12" --test faults
run "R5" --test process_groups r5_
run "R7 frames" --test control ctrl_08
run "R7 connections, stdin, same file, signals, lock, resume" --test hostile
run "journal, resume, reports, write failures, signals, names" --test journal
run "R8" --test config r8_
run "R9" --test fund_load r9_
run "R10" --test observability obs_03
if [[ "${FUZZ:-0}" == 1 ]]; then
  echo "running tools/fuzz-frames.sh ..." >&2
  if tools/fuzz-frames.sh >>"$log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|Done [0-9]+ runs)' "$log" | tail -1 |
      sed 's/^/R7 fuzz: libFuzzer frame decoder, 0 crashes, 0 forgeries: /' >>"$log"
  else
    failed+=("R7 fuzz")
  fi
fi

echo "== stream-kernel reliability table =="
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) vCPU); date: $(date -u +%Y-%m-%d); command: tools/reliability.sh"
echo "counts: R1 ${STREAM_KERNEL_CHAOS_RUNS} runs, R3 ${STREAM_KERNEL_R3_RUNS} runs, R6 every word x 5 values + 21 spans, R7 ${STREAM_KERNEL_R7_FRAMES} frames, R8 ${STREAM_KERNEL_R8_CASES} configs, R9 ${STREAM_KERNEL_R9_LINES} lines, R10 ${STREAM_KERNEL_R10_LINES} records, R12 ${STREAM_KERNEL_R12_RUNS} runs, journal kills ${STREAM_KERNEL_JOURNAL_KILL_RUNS}, edited inputs ${STREAM_KERNEL_JOURNAL_EDIT_RUNS}, report rounds ${STREAM_KERNEL_REPORT_ROUNDS}, group stop ${STREAM_KERNEL_STOP_SECONDS} s"
echo
echo "| row | figure |"
echo "|---|---|"
# A test's first line of output follows libtest's "test <name> ... " on the same line.
sed -E 's/^test [^ ]+ +\.\.\. //' "$log" |
  grep -E '^(R[0-9]+|STDIN|SAME-FILE|SIGNALS|SIGNALS-ALL|LOCK|RESUME|RESUME-PAST|RESUME-RULES|JOURNAL-KILL|JOURNAL-EDIT|SKIP-PAST-END|BLOCKED-SOURCE|REPORT|FILE-SIZE-LIMIT|FULL-DEAD-LETTERS|REFUSED-AT-START|STOPPED-GROUP|LONG-LINES|NAMES|THREADS)[ :]' |
  grep -v ' seed [0-9]* (STREAM_KERNEL_CHAOS_SEED' |
  grep -v '^ignored: ' |
  awk '{ at = index($0, ": "); printf "| %s | %s |\n", substr($0, 1, at - 1), substr($0, at + 2) }'
if ((${#failed[@]})); then
  echo
  echo "FAILED: ${failed[*]} (see the test output above the table)" >&2
  grep -E '^(---- |thread .* panicked|test .* FAILED)' "$log" | head -40 >&2
  exit 1
fi
