#!/usr/bin/env bash
# Warden vs Apache ZooKeeper 3.8 on this machine, with warden-bench as the client:
# throughput, ops per server CPU-second, latency percentiles per workload (medians over
# ROUNDS fresh-server runs, servers alternating), RSS after loading ZNODES znodes, and
# restart-to-serving time on the loaded data dir. Prints a markdown table and writes it
# to bench/results/latest.md. Every server it starts is stopped by pid, also on failure.
#
#   bash bench/compare.sh                                  # full run
#   ROUNDS=1 DURATION=3 ZNODES=200000 bash bench/compare.sh  # quick run
#
# Knobs (env): ROUNDS=3 DURATION=5 ZNODES=1000000 SHAPES="8x32 16x8 1x1" KEYS=10000
# VALUE_SIZE=100 READ_FRACTION=0.9 WATCHERS=1000 STORM_ROUNDS=20 THREADS=1 ZK_HEAP=1000m
# SHAPES: sessions x outstanding requests each, one client thread (THREADS); every workload runs
# in each shape, except watch-storm and session-churn, which run once, in the first. Rows are
# then named "get 16x8". CONNECTIONS=C OUTSTANDING=O (the older knobs) mean SHAPES="CxO".
# WORKLOADS="create set get exists mixed delete multi session-churn watch-storm"
# RESTARTS=1: restarts on the loaded data dir; with more, the table gives their median and each one.
# DELETE_KEYS=200000 (delete: that many nodes created untimed, then each deleted once; a tenth
# of them at 1 x 1 or 2 x 2)
# SERVERS="zookeeper warden" KEEP_WORK=0 OUT=bench/results/latest.md
# WARDEN_BINARY=path: measure that warden build instead of target/release/warden;
# WARDEN_SET="key=value ...": extra --set settings for Warden (e.g. warden.ioThreads=1).
# SERVERS="warden warden-b": an A/B of two Warden setups in the same alternating rounds;
# warden-b runs WARDEN_B_BINARY (default: the same binary) with WARDEN_B_SET (no ensemble step).
# ENSEMBLE=1: afterwards also compare 3-member ensembles (bench/ensemble.sh, which
# writes bench/results/ensemble.md); ENSEMBLE=0 skips that.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
. bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
ZNODES=${ZNODES:-1000000}
shapes_from_env
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-100}
READ_FRACTION=${READ_FRACTION:-0.9}
WATCHERS=${WATCHERS:-1000}
STORM_ROUNDS=${STORM_ROUNDS:-20}
THREADS=${THREADS:-1}
ZK_HEAP=${ZK_HEAP:-1000m}
READY_TIMEOUT=${READY_TIMEOUT:-300}
RESTARTS=${RESTARTS:-1}
WORKLOADS=${WORKLOADS:-"create set get exists mixed delete multi session-churn watch-storm"}
DELETE_KEYS=${DELETE_KEYS:-200000}
SERVERS=${SERVERS:-"zookeeper warden"}
OUT=${OUT:-$repo/bench/results/latest.md}

ensure_zookeeper

echo "== building warden and warden-bench (release) ==" >&2
cargo build --release --quiet -p warden -p warden-bench
# WARDEN_BINARY: another warden build to measure (e.g. the previous commit's, for a before/after).
WARDEN=${WARDEN_BINARY:-$repo/target/release/warden}
BENCH=$repo/target/release/warden-bench

# Both servers' data dirs live under one temp dir, so on the same filesystem.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/warden-compare.XXXXXX")
mkdir -p "$WORK/reports"
PIDS=()
PROBLEMS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    [ -n "$pid" ] || continue
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "${KEEP_WORK:-0}" = 1 ]; then
    echo "work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

write_zk_log4j "$WORK"

# start_server NAME DATADIR PORT: starts in the background, sets SRV_PID.
start_server() {
  local name=$1 dir=$2 port=$3
  mkdir -p "$dir"
  case $name in
    zookeeper)
      cat >"$dir.cfg" <<EOF
