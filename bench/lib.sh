# Shared by bench/compare.sh, bench/ensemble.sh and bench/scale.sh.

ZK_CP=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar

# Installs Apache ZooKeeper 3.8 (Debian's zookeeper package) if it is missing.
ensure_zookeeper() {
  if [ ! -f /usr/share/java/zookeeper.jar ]; then
    echo "== installing Apache ZooKeeper (Debian package zookeeper) ==" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq zookeeper >/dev/null
  fi
}

# shapes_from_env: SHAPES, the sessions x outstanding requests to run ("8x32 16x8 1x1" by default),
# or CONNECTIONSxOUTSTANDING when only those (older) knobs are set; exits on a malformed shape.
shapes_from_env() {
  if [ -z "${SHAPES:-}" ] && { [ -n "${CONNECTIONS:-}" ] || [ -n "${OUTSTANDING:-}" ]; }; then
    SHAPES="${CONNECTIONS:-8}x${OUTSTANDING:-32}"
  fi
  SHAPES=${SHAPES:-"8x32 16x8 1x1"}
  local shape
  for shape in $SHAPES; do
    [[ $shape =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || { echo "SHAPES: '$shape' is not CONNECTIONSxOUTSTANDING" >&2; exit 2; }
  done
}

# write_zk_log4j DIR: ZooKeeper logs errors only, to DIR/zookeeper-log4j.log.
write_zk_log4j() {
  cat >"$1/log4j.properties" <<LOG4J
log4j.rootLogger=ERROR, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=$1/zookeeper-log4j.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] - %m%n
LOG4J
}

# jvm_live_heap_kb PID: a full GC (jcmd GC.run), then the heap in use in KiB
# (jcmd GC.heap_info); non-zero if jcmd is missing or the JVM does not answer.
jvm_live_heap_kb() {
  command -v jcmd >/dev/null || { echo "jcmd not installed (Debian: openjdk-17-jdk-headless)" >&2; return 1; }
  jcmd "$1" GC.run >/dev/null 2>&1 || return 1
  jcmd "$1" GC.heap_info 2>/dev/null | awk '/ heap .*used [0-9]+K/ { for (i = 1; i <= NF; i++) if ($i == "used") { sub(/K,?$/, "", $(i+1)); print $(i+1); exit } }'
}

# --- Members of a cluster (N=1: standalone), used by bench/ensemble.sh and bench/scale.sh ---
# The caller declares `declare -A PID PORT QPORT EPORT DIR` and sets BENCH, WARDEN, WORK,
# TICK and ZK_HEAP. Optional: MEMBER_WARDEN_SET="key=value ..." (extra --set, later wins) and
# MEMBER_ZK_CFG="key=value ..." (extra zoo.cfg lines) for the members it then starts.

stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# layout N TAG: ports and dirs for members 1..N of a fresh cluster TAG. Nothing binds a free
# port until its member starts, so free-port can hand out the same one twice: retry on repeats.
layout() {
  local n=$1 tag=$2 i taken=" "
  # Runs in a subshell ($(...)): the caller records what it got in `taken`.
  next_port() {
    local p
    while :; do p=$("$BENCH" free-port); [[ $taken == *" $p "* ]] || break; done
    echo "$p"
  }
  for i in $(seq 1 "$n"); do
    PORT[$i]=$(next_port); taken+="${PORT[$i]} "
    QPORT[$i]=$(next_port); taken+="${QPORT[$i]} "
    EPORT[$i]=$(next_port); taken+="${EPORT[$i]} "
    DIR[$i]="$WORK/$tag/m$i"; mkdir -p "${DIR[$i]}"
  done
}

# start_member NAME N I: start member I of an N-member cluster (N=1: standalone).
start_member() {
  local name=$1 n=$2 i=$3 j lines=()
  if [ "$n" -gt 1 ]; then
    for j in $(seq 1 "$n"); do lines+=("server.$j=127.0.0.1:${QPORT[$j]}:${EPORT[$j]}"); done
  fi
  case $name in
    zookeeper)
      {
        echo "tickTime=$TICK"; echo "initLimit=10"; echo "syncLimit=5"
        echo "dataDir=${DIR[$i]}"; echo "clientPort=${PORT[$i]}"; echo "clientPortAddress=127.0.0.1"
        echo "admin.enableServer=false"; echo "4lw.commands.whitelist=*"; echo "maxClientCnxns=0"
        for j in ${MEMBER_ZK_CFG:-}; do echo "$j"; done
        for j in "${lines[@]}"; do echo "$j"; done
      } >"${DIR[$i]}.cfg"
      [ "$n" -gt 1 ] && echo "$i" >"${DIR[$i]}/myid"
      java -Xmx"$ZK_HEAP" -Dlog4j.configuration="file:$WORK/log4j.properties" -cp "$ZK_CP" \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "${DIR[$i]}.cfg" >>"$WORK/zookeeper.out" 2>&1 </dev/null &
      ;;
    warden | warden-lin | warden-b)
      local bin=$WARDEN
      # warden-b: another build (WARDEN_B_BINARY) in the same rounds, for an A/B.
      [ "$name" = warden-b ] && bin=${WARDEN_B_BINARY:-$WARDEN}
      local sets=(--set "clientPort=${PORT[$i]}" --set clientPortAddress=127.0.0.1 --set "dataDir=${DIR[$i]}"
        --set "tickTime=$TICK" --set '4lw.commands.whitelist=*' --set maxClientCnxns=0 --set admin.enableServer=false)
      for j in "${lines[@]}"; do sets+=(--set "$j"); done
      [ "$n" -gt 1 ] && sets+=(--set "warden.myid=$i")
      # warden-lin: the same build with linearizable reads (read index), for the lin/local ratio.
      [ "$name" = warden-lin ] && sets+=(--set warden.linearizableReads=true)
      for j in ${MEMBER_WARDEN_SET:-}; do sets+=(--set "$j"); done
      "$bin" server "${sets[@]}" >>"$WORK/warden-m$i.out" 2>&1 </dev/null &
      ;;
  esac
  PID[$i]=$!
}

