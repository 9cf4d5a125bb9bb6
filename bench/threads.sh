#!/usr/bin/env bash
# Where one request at a time spends server CPU, per member and per thread, on a 3-member
# Warden ensemble: one session (on the leader or a follower, ROLE) runs WORKLOAD one request
# at a time; each thread's CPU ticks and voluntary context switches from /proc over the
# measured DURATION are divided by the requests done.
#
#   bash bench/threads.sh [set|create|delete|get|...] [follower|leader]
#
# WARDEN_BINARY=path measures another build; DURATION=6. Members run on free loopback ports
# with temp data dirs and are stopped by pid. /proc ticks are 10 ms: run long enough.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
. bench/lib.sh
WORKLOAD=${1:-set}
ROLE=${2:-follower}
one_ensemble_setup threads
start_three_for "$ROLE"
load() { "$BENCH" --servers "127.0.0.1:${PORT[$T]}" --connections 1 --outstanding 1 --workload "$WORKLOAD" --duration "$1" --keys 100 2>&1; }
load 2 >/dev/null
ticks() {
  for i in 1 2 3; do
    local role=follower; [ "$i" = "$L" ] && role=leader
    for t in /proc/${PID[$i]}/task/*; do
      echo "m$i-$role-$(cat "$t/comm")-$(basename "$t") $(awk '{print $14+$15}' "$t/stat") $(awk '/^voluntary_ctxt/ {print $2}' "$t/status")"
    done
  done | sort
}
ticks >"$WORK/before"
load "$DURATION" >"$WORK/bench.txt"
ticks >"$WORK/after"
ops=$(awk '/^throughput/ {print $2}' "$WORK/bench.txt")
echo "3 members, $WORKLOAD one at a time, session on m$T ($ROLE), leader m$L"
grep -E '^(throughput|latency)' "$WORK/bench.txt"
join "$WORK/before" "$WORK/after" | awk -v n="$((ops * DURATION))" '
  { cpu = ($4 - $2) * 10000 / n; total += cpu
    if ($4 > $2) printf "%-32s %7.1f µs CPU per request  %.2f sleeps per request\n", $1, cpu, ($5 - $3) / n }
  END { printf "total %.1f µs of server CPU per request, %.0f requests per server CPU-second\n", total, 1e6 / total }'