tickTime=2000
dataDir=$dir
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
maxClientCnxns=0
EOF
      java -Xmx"$ZK_HEAP" -Dlog4j.configuration="file:$WORK/log4j.properties" \
        -Dzookeeper.extendedTypesEnabled=true -cp "$ZK_CP" \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir.cfg" \
        >>"$WORK/zookeeper.out" 2>&1 </dev/null &
      ;;
    warden | warden-b)
      local extra=() bin=$WARDEN sets=${WARDEN_SET:-}
      if [ "$name" = warden-b ]; then bin=${WARDEN_B_BINARY:-$WARDEN}; sets=${WARDEN_B_SET:-}; fi
      for kv in $sets; do extra+=(--set "$kv"); done
      "$bin" server --set "clientPort=$port" --set clientPortAddress=127.0.0.1 \
        --set "dataDir=$dir" --set '4lw.commands.whitelist=*' --set maxClientCnxns=0 "${extra[@]}" \
        >>"$WORK/warden.out" 2>&1 </dev/null &
      ;;
    *) echo "unknown server $name" >&2; exit 1 ;;
  esac
  SRV_PID=$!
  PIDS+=("$SRV_PID")
}

# wait_ready PORT: prints ms until a session handshake succeeded; non-zero if it never did.
wait_ready() {
  "$BENCH" ready --servers "127.0.0.1:$1" --timeout "$READY_TIMEOUT"
}

stop_server() {
  local pid=$1 p kept=()
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    PROBLEMS+=("pid $pid did not stop within 30 s of SIGTERM; killed")
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  PIDS=("${kept[@]}")
}

# bench NAME PORT PID WORKLOAD TAG SHAPE [extra args]: one warden-bench run, JSON in reports/.
# SHAPE is CxO, or "-" for one that goes unnamed (populate; or the only shape of the run).
bench() {
  local name=$1 port=$2 pid=$3 workload=$4 tag=$5 shape=$6
  shift 6
  local base="$WORK/reports/$workload-$shape-$name-$tag"
  local keys=$KEYS connections=${shape%x*} outstanding=${shape#*x} named=()
  [ "$workload" = delete ] && keys=$DELETE_KEYS # deletes each key once: enough for a measurable run
  if [ "$shape" = - ]; then
    connections=${SHAPES%%x*}
    outstanding=${SHAPES%% *}; outstanding=${outstanding#*x}
  elif [ "$(wc -w <<<"$SHAPES")" -gt 1 ]; then
    named=(--workload-tag "$shape")
  fi
  # One at a time, deleting DELETE_KEYS would take minutes: a tenth of them.
  [ "$workload" = delete ] && [ $((connections * outstanding)) -le 4 ] && keys=$((DELETE_KEYS / 10))
  local args=(--servers "127.0.0.1:$port" --server-pid "$pid" --label "$name" --workload "$workload"
    --json "$base.json" --connections "$connections" --outstanding "$outstanding" "${named[@]}"
    --value-size "$VALUE_SIZE" --keys "$keys" --threads "$THREADS")
  case $workload in
    watch-storm) args+=(--watchers "$WATCHERS" --rounds "$STORM_ROUNDS") ;;
    populate | delete) ;;
    mixed) args+=(--duration "$DURATION" --read-fraction "$READ_FRACTION") ;;
    *) args+=(--duration "$DURATION") ;;
  esac
  local rc=0
  "$BENCH" "${args[@]}" "$@" >"$base.txt" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    local why
    why=$(grep -E 'errors|failures|warden-bench:|error:' "$base.txt" | tr '\n' ' ' | cut -c1-400 || true)
    PROBLEMS+=("$name $workload $tag: warden-bench exited $rc: $why")
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    PROBLEMS+=("$name $workload $tag: server process $pid exited during the run")
  fi
  [ -f "$base.json" ] && REPORT_FILES+=("$base.json")
  echo "  $tag $workload${named:+ $shape} $name: $(grep -E '^throughput' "$base.txt" | sed 's/throughput *//' || echo "no result (exit $rc)")" >&2
}

