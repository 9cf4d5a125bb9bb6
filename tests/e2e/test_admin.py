"""The admin HTTP endpoint: ZooKeeper AdminServer-style /commands (both
targets), and Warden's own /metrics, /actors, live supervision and log level."""

import json
import os
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ENSEMBLE, single_node_only, TARGET, free_port, start_server
from rawzk import four_letter

# Admin ports, process flags and the binary itself are per node.
pytestmark = single_node_only

WARDEN_ONLY = pytest.mark.skipif(TARGET != "warden", reason="Warden's own admin API; ZooKeeper has no equivalent")
ADMIN_PORT = free_port()
SERVER_SETTINGS = {
    "admin.enableServer": "true",
    "admin.serverAddress": "127.0.0.1",
    "admin.serverPort": str(ADMIN_PORT),
    "warden.adminFaultInjection": "true",
}


def http(method, port, path, body=None, token=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method, data=body)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def get_json(path, port=ADMIN_PORT):
    status, body = http("GET", port, path)
    assert status == 200, body
    return json.loads(body)


def wait_admin(port, deadline=15):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if http("GET", port, "/commands/ruok")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("admin endpoint did not come up on port %d" % port)


@pytest.fixture(autouse=True)
def admin_up(server):
    wait_admin(ADMIN_PORT)


def test_ruok_and_monitor_commands(zk):
    ruok = get_json("/commands/ruok")
    assert ruok["command"] == "ruok" and ruok["error"] is None
    zk.ensure_path("/admin-test")
    monitor = get_json("/commands/monitor")
    assert monitor["command"] == "monitor"
    assert monitor["server_state"] == "standalone"
    mntr = dict(l.split("\t", 1) for l in four_letter(zk.hosts[0][0] + ":%d" % zk.hosts[0][1], "mntr").decode().splitlines() if "\t" in l)
    assert int(monitor["znode_count"]) == int(mntr["zk_znode_count"])


def test_stats_and_short_names():
    assert get_json("/commands/stats")["command"] == "stats"
    assert get_json("/commands/srvr")["command"] == "server_stats"
    assert get_json("/commands/is_read_only")["read_only"] is False


