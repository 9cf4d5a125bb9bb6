#!/usr/bin/env bash
# Scale without cliffs (issue 14): Warden vs Apache ZooKeeper 3.8 at large sizes.
#  A. Big trees: ZNODES znodes of 100 B under PARENTS parents (/scale/p<i % PARENTS>/k<i>):
#     populate rate (znodes/s and per server CPU-second), RSS after populate and per znode
#     (ZooKeeper also its live heap after a full GC, jcmd), time to write a snapshot of the
#     full tree, restart to the first successful read of the last znode.
#     ENSEMBLE=1 adds a 3-member ensemble: a follower whose dataDir was wiped, restarted,
#     until it reads the last znode and reports Mode: follower.
#  B. Many clients on one node: SESSIONS concurrent sessions (time to open, memory per
#     session, open+close churn while they are held), WATCHERS_ONE watchers on one znode
#     (memory per watch, fan-out time of one setData), WATCHES data watches spread over a
#     WATCH_TREE-znode tree by WATCH_SESSIONS sessions (time to set, memory per watch);
#     each of the three on a fresh server.
# Prints one markdown table (Warden, ZooKeeper, ratio) and writes it to OUT. Every server
# it starts is stopped by pid, also on failure.
#
#   bash bench/scale.sh                                         # full size (long; needs RAM)
#   ZNODES=20000 SESSIONS=2000 WATCHERS_ONE=500 WATCHES=20000 bash bench/scale.sh   # small check
#
# Knobs (env): ZNODES=10000000 PARENTS=1000 SESSIONS=100000 WATCHERS_ONE=10000 WATCHES=1000000
# WATCH_SESSIONS=1000 WATCH_TREE=$WATCHES CHURN_SECS=10 CHURN_PARALLEL=32 FANOUT_ROUNDS=3
# ENSEMBLE=0 PARTS="trees clients" (also "ensemble": the ensemble part alone) SERVERS="zookeeper warden" ZK_HEAP (default: 1 GiB + 800 B
# per znode) SOURCES (127.0.0.x source addresses; default from the ephemeral port range)
# READY_TIMEOUT=1800 STEP_TIMEOUT=600 BUILD=1 (0: use the existing release binaries)
# CLIENT_THREADS=1 (scale-clients runtime threads) WARDEN_BINARY=path WARDEN_SET="key=value ..."
# (extra --set for Warden) SNAP_COUNT (snapCount for both; neither purges by default, so a 10M
# ensemble at the default 100,000 keeps ~100 snapshots per member: over 30 GB) KEEP_WORK=0 OUT=bench/results/scale-<date>.md
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
. bench/lib.sh

ZNODES=${ZNODES:-10000000}
PARENTS=${PARENTS:-1000}
SESSIONS=${SESSIONS:-100000}
WATCHERS_ONE=${WATCHERS_ONE:-10000}
WATCHES=${WATCHES:-1000000}
WATCH_SESSIONS=${WATCH_SESSIONS:-1000}
WATCH_TREE=${WATCH_TREE:-$WATCHES}
CHURN_SECS=${CHURN_SECS:-10}
CHURN_PARALLEL=${CHURN_PARALLEL:-32}
FANOUT_ROUNDS=${FANOUT_ROUNDS:-3}
ENSEMBLE=${ENSEMBLE:-0}
PARTS=${PARTS:-"trees clients"}
SERVERS=${SERVERS:-"zookeeper warden"}
ZK_HEAP=${ZK_HEAP:-$((ZNODES * 800 / 1048576 + 1024))m}
READY_TIMEOUT=${READY_TIMEOUT:-1800}
STEP_TIMEOUT=${STEP_TIMEOUT:-600}
OUT=${OUT:-$repo/bench/results/scale-$(date -u +%Y-%m-%d).md}
TICK=2000
PREFIX=/scale

ensure_zookeeper
if [ "${BUILD:-1}" = 1 ]; then
  echo "== building warden and warden-bench (release) ==" >&2
  cargo build --release --quiet -p warden -p warden-bench