machine() {
  local model mem
  model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
  echo "$(nproc) CPUs ($model), $mem RAM, $(uname -sr)"
}

REPORT_FILES=()
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)

echo "== workloads: $WORKLOADS; shapes: $SHAPES; $ROUNDS round(s) of ${DURATION}s per server ==" >&2
first_shape=${SHAPES%% *}
for round in $(seq 1 "$ROUNDS"); do
  for shape in $SHAPES; do
    for workload in $WORKLOADS; do
      # These two do not depend on the shape: once per round, in the first.
      case $workload in watch-storm | session-churn) [ "$shape" = "$first_shape" ] || continue ;; esac
      for name in $SERVERS; do
        port=$("$BENCH" free-port)
        dir="$WORK/data-$name-$workload-$shape-r$round"
        start_server "$name" "$dir" "$port"
        if wait_ready "$port" >/dev/null; then
          case $workload in watch-storm | session-churn) bench "$name" "$port" "$SRV_PID" "$workload" "r$round" - ;;
            *) bench "$name" "$port" "$SRV_PID" "$workload" "r$round" "$shape" ;; esac
        else
          PROBLEMS+=("$name $workload $shape r$round: server not serving within $READY_TIMEOUT s")
        fi
        stop_server "$SRV_PID"
        rm -rf "$dir"
      done
    done
  done
done

echo "== memory and restart: $ZNODES znodes of 100 bytes ==" >&2
RESTART_ROWS=()
mib() { awk -v k="$1" 'BEGIN { if (k == "") print "–"; else printf "%.1f", k / 1024 }'; }
znodes_of() { { "$BENCH" four-letter --server "127.0.0.1:$1" mntr 2>/dev/null || true; } | awk '$1 == "zk_znode_count" { print $2 }'; }
for name in $SERVERS; do
  port=$("$BENCH" free-port)
  dir="$WORK/data-$name-load"
  t0=$(date +%s%N)
  start_server "$name" "$dir" "$port"
  if ! wait_ready "$port" >/dev/null; then
    PROBLEMS+=("$name load: server not serving within $READY_TIMEOUT s")
    stop_server "$SRV_PID"
    continue
  fi
  fresh_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  bench "$name" "$port" "$SRV_PID" populate load - --keys "$ZNODES" --value-size 100 --outstanding 64
  rss_loaded=$(grep -o '"rss_kb": [0-9]*' "$WORK/reports/populate---$name-load.json" 2>/dev/null | grep -o '[0-9]*$' || true)
  nodes_before=$(znodes_of "$port")
  stop_server "$SRV_PID"
  restarts=() nodes_after="" rss_after=""
  for _ in $(seq "$RESTARTS"); do
    t0=$(date +%s%N)
    start_server "$name" "$dir" "$port"
    if wait_ready "$port" >/dev/null; then
      t1=$(date +%s%N)
      restarts+=($(( (t1 - t0) / 1000000 )))
      nodes_after=$(znodes_of "$port")
      rss_after=$(awk '/VmRSS/ { print $2 }' "/proc/$SRV_PID/status" 2>/dev/null || true)
    else
      restarts=("not serving within ${READY_TIMEOUT}s")
      nodes_after="–"
      rss_after=""
      PROBLEMS+=("$name: no session handshake within $READY_TIMEOUT s after restart on the loaded data dir")
      stop_server "$SRV_PID"
      break
    fi
    stop_server "$SRV_PID"
  done
  # One restart: its time. Several: their median, then every one in order. RESTARTS=0: none.
  restart_ms=${restarts[0]:-–}
  if [ "${#restarts[@]}" -gt 1 ]; then
    restart_ms="$(printf '%s\n' "${restarts[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }') (${restarts[*]})"
  fi
  RESTART_ROWS+=("| $name | $fresh_ms | $ZNODES | $(mib "$rss_loaded") | ${nodes_before:-–} | $restart_ms | ${nodes_after:-–} | $(mib "$rss_after") |")
  rm -rf "$dir"
done

ratio=()
case " $SERVERS " in *" warden "*) case " $SERVERS " in *" zookeeper "*) ratio=(--ratio warden/zookeeper) ;; *" warden-b "*) ratio=(--ratio warden-b/warden) ;; esac ;; esac