hosts() { local n=$1 i out=(); for i in $(seq 1 "$n"); do out+=("127.0.0.1:${PORT[$i]}"); done; (IFS=,; echo "${out[*]}"); }
pids() { local n=$1 i out=(); for i in $(seq 1 "$n"); do out+=("${PID[$i]}"); done; (IFS=,; echo "${out[*]}"); }
mode_of() { { "$BENCH" four-letter --server "127.0.0.1:${PORT[$1]}" srvr 2>/dev/null || true; } | awk -F': ' '/^Mode/ {print $2}'; }
zxid_of() { { "$BENCH" four-letter --server "127.0.0.1:${PORT[$1]}" srvr 2>/dev/null || true; } | awk -F': ' '/^Zxid/ {print $2}'; }
leader_of() { local n=$1 i; for i in $(seq 1 "$n"); do [ "$(mode_of "$i")" = leader ] && { echo "$i"; return; }; done; echo ""; }
# find_leader N: the leader's member number, waiting up to 10 s for one.
find_leader() { local l=""; for _ in $(seq 200); do l=$(leader_of "$1"); [ -n "$l" ] && break; sleep 0.05; done; echo "$l"; }
stop_cluster() { local n=$1 i; for i in $(seq 1 "$n"); do stop_pid "${PID[$i]}"; unset "PID[$i]"; done; }

# For the scripts that run one 3-member Warden ensemble: the binaries (WARDEN_BINARY measures
# another build), DURATION (default 6 s), a temp WORK dir named after the script, and a trap that
# stops the members by pid and removes it.
one_ensemble_setup() {
  BENCH=$repo/target/release/warden-bench
  WARDEN=${WARDEN_BINARY:-$repo/target/release/warden}
  DURATION=${DURATION:-6}
  TICK=2000
  [ -x "$BENCH" ] && [ -x "$WARDEN" ] || cargo build --release --quiet -p warden -p warden-bench
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/warden-$1.XXXXXX")
  trap 'stop_cluster 3; rm -rf "$WORK"' EXIT
}

# A 3-member Warden ensemble on free ports (WORK, WARDEN, BENCH and TICK set), serving; sets L to
# the leader and T to the member a one-session load goes to: the leader for ROLE=leader, else the
# follower after it.
start_three_for() {
  layout 3 ens
  for i in 1 2 3; do start_member warden 3 "$i"; done
  "$BENCH" ready --servers "$(hosts 3)" --timeout 60 >/dev/null
  L=$(find_leader 3)
  if [ "$1" = leader ]; then T=$L; else T=$((L % 3 + 1)); fi
}