fi
WARDEN=${WARDEN_BINARY:-$repo/target/release/warden}
BENCH=$repo/target/release/warden-bench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/warden-scale.XXXXXX")
declare -A PID PORT QPORT EPORT DIR APORT VAL
# Problems go to a file, so functions run in $(...) can report them too.
problem() { echo "$*" >>"$WORK/problems"; }
cleanup() {
  local k
  for k in "${!PID[@]}"; do stop_pid "${PID[$k]}"; done
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
write_zk_log4j "$WORK"

say() { echo "== $*" >&2; }
rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
mntr() { { "$BENCH" four-letter --server "127.0.0.1:${PORT[$1]}" mntr 2>/dev/null || true; } | awk -v k="$2" '$1 == k { print $2 }'; }
jget() { jq -r "$2 // empty" "$1" 2>/dev/null || true; }
put() { [ -n "${3:-}" ] && VAL["$1|$2"]=$3 || true; }
last_key() { local i=$((ZNODES - 1)); echo "$PREFIX/p$((i % PARENTS))/k$i"; }
# ms since epoch
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# start NAME N I: start_member with Warden's admin server on its own port (for the snapshot command).
start() {
  APORT[$3]=$("$BENCH" free-port)
  local snap=""
  [ -n "${SNAP_COUNT:-}" ] && snap="snapCount=$SNAP_COUNT"
  MEMBER_ZK_CFG="$snap" MEMBER_WARDEN_SET="${WARDEN_SET:-} $snap admin.enableServer=true admin.serverPort=${APORT[$3]} zookeeper.admin.rateLimiterIntervalInMS=0" start_member "$1" "$2" "$3"
}

# populate NAME TAG KEYS SERVERPIDS: the tree through member 1 (the leader if LEADER is set).
populate() {
  local name=$1 tag=$2 keys=$3 pids=$4 via=${LEADER:-1} rc=0
  "$BENCH" --servers "127.0.0.1:${PORT[$via]}" --server-pid "$pids" --label "$name" --workload populate \
    --keys "$keys" --parents "$PARENTS" --prefix "$PREFIX" --value-size 100 --connections 8 --outstanding 64 \
    --request-timeout 120 --json "$WORK/$tag-$name.json" >"$WORK/$tag-$name.txt" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    problem "$name $tag populate: warden-bench exited $rc: $(grep -E 'errors|failures|warden-bench:' "$WORK/$tag-$name.txt" | tr '\n' ' ' | cut -c1-300)"
  fi
  return "$rc"
}

# warden_snapshot_ms I: asks member I for a snapshot (admin command) and waits for its
# "snapshot written" log line; prints "ms bytes".
warden_snapshot_ms() {
  local i=$1 reply file line
  for _ in $(seq 600); do
    reply=$(curl -s "http://127.0.0.1:${APORT[$i]}/commands/snapshot?streaming=false" || true)
    file=$(echo "$reply" | jq -r '.snapshot_file_name // empty' 2>/dev/null || true)
    [ -n "$file" ] && break
    sleep 0.5 # 409: an automatic (snapCount) snapshot is being written
  done
  [ -n "$file" ] || { problem "warden snapshot command refused: $reply"; return 0; }
  for _ in $(seq $((STEP_TIMEOUT * 10))); do
    line=$(grep "snapshot written" "$WORK/warden-m$i.out" | grep -F "/$file," | tail -n 1 || true)
    [ -n "$line" ] && break
    sleep 0.1
  done
  [ -n "$line" ] || { problem "warden: no 'snapshot written' line for $file"; return 0; }
  echo "$(echo "$line" | sed -n 's/.*[ ,]ms: \([0-9]*\).*/\1/p') $(echo "$line" | sed -n 's/.*bytes: \([0-9]*\).*/\1/p')"
}

# warden_backup I: streams a backup from member I (admin `snapshot` command) to a file and
# samples the member's RSS every 20 ms meanwhile; prints "ms bytes extra_rss_kb".
warden_backup() {
  local i=$1 pid=${PID[$1]} base peak r t0 t1 bytes
  base=$(rss_kb "$pid"); peak=$base
  t0=$(now_ms)
  curl -sf -o "$WORK/backup.zk" "http://127.0.0.1:${APORT[$i]}/commands/snapshot" &
  local c=$!
  while kill -0 "$c" 2>/dev/null; do
    r=$(rss_kb "$pid"); [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.02
  done
  wait "$c" || { problem "warden backup: curl failed"; return 0; }
  t1=$(now_ms)
  bytes=$(stat -c %s "$WORK/backup.zk"); rm -f "$WORK/backup.zk"
  echo "$((t1 - t0)) $bytes $((peak - base))"
}

# zk_live_heap_kb I (empty if jcmd cannot tell).
zk_heap() {
  jvm_live_heap_kb "${PID[$1]}" || { problem "zookeeper: no live-heap figure (jcmd GC.run / GC.heap_info failed)"; true; }
}

trees() {
  local name=$1 base heap0 snap ms bytes t0 t1 rss
  say "$name: populate $ZNODES znodes under $PARENTS parents"
  layout 1 "$name-trees"
  start "$name" 1 1
  if ! "$BENCH" ready --servers "$(hosts 1)" --timeout "$READY_TIMEOUT" >/dev/null; then
    problem "$name trees: not serving"; stop_cluster 1; return
  fi
  base=$(rss_kb "${PID[1]}")
  if [ "$name" = zookeeper ]; then heap0=$(zk_heap 1); fi
  populate "$name" populate "$ZNODES" "${PID[1]}" || true
  local j="$WORK/populate-$name.json"
  put "$name" populate_rate "$(jget "$j" .ops_per_sec)"
  put "$name" populate_cpu "$(jget "$j" .server.ops_per_cpu_sec)"
  rss=$(jget "$j" .server.rss_kb)
  put "$name" rss_populated "$rss"
  [ -n "$rss" ] && [ -n "$base" ] && put "$name" rss_per_znode "$(((rss - base) * 1024 / ZNODES))"
  put "$name" znodes "$(mntr 1 zk_znode_count)"
  if [ "$name" = zookeeper ]; then
    local heap; heap=$(zk_heap 1)
    put "$name" heap_populated "$heap"
    [ -n "$heap" ] && [ -n "${heap0:-}" ] && put "$name" heap_per_znode "$(((heap - heap0) * 1024 / ZNODES))"
  else
    say "$name: snapshot of the populated tree"
    read -r ms bytes <<<"$(warden_snapshot_ms 1)" || true
    put "$name" snapshot_ms "${ms:-}"
    [ -n "${bytes:-}" ] && put "$name" snapshot_kb "$((bytes / 1024))"
    say "$name: backup of the populated tree (admin snapshot command, streamed)"
    local extra
    read -r ms bytes extra <<<"$(warden_backup 1)" || true
    put "$name" backup_ms "${ms:-}"
    [ -n "${bytes:-}" ] && put "$name" backup_kb "$((bytes / 1024))"
    put "$name" backup_extra_rss "${extra:-}"
  fi
  say "$name: restart on the populated data dir"
  stop_pid "${PID[1]}"
  t0=$(now_ms)
  start "$name" 1 1
  if "$BENCH" wait-read --server "127.0.0.1:${PORT[1]}" --path "$(last_key)" --timeout "$READY_TIMEOUT" >/dev/null; then
    t1=$(now_ms)
    put "$name" restart_ms "$((t1 - t0))"
    put "$name" rss_restarted "$(rss_kb "${PID[1]}")"
    if [ "$name" = zookeeper ]; then
      # ZooKeeper writes a snapshot of the loaded tree before it serves (ZooKeeperServer.loadData).
      put "$name" snapshot_ms "$(mntr 1 zk_max_snapshottime)"
      snap=$(ls -t "${DIR[1]}"/version-2/snapshot.* 2>/dev/null | head -n 1 || true)
      [ -n "$snap" ] && put "$name" snapshot_kb "$(($(stat -c %s "$snap") / 1024))"
    fi
  else
    problem "$name: $(last_key) not readable within $READY_TIMEOUT s of a restart"
  fi
  stop_cluster 1
  rm -rf "$WORK/$name-trees"
}

ensemble() {
  local name=$1 f i t0 t1 ok=""
  say "$name: 3-member ensemble, populate $ZNODES znodes"
  layout 3 "$name-ens"
  for i in 1 2 3; do start "$name" 3 "$i"; done
  if ! "$BENCH" ready --servers "$(hosts 3)" --timeout "$READY_TIMEOUT" >/dev/null; then
    problem "$name ensemble: not serving"; stop_cluster 3; return
  fi
  LEADER=$(find_leader 3)
  if [ -z "$LEADER" ]; then problem "$name ensemble: no leader"; stop_cluster 3; return; fi
  populate "$name" ens-populate "$ZNODES" "$(pids 3)" || true
  put "$name" ens_populate_rate "$(jget "$WORK/ens-populate-$name.json" .ops_per_sec)"
  f=1; [ "$LEADER" = 1 ] && f=2
  say "$name: wipe follower m$f's dataDir and restart it"
  stop_pid "${PID[$f]}"
  rm -rf "${DIR[$f]}"; mkdir -p "${DIR[$f]}"
  t0=$(now_ms)
  start "$name" 3 "$f"
  local deadline=$((t0 + READY_TIMEOUT * 1000))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    if "$BENCH" wait-read --server "127.0.0.1:${PORT[$f]}" --path "$(last_key)" --timeout 1 >/dev/null 2>&1 && [ "$(mode_of "$f")" = follower ]; then
      ok=1; break
    fi
  done
  t1=$(now_ms)
  if [ -n "$ok" ]; then put "$name" rejoin_ms "$((t1 - t0))"; else problem "$name: wiped follower not serving $(last_key) as follower within $READY_TIMEOUT s"; fi
  unset LEADER
  stop_cluster 3
  rm -rf "$WORK/$name-ens"
}

# clients_phase NAME PHASE [scale-clients args]: one scale-clients phase on a fresh server
# (memory freed by one phase is returned to the OS lazily and would blur the next one's).
clients_phase() {
  local name=$1 phase=$2 rc=0 heap_cmd=() k
  shift 2
  layout 1 "$name-$phase"
  start "$name" 1 1
  if ! "$BENCH" ready --servers "$(hosts 1)" --timeout "$READY_TIMEOUT" >/dev/null; then
    problem "$name $phase: not serving"; stop_cluster 1; return
  fi
  if [ "$phase" = watches ]; then populate "$name" watch-tree "$WATCH_TREE" "${PID[1]}" || true; fi
  if [ "$name" = zookeeper ]; then heap_cmd=(--heap-cmd ". '$repo/bench/lib.sh' && jvm_live_heap_kb ${PID[1]}"); fi
  local base="$WORK/$phase-$name"
  "$BENCH" scale-clients --server "127.0.0.1:${PORT[1]}" --server-pid "${PID[1]}" --sources "$SOURCES" \
    --sessions 0 --watchers-one 0 --watches 0 "$@" --timeout "$STEP_TIMEOUT" "${heap_cmd[@]}" --threads "${CLIENT_THREADS:-1}" \
    --json "$base.json" >"$base.txt" 2>"$base.err" || rc=$?
  if [ "$rc" != 0 ]; then
    problem "$name $phase: warden-bench scale-clients exited $rc: $(grep -hE '^failure|warden-bench' "$base.txt" "$base.err" | tr '\n' ';' | cut -c1-600)"
  fi
  kill -0 "${PID[1]}" 2>/dev/null || problem "$name $phase: the server process exited during the run"
  for k in $(jq -r '.figures | keys[]' "$base.json" 2>/dev/null || true); do
    put "$name" "$k" "$(jget "$base.json" ".figures.$k")"
  done
  stop_cluster 1
  rm -rf "$WORK/$name-$phase"
}

clients() {
  local name=$1
  if [ "$SESSIONS" -gt 0 ]; then
    say "$name: $SESSIONS sessions, churn, close"
    clients_phase "$name" sessions --sessions "$SESSIONS" --churn-secs "$CHURN_SECS" --churn-parallel "$CHURN_PARALLEL"
  fi
  if [ "$WATCHERS_ONE" -gt 0 ]; then
    say "$name: $WATCHERS_ONE watchers on one znode"
    clients_phase "$name" watch-one --watchers-one "$WATCHERS_ONE" --fanout-rounds "$FANOUT_ROUNDS"
  fi
  if [ "$WATCHES" -gt 0 ]; then
    say "$name: $WATCHES watches over $WATCH_TREE znodes"
    clients_phase "$name" watches --watches "$WATCHES" --watch-sessions "$WATCH_SESSIONS" --tree-size "$WATCH_TREE" \
      --parents "$PARENTS" --prefix "$PREFIX"
  fi
}

# Open files: the server holds every session's socket, so does the one client process. Each
# phase is its own client process on a fresh server, so the largest phase sets the need.
if [[ " $PARTS " == *" clients "* ]]; then
  need=$((SESSIONS + 4 * CHURN_PARALLEL))
  if [ "$WATCHERS_ONE" -gt "$need" ]; then need=$WATCHERS_ONE; fi
  if [ "$WATCH_SESSIONS" -gt "$need" ]; then need=$WATCH_SESSIONS; fi
  need=$((need + 2048))
  hard=$(ulimit -Hn)
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then ulimit -Hn "$need" 2>/dev/null || true; fi
  if ! ulimit -Sn "$need" 2>/dev/null; then
    problem "clients part skipped: needs $need open files per process, the hard limit is $(ulimit -Hn) and cannot be raised here (run as root with CAP_SYS_RESOURCE, or raise nofile)"
    PARTS=${PARTS//clients/}
  fi
  # ~3/4 of the ephemeral port range per 127.0.0.x source address.
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
  SOURCES=${SOURCES:-$(((SESSIONS + 4 * CHURN_PARALLEL) / ((hi - lo + 1) * 3 / 4) + 1))}
  if [ "$SOURCES" -gt 250 ]; then SOURCES=250; fi
fi

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for name in $SERVERS; do
  if [[ " $PARTS " == *" trees "* ]]; then trees "$name"; fi
  if { [[ " $PARTS " == *" trees "* ]] && [ "$ENSEMBLE" = 1 ]; } || [[ " $PARTS " == *" ensemble "* ]]; then ensemble "$name"; fi
  if [[ " $PARTS " == *" clients "* ]]; then clients "$name"; fi
done

# --- the table ---
fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { if (v == "") print "–"; else printf "%.*f", d, v }'; }
mib() { awk -v v="$1" 'BEGIN { if (v == "") print "–"; else printf "%.1f", v / 1024 }'; }
row() { # row LABEL KEY DECIMALS [mib]
  local label=$1 key=$2 d=${3:-0} kind=${4:-} w z r
  w=${VAL["warden|$key"]:-}; z=${VAL["zookeeper|$key"]:-}
  r=$(awk -v a="$w" -v b="$z" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "–"; else printf "%.2f", a / b }')
  if [ "$kind" = mib ]; then w=$(mib "$w"); z=$(mib "$z"); else w=$(fmt "$w" "$d"); z=$(fmt "$z" "$d"); fi
  echo "| $label | $w | $z | $r |"
}
machine() {
  echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
}

mkdir -p "$(dirname "$OUT")"
{
  echo "## Scale: Warden vs Apache ZooKeeper 3.8 — $started"
  echo
  echo "Machine: $(machine). Client and servers share it. ZooKeeper -Xmx$ZK_HEAP; both with maxClientCnxns=0, snapCount ${SNAP_COUNT:-default}, forceSync on."
  echo
  echo "Command: \`ZNODES=$ZNODES PARENTS=$PARENTS SESSIONS=$SESSIONS WATCHERS_ONE=$WATCHERS_ONE WATCHES=$WATCHES WATCH_SESSIONS=$WATCH_SESSIONS WATCH_TREE=$WATCH_TREE CHURN_SECS=$CHURN_SECS FANOUT_ROUNDS=$FANOUT_ROUNDS ENSEMBLE=$ENSEMBLE PARTS=\"$PARTS\" SERVERS=\"$SERVERS\" SNAP_COUNT=${SNAP_COUNT:-} ZK_HEAP=$ZK_HEAP bash bench/scale.sh\`"
  echo
  echo "Ratio = warden/zookeeper (higher is better for rates, lower for times and memory). Memory per unit is the"
  echo "growth over the step divided by the units; ZooKeeper's heap figures are after a full GC (jcmd GC.run), and"
  echo "its RSS follows the JVM's heap sizing more than live data (so its RSS deltas can even be negative)."
  echo
  echo "| measure | warden | zookeeper | ratio |"
  echo "|---|---:|---:|---:|"
  if [[ " $PARTS " == *" trees "* ]]; then
    row "A. populate $ZNODES znodes of 100 B under $PARENTS parents, znodes/s" populate_rate
    row "A. populate, znodes per server CPU-second" populate_cpu
    row "A. zk_znode_count after populate" znodes
    row "A. RSS after populate, MiB" rss_populated 0 mib
    row "A. RSS per znode, bytes" rss_per_znode
    row "A. live heap after full GC, MiB (JVM only)" heap_populated 0 mib
    row "A. live heap per znode, bytes (JVM only)" heap_per_znode
    row "A. snapshot of the full tree, ms (Warden: admin snapshot command, its log; ZooKeeper: the one it writes at startup, zk_max_snapshottime)" snapshot_ms
    row "A. snapshot file, MiB" snapshot_kb 0 mib
    row "A. backup streamed by the admin snapshot command, ms (Warden only: 3.8 has no such command)" backup_ms
    row "A. backup size, MiB" backup_kb 0 mib
    row "A. RSS growth while the backup streams, MiB" backup_extra_rss 0 mib
    row "A. restart to the first read of the last znode, ms" restart_ms
    row "A. RSS after restart, MiB" rss_restarted 0 mib
  fi
  if { [[ " $PARTS " == *" trees "* ]] && [ "$ENSEMBLE" = 1 ]; } || [[ " $PARTS " == *" ensemble "* ]]; then
    row "A. 3-member ensemble: populate through the leader, znodes/s" ens_populate_rate
    row "A. 3-member ensemble: wiped follower restart to serving the last znode as follower, ms" rejoin_ms
  fi
  if [[ " $PARTS " == *" clients "* ]]; then
    row "B. sessions open at once (of $SESSIONS; $SOURCES source addresses)" sessions_opened
    row "B. time to open them all, s" sessions_open_secs 2
    row "B. sessions opened per s" sessions_open_per_sec
    row "B. RSS per session, bytes" rss_bytes_per_session
    row "B. live heap per session, bytes (JVM only)" heap_bytes_per_session
    row "B. session churn while they are held (open + close, $CHURN_PARALLEL loops), per s" churn_per_sec
    row "B. time to close them all, s" sessions_close_secs 2
    row "B. RSS before opening them, MiB" rss_kb_base 0 mib
    row "B. RSS with them all open, MiB" rss_kb_sessions 0 mib
    row "B. RSS after closing them all, MiB" rss_kb_sessions_closed 0 mib
    row "B. $WATCHERS_ONE watchers on one znode: RSS per watch, bytes" rss_bytes_per_watch_one
    row "B. $WATCHERS_ONE watchers on one znode: live heap per watch, bytes (JVM only)" heap_bytes_per_watch_one
    row "B. fan-out: setData to the last of $WATCHERS_ONE notifications, ms (median of $FANOUT_ROUNDS)" fanout_ms_median 1
    row "B. fan-out, slowest round, ms" fanout_ms_max 1
    row "B. fan-out: server CPU per round, ms (mean)" fanout_server_cpu_ms 1
    row "B. fan-out: client CPU per round, ms (mean; the same client for both servers)" fanout_client_cpu_ms 1
    row "B. $WATCHES data watches over $WATCH_TREE znodes by $WATCH_SESSIONS sessions: time to set, s" watches_set_secs 2
    row "B. spread watches: RSS per watch, bytes" rss_bytes_per_watch
    row "B. spread watches: live heap per watch, bytes (JVM only)" heap_bytes_per_watch
  fi
  echo
  if [ -s "$WORK/problems" ]; then
    echo "### Problems seen"; echo
    sed 's/^/- /' "$WORK/problems"
  else
    echo "No problems seen."
  fi
} | tee "$OUT"
