#!/usr/bin/env bash
# Where one write's time goes across a 3-member Warden ensemble: one session, one setData
# at a time, on the leader or on a follower (ROLE), while `perf trace` records the send,
# receive and fdatasync syscalls of every member and of the client. Each request's
# syscalls are cut into stages between landmarks (forward, proposal, a follower's fsync,
# its ACK, COMMIT, reply) and the median of each stage is printed.
#
#   bash bench/timeline.sh [follower|leader]
#
# Needs perf (Debian's linux-perf) and python3. Tracing costs each traced syscall a few µs,
# so stages read long; compare stages with each other and runs with runs, not with
# untraced latency. Members run on free loopback ports with temp data dirs and are
# stopped by pid. WARDEN_BINARY=path measures another build; DURATION=6 seconds of load.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
. bench/lib.sh
ROLE=${1:-follower}
one_ensemble_setup timeline
start_three_for "$ROLE"
"$BENCH" --servers "127.0.0.1:${PORT[$T]}" --connections 1 --outstanding 1 --workload set \
  --duration "$DURATION" --keys 100 >"$WORK/bench.txt" 2>&1 &
load=$!
sleep 2
perf trace -o "$WORK/trace.txt" -e sendto,recvfrom,writev,fdatasync -p "$(pids 3),$load" -- sleep $((DURATION - 4)) >/dev/null 2>&1
for i in 1 2 3; do for t in /proc/${PID[$i]}/task/*; do echo "$(basename "$t") m$i"; done; done >"$WORK/threads.txt"
for t in /proc/$load/task/*; do echo "$(basename "$t") client"; done >>"$WORK/threads.txt"
wait "$load"
echo "3 members, session on member $T ($ROLE), leader m$L; under tracing: $(grep -E '^(throughput|latency)' "$WORK/bench.txt" | tr -s ' ' | tr '\n' ';')"
python3 - "$WORK" "m$L" <<'PY'
import re, statistics, sys
work, leader = sys.argv[1], sys.argv[2]
member = dict(l.split() for l in open(f"{work}/threads.txt"))
line = re.compile(r"^\s*([\d.]+) \(\s*([\d.]*)\s*(?:ms)?\): \S+/(\d+) (\w+)\(")
ev = []
for l in open(f"{work}/trace.txt"):
    m = line.match(l)
    if m and float(m.group(1)) < 1e9:  # perf prints a few events with wrapped times
        ev.append((float(m.group(1)) * 1000, float(m.group(2) or 0) * 1000, member.get(m.group(3), "?"), m.group(4)))
ev.sort()
windows, cur = [], None
for e in ev:
    if e[2] == "client" and e[3] == "sendto":
        cur = [e]
    elif cur is not None:
        cur.append(e)
        if e[2] == "client" and e[3] == "recvfrom":
            windows.append(cur)
            cur = None
def find(w, i, ok):
    return next((j for j in range(i, len(w)) if ok(w[j])), None)
peer = lambda e: e[2] not in (leader, "client")
stages, names, fsyncs = {}, None, {True: [], False: []}
for w in windows:
    T = next((e[2] for e in w if e[3] == "sendto" and e[2] != "client"), None)
    marks = [("the client sends setData", 0)]
    i = 0
    if T != leader:
        i = find(w, 1, lambda e: e[2] == T and e[3] == "writev"); marks.append(("the follower forwards it", i))
        if i is None: continue
    i = find(w, i + 1, lambda e: e[2] == leader and e[3] == "recvfrom"); marks.append(("the leader reads it", i))
    if i is None: continue
    i = find(w, i + 1, lambda e: e[2] == leader and e[3] == "writev"); marks.append(("the leader sends the proposal", i))
    if i is None: continue
    i = find(w, i + 1, lambda e: peer(e) and e[3] == "fdatasync"); marks.append(("a follower starts its fdatasync", i))
    if i is None: continue
    i = find(w, i + 1, lambda e: peer(e) and e[3] == "writev"); marks.append(("a follower sends its ACK", i))
    if i is None: continue
    i = find(w, i + 1, lambda e: e[2] == leader and e[3] == "writev"); marks.append(("the leader sends COMMIT", i))
    if i is None: continue
    i = find(w, i + 1, lambda e: e[2] == T and e[3] == "sendto"); marks.append(("the session's member writes the reply", i))
    if i is None: continue
    marks.append(("the client reads it", len(w) - 1))
    names = [n for n, _ in marks]
    for k in range(1, len(marks)):
        stages.setdefault(k, []).append(w[marks[k][1]][0] - w[marks[k - 1][1]][0])
    for e in w:
        if e[3] == "fdatasync" and e[1] > 0:
            fsyncs[e[2] == leader].append(e[1])
if not names:
    sys.exit("no request matched the expected shape")
print(f"{len(stages[1])} of {len(windows)} requests matched; median µs per stage:")
print("| stage | µs |\n|---|---:|")
for k in range(1, len(names)):
    print(f"| {names[k-1]} → {names[k]} | {statistics.median(stages[k]):.0f} |")
print(f"| whole request (median) | {statistics.median(w[-1][0] - w[0][0] for w in windows):.0f} |")
for lead, v in fsyncs.items():
    if v:
        print(f"| fdatasync itself, {'leader' if lead else 'followers'} | {statistics.median(v):.0f} |")
PY