@WARDEN_ONLY
def test_metrics_are_prometheus_text(zk):
    zk.create("/metrics-probe", b"x")
    zk.get("/metrics-probe")
    status, text = http("GET", ADMIN_PORT, "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    znodes = families["warden_znode_count"].samples[0].value
    assert znodes >= 6
    latency = families["warden_request_latency_seconds"]
    ops = {s.labels["op"] for s in latency.samples if "op" in s.labels}
    assert {"create", "getData"} <= ops
    counts = {s.labels["op"]: s.value for s in latency.samples if s.name.endswith("_count")}
    assert counts["create"] >= 1
    fsync = [s for s in families["warden_fsync_latency_seconds"].samples if s.name.endswith("_count")]
    assert fsync[0].value >= 1
    assert families["warden_proposals"].samples[0].value >= 1  # the parser drops "_total"
    depths = {s.labels["kind"] for s in families["warden_actor_mailbox_depth"].samples}
    assert {"processor", "dispatcher", "tracker", "snapshotter", "session"} <= depths


@WARDEN_ONLY
def test_actors_show_mailboxes_and_policies(zk):
    before = {(a["kind"], a["instance"]): a for a in get_json("/actors")["actors"]}
    for i in range(20):
        # sync, not a plain read: those are answered on the I/O threads.
        zk.sync("/nothing-%d" % i)
    after = {(a["kind"], a["instance"]): a for a in get_json("/actors")["actors"]}
    proc = after[("processor", "0")]
    assert proc["messages_handled"] >= before[("processor", "0")]["messages_handled"] + 20
    assert proc["mailbox_capacity"] > 0 and proc["supervision"]["max_restarts"] >= 0
    assert proc["handling_p99_us"] >= proc["handling_p50_us"] > 0
    assert any(k == "session" for k, _ in after)


@WARDEN_ONLY
def test_event_loop_threads_are_named_for_ps_and_perf(server):
    names = set()
    for task in os.listdir("/proc/%d/task" % server.proc.pid):
        with open("/proc/%d/task/%s/comm" % (server.proc.pid, task)) as f:
            names.add(f.read().strip())
    assert {"w-processor", "w-dispatcher", "w-io-0", "txn-log"} <= names, sorted(names)
    # Zab runs only on an ensemble member, by default on a thread of its own.
    assert ("w-quorum" in names) == (ENSEMBLE > 1), sorted(names)


def local_reads():
    status, text = http("GET", ADMIN_PORT, "/metrics")
    assert status == 200, text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return families["warden_local_reads"].samples[0].value


@WARDEN_ONLY
def test_plain_reads_are_answered_off_the_processor(zk):
    zk.ensure_path("/local-reads/child")
    before = local_reads()
    for _ in range(50):
        assert zk.get("/local-reads")[0] == b""
        assert zk.exists("/local-reads/missing") is None
        assert zk.get_children("/local-reads") == ["child"]
    served = local_reads() - before
    # A read right behind a ping still in flight waits for it at the processor.
    assert 100 <= served <= 150, served
    # A watch is set by the processor and the dispatcher; a write is the processor's.
    zk.get("/local-reads", watch=lambda event: None)
    zk.get_children("/local-reads", watch=lambda event: None)
    zk.set("/local-reads", b"x")
    assert local_reads() - before == served


@WARDEN_ONLY
def test_supervision_change_takes_effect_on_a_live_actor(zk, server):
    status, body = http("PUT", ADMIN_PORT, "/actors/dispatcher/supervision", json.dumps({"max_restarts": 5, "backoff_ms": 50}).encode())
    assert status == 200, body
    reply = json.loads(body)
    assert reply["supervision"]["max_restarts"] == 5 and reply["supervision"]["backoff_ms"] == 50
    restarts = lambda: [a for a in get_json("/actors")["actors"] if a["kind"] == "dispatcher"][0]["restarts"]
    before = restarts()
    status, _ = http("POST", ADMIN_PORT, "/actors/dispatcher/fault")
    assert status == 202
    end = time.monotonic() + 10
    while restarts() == before and time.monotonic() < end:
        time.sleep(0.05)
    assert restarts() == before + 1
    # The restarted dispatcher still delivers replies and watch events.
    events = []
    zk.ensure_path("/supervised")
    zk.get("/supervised", watch=events.append)
    zk.set("/supervised", b"changed")
    end = time.monotonic() + 5
    while not events and time.monotonic() < end:
        time.sleep(0.05)
    assert events and events[0].type == "CHANGED"
    assert server.alive()


@WARDEN_ONLY
def test_bad_supervision_requests_are_rejected():
    status, body = http("PUT", ADMIN_PORT, "/actors/dispatcher/supervision", json.dumps({"mailbox_capacity": 0}).encode())
    assert status == 400 and "mailbox_capacity" in body
    status, body = http("PUT", ADMIN_PORT, "/actors/dispatcher/supervision", json.dumps({"bogus": 1}).encode())
    assert status == 400, body
    status, _ = http("PUT", ADMIN_PORT, "/actors/nosuchkind/supervision", b"{}")
    assert status == 404


@WARDEN_ONLY
def test_log_level_changes_at_runtime():
    status, body = http("PUT", ADMIN_PORT, "/log/level", b"debug")
    assert status == 200 and json.loads(body)["level"] == "debug"
    assert get_json("/log/level")["level"] == "debug"
    status, _ = http("PUT", ADMIN_PORT, "/log/level", b"loud")
    assert status == 400
    http("PUT", ADMIN_PORT, "/log/level", b"info")


@WARDEN_ONLY
def test_restart_budget_exhausted_stops_the_node():
    port = free_port()
    srv = start_server({"admin.serverPort": str(port), "warden.adminFaultInjection": "true"})
    try:
        wait_admin(port)
        status, _ = http("PUT", port, "/actors/tracker/supervision", json.dumps({"max_restarts": 1, "window_ms": 60000}).encode())
        assert status == 200
        assert http("POST", port, "/actors/tracker/fault")[0] == 202
        time.sleep(0.3)
        assert srv.alive(), "one restart is within the budget"
        assert http("POST", port, "/actors/tracker/fault")[0] == 202
        srv.proc.wait(timeout=10)
        assert srv.proc.returncode == 70
        assert "beyond its supervision policy" in srv.log_tail()
    finally:
        srv.stop()


@WARDEN_ONLY
def test_token_guards_the_endpoint():
    port = free_port()
    srv = start_server({"admin.serverPort": str(port), "warden.adminToken": "s3cret"})
    try:
        end = time.monotonic() + 15
        while time.monotonic() < end:
            try:
                status, _ = http("GET", port, "/actors")
                break
            except OSError:
                time.sleep(0.1)
        assert status == 401
        assert http("GET", port, "/actors", token="wrong")[0] == 401
        status, body = http("GET", port, "/actors", token="s3cret")
        assert status == 200 and "actors" in json.loads(body)
    finally:
        srv.stop()


@WARDEN_ONLY
def test_warden_admin_prints_tables(zk):
    import subprocess

    binary = os.environ.get("WARDEN_BIN")
    addr = "127.0.0.1:%d" % ADMIN_PORT
    out = subprocess.run([binary, "admin", "--address", addr, "actors"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["KIND", "INSTANCE", "MAILBOX"]
    assert any(l.startswith("processor") for l in lines[1:])
    out = subprocess.run([binary, "admin", "--address", addr, "supervise", "processor", "backoff_ms=7"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    now = [l for l in out.stdout.splitlines() if l.startswith("now")][0].split()
    assert now[3] == "7"
    out = subprocess.run([binary, "admin", "--address", addr, "mntr"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "znode_count" in out.stdout
    bad = subprocess.run([binary, "admin", "--address", addr, "supervise", "processor", "mailbox_capacity=0"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "mailbox_capacity" in bad.stderr


@WARDEN_ONLY
def test_snapshot_command_writes_a_verifiable_snapshot(zk, server):
    import subprocess

    zk.ensure_path("/snap-probe")
    # streaming=false: a snapshot in the data dir (without it, the snapshot itself is the answer).
    reply = get_json("/commands/snapshot?streaming=false")
    name = reply["snapshot_file_name"]
    path = os.path.join(server.data_dir, "version-2", name)
    end = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.05)
    out = subprocess.run([os.environ["WARDEN_BIN"], "snapshot", "verify", path], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid snapshot of zxid 0x%x" % reply["last_zxid"] in out.stdout
