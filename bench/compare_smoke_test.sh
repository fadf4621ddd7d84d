#!/usr/bin/env bash
# bench/compare_smoke_test.sh — the CI smoke of bench/compare.sh (ctest: bench_compare_smoke).
#
#   bench/compare_smoke_test.sh BUILD_DIR
#
# Runs compare.sh with SMOKE=1 (tiny sizes, one repetition) on SMOKE_ROWS in both scenarios and
# checks what a smoke can check without asserting any speed: the script exits 0 (every run gave
# its figure and no request, connection or message failed), and the table it wrote has a row
# for each selected workload in each scenario, with a figure on both sides. Speed lives in the
# benchmark itself, not in this test.
#
# Skips (exit 77) with the reason when not root or a program is missing; under CI=true a skip is
# a failure.
set -uo pipefail
build=$(cd "${1:?usage: compare_smoke_test.sh BUILD_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

skip() {
  echo "compare_smoke_test: SKIP: $1"
  [[ ${CI:-} == true ]] && { echo "compare_smoke_test: CI=true: not skipping" >&2; exit 1; }
  exit 77
}
[[ $(id -u) -eq 0 ]] || skip "not root: compare.sh needs network namespaces, veth and TUN"
for p in ip nginx ab wrk sockperf iperf3 redis-server redis-cli redis-benchmark curl python3; do
  command -v "$p" >/dev/null || skip "$p is not installed (scripts/install-deps.sh)"
done

rows=${SMOKE_ROWS:-"ab-c50-w1 wrk-t1-c32 sockperf iperf3-up redis idle conns"}
out=$(mktemp /tmp/compare-smoke.XXXXXX)
trap 'rm -f "$out"' EXIT
status=0
SMOKE=1 ROWS="$rows" SCENARIOS="packet tun" BUILD_DIR="$build" OUT="$out" "$root/bench/compare.sh" || status=$?
if ((status != 0)); then
  echo "compare_smoke_test: FAIL: compare.sh exited $status (a run failed or lost requests; its log is above)"
  exit 1
fi

# The table's rows, as compare_table.py labels them, one pattern per selected row.
declare -A label=(
  [ab-c32-w1]="nginx 1 worker, ab -n[0-9]+ -c32" [ab-c50-w1]="nginx 1 worker, ab -n[0-9]+ -c50"
  [ab-c32-w2]="nginx 2 workers, ab -n[0-9]+ -c32" [ab-c50-w2]="nginx 2 workers, ab -n[0-9]+ -c50"
  [wrk-t1-c32]="wrk -t1 -c32" [wrk-t2-c50]="wrk -t2 -c50" [sockperf]="sockperf ping-pong --tcp, p50"
  [iperf3-up]="iperf3 1 stream, client -> server" [iperf3-down]="iperf3 1 stream, server -> client"
  [redis]="redis-benchmark .*GET" [idle]="idle: [0-9]+ idle conns" [conns]="concurrent conns"
  [scaling]="scaling: ab -c50"
)
bad=0
for sc in packet tun; do
  for r in $rows; do
    line=$(grep -E "^$sc +.*${label[$r]}" "$out" | head -1)
    if [[ -z $line ]]; then
      echo "compare_smoke_test: FAIL: no '$r' row for $sc in the table"
      bad=1
    elif grep -q "no data" <<<"$line"; then
      echo "compare_smoke_test: FAIL: the '$r' row for $sc has no figure on one side: $line"
      bad=1
    fi
  done
done
((bad == 0)) || { cat "$out"; exit 1; }
echo "compare_smoke_test: the table has every row ($rows) in packet and tun mode, no run failed"
