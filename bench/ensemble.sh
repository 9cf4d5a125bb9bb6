#!/usr/bin/env bash
# 3-member Warden ensemble vs 3-member Apache ZooKeeper 3.8 ensemble on this
# machine (all members, the client and the benchmark share its cores):
#  * throughput and latency per workload, clients spread over all members
#    (writes through followers are forwarded), ops per server CPU-second summed
#    over the members; the same workloads on a single node of each for the
#    ensemble/single ratio;
#  * leader fail-over: SIGKILL of the leader to the first acknowledged create
#    through a survivor, median of FAILOVERS kills (the member is restarted
#    between kills);
#  * catch-up: a follower down while CATCHUP creates commit, then restarted:
#    time until its last zxid equals the leader's.
# Writes a markdown report to bench/results/ensemble.md. Every process it starts
# is stopped by pid, also on failure.
#
# FAILOVER_LOAD=1: each kill happens under a mixed warden-bench load on every
# member (CONNECTIONS x OUTSTANDING, half reads), started 2 s before it.
#
#   bash bench/ensemble.sh                                    # full run
#   ROUNDS=1 DURATION=3 FAILOVERS=5 CATCHUP=20000 bash bench/ensemble.sh
#   SERVERS="warden warden-lin" WORKLOADS="get mixed" FAILOVERS=0 CATCHUP=0 bash bench/ensemble.sh
#     # linearizable reads (read index) against local reads, throughput only
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
. bench/lib.sh

ROUNDS=${ROUNDS:-3}
# SIZES="3 1": each workload on a 3-member ensemble and on a single node (the ensemble/single ratio); SIZES=3 skips the single node.
# WARDEN_BINARY=path: the Warden build to run (default: target/release/warden, built first).
# SERVERS="warden warden-b": an A/B of two builds in the same rounds; warden-b runs WARDEN_B_BINARY.
SIZES=${SIZES:-"3 1"}
DURATION=${DURATION:-5}
# SHAPES: sessions x outstanding requests each (one client thread), as in compare.sh;
# CONNECTIONS=C OUTSTANDING=O alone mean SHAPES="CxO". The fail-over load uses the first.
shapes_from_env
first_shape=${SHAPES%% *}
CONNECTIONS=${first_shape%x*}
OUTSTANDING=${first_shape#*x}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-100}
WORKLOADS=${WORKLOADS-"create set get mixed delete watch-storm"}
# delete: this many znodes created untimed, then each deleted once (a tenth of it at 1 x 1 or 2 x 2).
DELETE_KEYS=${DELETE_KEYS:-100000}
WATCHERS=${WATCHERS:-1000}
STORM_ROUNDS=${STORM_ROUNDS:-20}
SERVERS=${SERVERS:-"zookeeper warden"}
FAILOVERS=${FAILOVERS:-20}
CATCHUP=${CATCHUP:-100000}
TICK=${TICK:-500}
ZK_HEAP=${ZK_HEAP:-512m}
OUT=${OUT:-$repo/bench/results/ensemble.md}

ensure_zookeeper
cargo build --release --quiet -p warden -p warden-bench
WARDEN=${WARDEN_BINARY:-$repo/target/release/warden}
BENCH=$repo/target/release/warden-bench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/warden-ensemble.XXXXXX")
mkdir -p "$WORK/reports"
declare -A PID PORT QPORT EPORT DIR
PROBLEMS=()

cleanup() {
  local k
  for k in "${!PID[@]}"; do stop_pid "${PID[$k]}"; done
  [ "${KEEP_WORK:-0}" = 1 ] && echo "work dir kept: $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

write_zk_log4j "$WORK"

ready() { "$BENCH" ready --servers "$(hosts "$1")" --timeout 120 >/dev/null; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "–"; else if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }

REPORTS=()
echo "== throughput: $WORKLOADS; shapes: $SHAPES; $ROUNDS round(s) of ${DURATION}s ==" >&2
for round in $(seq 1 "$ROUNDS"); do
  for shape in $SHAPES; do
    for workload in $WORKLOADS; do
      # The storm does not depend on the shape: once per round, in the first.
      [ "$workload" = watch-storm ] && [ "$shape" != "$first_shape" ] && continue
      c=${shape%x*} o=${shape#*x} keys=$KEYS extra=()
      case $workload in
        delete) keys=$DELETE_KEYS; [ $((c * o)) -le 4 ] && keys=$((DELETE_KEYS / 10)) ;;
        watch-storm) extra=(--watchers "$WATCHERS" --rounds "$STORM_ROUNDS") ;;
        *) extra=(--duration "$DURATION") ;;
      esac
      tag=()
      if [ "$(wc -w <<<"$SHAPES")" -gt 1 ] && [ "$workload" != watch-storm ]; then tag=(--workload-tag "$shape"); fi
      for name in $SERVERS; do
        for n in $SIZES; do
          layout "$n" "$name-$workload-$shape-$n-r$round"
          for i in $(seq 1 "$n"); do start_member "$name" "$n" "$i"; done
          if ready "$n"; then
            base="$WORK/reports/$workload-$shape-$name-$n-r$round"
            "$BENCH" --servers "$(hosts "$n")" --server-pid "$(pids "$n")" --label "$name-$n" --workload "$workload" \
              --connections "$c" --outstanding "$o" --keys "$keys" "${tag[@]}" "${extra[@]}" \
              --value-size "$VALUE_SIZE" --json "$base.json" >"$base.txt" 2>&1 || PROBLEMS+=("$name-$n $workload $shape r$round: bench exited $?")
            [ -f "$base.json" ] && REPORTS+=("$base.json")
            echo "  r$round $workload ${tag[1]:-} $name-$n: $(grep -E '^throughput' "$base.txt" | sed 's/throughput *//')" >&2
          else
            PROBLEMS+=("$name-$n $workload $shape r$round: not serving")
          fi
          stop_cluster "$n"
        done
      done
    done
  done
