#!/usr/bin/env bash
# Durability figures for Warden (issue: txn log, snapshots, recovery):
#  1. fsyncs per second vs writes per second under 64 concurrent writers (group commit);
#  2. snapshot time and size with ZNODES znodes of 100 bytes (default 1,000,000);
#  3. restart-to-serving time from that snapshot.
# Stops everything it starts by pid. Usage: bash bench/durability.sh [ZNODES=1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
ZNODES=${ZNODES:-1000000}
cargo build --quiet --release -p warden -p warden-bench
W=target/release/warden
B=target/release/warden-bench
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port=$($B free-port); admin=$($B free-port)
start() {
  $W server --set clientPort=$port --set dataDir=$work/data --set admin.serverPort=$admin \
    --set '4lw.commands.whitelist=*' --set maxClientCnxns=0 --set snapCount=100000000 >>"$work/server.log" 2>&1 &
  pid=$!
}
fsyncs() { $B four-letter --server 127.0.0.1:$port mntr | awk -F'\t' '$1=="zk_warden_fsync_count"{print $2}'; }

start; $B ready --servers 127.0.0.1:$port >/dev/null
echo "== 64 concurrent writers (setData, one outstanding each, 10 s)"
before=$(fsyncs)
$B --servers 127.0.0.1:$port --workload set --connections 64 --outstanding 1 --duration 10 --keys 1000 --server-pid $pid --json $work/set.json | tail -n 12
after=$(fsyncs)
python3 - "$work/set.json" "$before" "$after" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); f = int(sys.argv[3]) - int(sys.argv[2])
secs = r.get("elapsed_s") or r.get("elapsed_secs") or r.get("elapsed") or 10
ops = r.get("ops") or r.get("operations")
print(f"writes {ops} in {secs:.1f} s = {ops/secs:.0f}/s; fsyncs {f} = {f/secs:.0f}/s; {ops/max(f,1):.1f} writes per fsync")
PY

echo "== populate $ZNODES znodes of 100 bytes"
$B --servers 127.0.0.1:$port --workload populate --keys "$ZNODES" --prefix /pop --value-size 100 --connections 8 --outstanding 64 --server-pid $pid | tail -n 4
rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
echo "RSS after load: $((rss / 1024)) MiB"
echo "== snapshot of the loaded tree"
curl_like() { python3 -c "import urllib.request,sys;print(urllib.request.urlopen('http://127.0.0.1:$admin'+sys.argv[1]).read().decode())" "$1"; }
curl_like /commands/snapshot
for _ in $(seq 1 600); do grep -q "snapshot written" "$work/server.log" && break; sleep 0.2; done
grep "snapshot written" "$work/server.log" | tail -n 1
ls -l "$work"/data/version-2/snapshot.* | awk '{print "snapshot file:", $9, $5, "bytes"}'

echo "== restart to serving"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
t0=$(date +%s%N); start
ms=$($B ready --servers 127.0.0.1:$port)
t1=$(date +%s%N)
echo "restart to first session: $(( (t1 - t0) / 1000000 )) ms (ready reported $ms ms)"
grep "recovered data" "$work/server.log" | tail -n 1
echo "znodes after restart: $($B four-letter --server 127.0.0.1:$port mntr | awk -F'\t' '$1=="zk_znode_count"{print $2}')"