mkdir -p "$(dirname "$OUT")"
{
  echo "## Warden vs Apache ZooKeeper 3.8 — $started"
  echo
  echo "Machine: $(machine). Client and server share it."
  echo
  echo "Command: \`ROUNDS=$ROUNDS DURATION=$DURATION ZNODES=$ZNODES SHAPES=\"$SHAPES\" WORKLOADS=\"$WORKLOADS\" KEYS=$KEYS VALUE_SIZE=$VALUE_SIZE WATCHERS=$WATCHERS STORM_ROUNDS=$STORM_ROUNDS THREADS=$THREADS ZK_HEAP=$ZK_HEAP RESTARTS=$RESTARTS bash bench/compare.sh\`"
  echo
  echo "Medians over $ROUNDS run(s) per workload and server, each on a fresh server and data dir (forceSync on for both;"
  echo "ZooKeeper with -Xmx$ZK_HEAP). Latencies in µs; ratio rows are warden/zookeeper (higher is better for"
  echo "ops/s and ops per CPU-s, lower is better for latency and RSS). watch-storm: one op = one round of $WATCHERS"
  echo "notifications, latency = until the last one arrived. populate: $ZNODES creates of 100 B, RSS measured right after."
  echo "Shapes: sessions x outstanding requests each, one client process with $THREADS runtime thread(s); watch-storm,"
  echo "session-churn and populate run in the first shape only ($first_shape)."
  echo "delete: $DELETE_KEYS znodes created untimed, then each deleted once (the timed part)."
  echo
  if [ "${#REPORT_FILES[@]}" -gt 0 ]; then
    "$BENCH" summarize "${ratio[@]}" "${REPORT_FILES[@]}"
  else
    echo "(no results)"
  fi
  echo
  echo "### Memory and restart ($ZNODES znodes of 100 bytes)"
  echo
  echo "Fresh start: from launching the server on an empty data dir to its first session handshake (the"
  echo "client polls every millisecond). Restart: the same, on the data dir just loaded ($RESTARTS times: the"
  echo "median, then each in order)."
  echo
  echo "| server | fresh start to first session, ms | znodes loaded | RSS after load MiB | zk_znode_count before stop | restart to first session, ms | zk_znode_count after restart | RSS after restart MiB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for row in "${RESTART_ROWS[@]}"; do echo "$row"; done
  echo
  if [ "${#PROBLEMS[@]}" -gt 0 ]; then
    echo "### Problems seen"
    echo
    for p in "${PROBLEMS[@]}"; do echo "- $p"; done
  else
    echo "No problems seen: every run finished with zero unexpected errors."
  fi
} | tee "$OUT"

if [ "${ENSEMBLE:-1}" = 1 ] && [[ " $SERVERS " != *" warden-b "* ]]; then
  echo "== 3-member ensembles: bash bench/ensemble.sh ==" >&2
  ROUNDS=$ROUNDS DURATION=$DURATION CONNECTIONS=$CONNECTIONS OUTSTANDING=$OUTSTANDING KEYS=$KEYS VALUE_SIZE=$VALUE_SIZE \
    env -u OUT SERVERS=$SERVERS bash "$repo/bench/ensemble.sh"
fi