done

declare -A FAILOVER_MS CATCHUP_MS CATCHUP_ZXID
for name in $SERVERS; do
  [ "$FAILOVERS" = 0 ] && [ "$CATCHUP" = 0 ] && break # throughput only
  echo "== $name: $FAILOVERS leader fail-overs (tickTime $TICK) ==" >&2
  layout 3 "$name-failover"
  for i in 1 2 3; do start_member "$name" 3 "$i"; done
  times=()
  for k in $(seq 1 "$FAILOVERS"); do
    ready 3 || { PROBLEMS+=("$name fail-over $k: ensemble not serving"); break; }
    leader=$(find_leader 3)
    [ -n "$leader" ] || { PROBLEMS+=("$name fail-over $k: no leader found"); break; }
    survivors=(); for i in 1 2 3; do [ "$i" != "$leader" ] && survivors+=("127.0.0.1:${PORT[$i]}"); done
    load_pid=""
    if [ "${FAILOVER_LOAD:-0}" = 1 ]; then
      "$BENCH" --servers "127.0.0.1:${PORT[1]},127.0.0.1:${PORT[2]},127.0.0.1:${PORT[3]}" --workload mixed \
        --read-fraction 0.5 --connections "$CONNECTIONS" --outstanding "$OUTSTANDING" --keys "$KEYS" \
        --value-size "$VALUE_SIZE" --duration 600 >/dev/null 2>&1 </dev/null &
      load_pid=$!; PID[load]=$load_pid
      sleep 2
    fi
    if ms=$("$BENCH" failover --servers "$(IFS=,; echo "${survivors[*]}")" --kill-pid "${PID[$leader]}" --timeout 60); then
      times+=("$ms"); echo "  kill $k (leader m$leader): $ms ms" >&2
    else
      PROBLEMS+=("$name fail-over $k: no write within 60 s")
    fi
    if [ -n "$load_pid" ]; then stop_pid "$load_pid"; unset 'PID[load]'; fi
    wait "${PID[$leader]}" 2>/dev/null || true
    start_member "$name" 3 "$leader"
  done
  FAILOVER_MS[$name]=$(printf '%s\n' "${times[@]}" | median)
  stop_cluster 3

  echo "== $name: a follower $CATCHUP transactions behind ==" >&2
  layout 3 "$name-catchup"
  for i in 1 2 3; do start_member "$name" 3 "$i"; done
  ready 3 || PROBLEMS+=("$name catch-up: not serving")
  leader=$(find_leader 3)
  if [ -z "$leader" ]; then PROBLEMS+=("$name catch-up: no leader"); stop_cluster 3; continue; fi
  follower=1; [ "$leader" = 1 ] && follower=2
  stop_pid "${PID[$follower]}"
  "$BENCH" --servers "127.0.0.1:${PORT[$leader]}" --workload populate --keys "$CATCHUP" --value-size "$VALUE_SIZE" \
    --outstanding 64 --label "$name" >"$WORK/reports/catchup-$name.txt" 2>&1 || PROBLEMS+=("$name catch-up: populate failed")
  target=$(zxid_of "$leader")
  t0=$(date +%s%N)
  start_member "$name" 3 "$follower"
  got=""
  for _ in $(seq 6000); do got=$(zxid_of "$follower"); [ "$got" = "$target" ] && break; sleep 0.02; done
  t1=$(date +%s%N)
  if [ "$got" = "$target" ]; then CATCHUP_MS[$name]=$(( (t1 - t0) / 1000000 )); else CATCHUP_MS[$name]="not caught up in 120 s"; PROBLEMS+=("$name catch-up: follower at $got, leader $target"); fi
  CATCHUP_ZXID[$name]=$target
  stop_cluster 3
