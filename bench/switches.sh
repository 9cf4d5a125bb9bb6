#!/usr/bin/env bash
# Context switches per request, by server thread, for one session with one request at a
# time (1 x 1): how many thread hand-offs a request costs. Counts come from
# `perf stat --per-thread -e context-switches` over WINDOW seconds of the run, requests
# from mntr's zk_packets_received over the same window.
#
#   bash bench/switches.sh [WARDEN_BINARY] [WORKLOAD]      # default: target/release/warden get
#
# Needs perf (Debian's linux-perf). The server runs on a free loopback port with a temp
# data dir and is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/warden}
workload=${2:-get}
WINDOW=${WINDOW:-2}
bench=target/release/warden-bench
[ -x "$bench" ] || cargo build --release --quiet -p warden-bench
port=$("$bench" free-port)
dir=$(mktemp -d)
"$bin" server --set clientPort="$port" --set clientPortAddress=127.0.0.1 --set dataDir="$dir" \
  --set admin.enableServer=false --set '4lw.commands.whitelist=*' >"$dir/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
"$bench" ready --servers "127.0.0.1:$port" >/dev/null
"$bench" --servers "127.0.0.1:$port" --connections 1 --outstanding 1 --workload "$workload" \
  --duration $((WINDOW + 3)) --keys 1000 >/dev/null 2>&1 &
load=$!
sleep 2
received() { "$bench" four-letter --server "127.0.0.1:$port" mntr | awk '$1=="zk_packets_received"{print $2}'; }
before=$(received)
perf stat --per-thread -e context-switches -p "$pid" -o "$dir/perf.txt" -- sleep "$WINDOW" 2>/dev/null
after=$(received)
wait "$load"
requests=$((after - before))
echo "$(basename "$bin") $workload: $requests requests in ${WINDOW} s; context switches per request by thread:"
grep -E '^\s*[a-z]' "$dir/perf.txt" | grep -v '<not' | awk -v n="$requests" '$2 > 0 {printf "  %-28s %.2f\n", $1, $2/n; t+=$2/n} END {printf "  %-28s %.2f\n", "total", t}'