done

mkdir -p "$(dirname "$OUT")"
{
  echo "## 3-member ensembles: Warden vs Apache ZooKeeper 3.8 — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "Machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); every member, the client and"
  echo "the benchmark share it. tickTime=$TICK for both; forceSync on; ZooKeeper -Xmx$ZK_HEAP per member."
  echo
  echo "Command: \`ROUNDS=$ROUNDS SIZES=\"$SIZES\" DURATION=$DURATION FAILOVERS=$FAILOVERS CATCHUP=$CATCHUP SHAPES=\"$SHAPES\" WORKLOADS=\"$WORKLOADS\" DELETE_KEYS=$DELETE_KEYS WATCHERS=$WATCHERS STORM_ROUNDS=$STORM_ROUNDS bash bench/ensemble.sh\`"
  echo
  echo "### Throughput and latency (medians over $ROUNDS rounds; clients on all members)"
  echo
  echo "Labels: name-3 = 3-member ensemble, name-1 = single node. ops per server CPU-s sums the members' CPU."
  echo "Workloads named with a shape (get 16x8) ran with that many sessions x outstanding requests, spread over"
  echo "the members (one session: on member 1). watch-storm: $WATCHERS watchers, one op = one round of notifications."
  echo
  if [ "${#REPORTS[@]}" -gt 0 ]; then
    "$BENCH" summarize --ratio warden-3/zookeeper-3 "${REPORTS[@]}"
    if [[ " $SIZES " == *" 1 "* ]]; then
      echo
      echo "Ensemble vs single node (ratio rows warden-3/warden-1):"
      echo
      "$BENCH" summarize --ratio warden-3/warden-1 $(printf '%s\n' "${REPORTS[@]}" | grep -- '-warden-')
    fi
    if [[ " $SERVERS " == *" warden-b "* ]]; then
      echo
      echo "A/B: warden ($WARDEN) vs warden-b (${WARDEN_B_BINARY:-$WARDEN}) (ratio rows warden-3/warden-b-3):"
      echo
      "$BENCH" summarize --ratio warden-3/warden-b-3 $(printf '%s\n' "${REPORTS[@]}" | grep -E -- '-warden(-b)?-3-')
    fi
    if [[ " $SERVERS " == *" warden-lin "* ]]; then
      echo
      echo "Linearizable reads (warden-lin: warden.linearizableReads=true, a read index) vs local reads (ratio rows warden-lin-3/warden-3):"
      echo
      "$BENCH" summarize --ratio warden-lin-3/warden-3 $(printf '%s\n' "${REPORTS[@]}" | grep -E -- '-warden(-lin)?-3-')
    fi
  fi
  echo
  echo "### Leader fail-over and follower catch-up"
  echo
  load=""; [ "${FAILOVER_LOAD:-0}" = 1 ] && load=" under a mixed load of $CONNECTIONS x $OUTSTANDING on every member"
  echo "| server | fail-over: SIGKILL of leader to first acked write$load, median of $FAILOVERS (ms) | catch-up of a follower $CATCHUP txns behind, restart to leader's zxid (ms) |"
  echo "|---|---:|---:|"
  for name in $SERVERS; do echo "| $name | ${FAILOVER_MS[$name]:-–} | ${CATCHUP_MS[$name]:-–} |"; done
  echo
  if [ "${#PROBLEMS[@]}" -gt 0 ]; then echo "### Problems seen"; echo; for p in "${PROBLEMS[@]}"; do echo "- $p"; done; else echo "No problems seen."; fi
} | tee "$OUT"
