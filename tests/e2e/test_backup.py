"""Backup and restore through the admin endpoint, as ZooKeeper 3.9's
AdminServer (`GET /commands/snapshot`, `POST /commands/restore`; Debian's
3.8 has neither, so the commands are tested on Warden): the backup is a
snapshot in ZooKeeper's format that ZooKeeper 3.8 itself loads field for
field; a restore brings the tree back exactly, survives a restart, and
accepts a snapshot ZooKeeper 3.8 wrote."""

import json
import os
import signal
import urllib.error
import urllib.request

import pytest
from kazoo.security import make_digest_acl

import conftest
from conftest import TARGET, free_port, single_node_only
from test_zookeeper_data import SETTINGS, ZK_JAR, Node, assert_same_tree, client, walk

pytestmark = [
    pytest.mark.skipif(TARGET != "warden", reason="the snapshot/restore commands are ZooKeeper 3.9's; Debian's 3.8 has no such commands"),
    single_node_only,
]
NEEDS_ZK = pytest.mark.skipif(not os.path.exists(ZK_JAR), reason="needs Apache ZooKeeper 3.8 (Debian's zookeeper package)")


def admin_server(tmp_path, name, **settings):
    admin = free_port()
    s = dict(SETTINGS, **{"admin.enableServer": "true", "admin.serverPort": str(admin), "zookeeper.admin.rateLimiterIntervalInMS": "0"})
    s.update(settings)
    data = tmp_path / name
    data.mkdir()
    node = Node("warden", str(data), free_port(), s)
    node.admin = "http://127.0.0.1:%d" % admin
    return node.start()


def http(url, body=None):
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def build(zk, base="/bk"):
    zk.create(base, b"root")
    for i in range(200):
        zk.create("%s/n%03d" % (base, i), b"v%d" % i)
    zk.set(base + "/n007", b"changed")
    zk.set_acls(base + "/n008", [make_digest_acl("super", "test", all=True)])
    zk.create(base + "/seq-", b"s", sequence=True)
    zk.delete(base + "/n009")


def test_a_backup_loads_in_zookeeper_and_restores_into_warden(tmp_path):
    w = admin_server(tmp_path, "w")
    try:
        zk = client(w.hostport)
        build(zk)
        before = walk(zk)
        status, headers, body = http(w.admin + "/commands/snapshot?streaming=true")
        assert status == 200 and body[:4] == b"ZKSN"
        assert int(headers["snapshot_size"]) == len(body)
        zxid = int(headers["last_zxid"], 16)
        assert zxid > 0
        # Changes after the backup, undone by the restore.
        zk.create("/after", b"x")
        zk.delete("/bk/n000")
        zk.set("/bk", b"moved on")
        zk.stop()
        status, _, reply = http(w.admin + "/commands/restore", body)
        assert status == 200, reply
        restored_at = int(json.loads(reply)["last_zxid"])
        assert restored_at >= zxid
        zk = client(w.hostport)
        assert_same_tree(before, walk(zk), "after restore", restamped=("/zookeeper/config",))
        # Zxids go on from the restore, and the restored data is durable.
        zk.create("/post-restore", b"p")
        assert zk.exists("/post-restore").czxid > restored_at
        zk.stop()
        w.kill(signal.SIGTERM)
        w.launch()
        w.wait_ready()
        zk = client(w.hostport)
        got = walk(zk)
        assert "/post-restore" in got and "/after" not in got
        del got["/post-restore"]
        # The root's cversion/pzxid moved with /post-restore; compare below it.
        below = {k: v for k, v in before.items() if k.startswith("/bk")}
        assert_same_tree(below, {k: v for k, v in got.items() if k.startswith("/bk")}, "after restart")
        zk.stop()
    finally:
        w.stop()
    if not os.path.exists(ZK_JAR):
        return
    # The backup is a snapshot ZooKeeper 3.8 loads as it stands.
    zdir = tmp_path / "zk"
    (zdir / "version-2").mkdir(parents=True)
    (zdir / "version-2" / ("snapshot.%x" % zxid)).write_bytes(body)
    z = Node("zookeeper", str(zdir), free_port(), SETTINGS).start()
    try:
        zk = client(z.hostport)
        assert_same_tree(before, walk(zk), "ZooKeeper 3.8 on the backup", restamped=("/zookeeper/config",))
        zk.stop()
    finally:
        z.stop()


def complete_zk_snapshot(data):
    """ZooKeeper's test for an uncompressed snapshot: it ends with the
    serialized string "/" (length 1, then the byte)."""
    return len(data) >= 10 and data[-5:] == b"\x00\x00\x00\x01/"


@NEEDS_ZK
def test_a_snapshot_zookeeper_wrote_restores_into_warden(tmp_path):
    zdir = tmp_path / "zk"
    zdir.mkdir()
    z = Node("zookeeper", str(zdir), free_port(), dict(SETTINGS, snapCount="2")).start()
    try:
        zk = client(z.hostport)
        build(zk, "/from-zk")
        expected = walk(zk)
        zk.stop()
    finally:
        z.stop()
    # ZooKeeper writes a snapshot of everything it loaded when it starts: restart it once.
    z = Node("zookeeper", str(zdir), free_port(), dict(SETTINGS, snapCount="2")).start()
    z.stop()
    # The connection checks made a session whose two transactions may start a
    # background snapshot that the stop cut short: take the newest complete one,
    # as ZooKeeper itself does at start-up (SnapStream.isValidSnapshot).
    snaps = sorted((zdir / "version-2").glob("snapshot.*"), key=lambda p: int(p.name.split(".")[1], 16))
    newest = [b for b in (p.read_bytes() for p in snaps) if complete_zk_snapshot(b)][-1]
    w = admin_server(tmp_path, "w2")
    try:
        status, _, reply = http(w.admin + "/commands/restore", newest)
        assert status == 200, reply
        zk = client(w.hostport)
        got = walk(zk)
        want = {k: v for k, v in expected.items() if k.startswith("/from-zk")}
        assert_same_tree(want, {k: v for k, v in got.items() if k.startswith("/from-zk")}, "a ZooKeeper snapshot restored into Warden")
        zk.stop()
    finally:
        w.stop()


def test_limits_switches_and_bad_bodies(tmp_path):
    w = admin_server(tmp_path, "w3", **{"zookeeper.admin.rateLimiterIntervalInMS": "600000", "zookeeper.admin.restore.enabled": "false"})
    try:
        status, _, _ = http(w.admin + "/commands/snapshot")
        assert status == 200
        status, _, _ = http(w.admin + "/commands/snap")
        assert status == 429  # one per interval
        assert http(w.admin + "/commands/restore", b"ZKSN-not-really")[0] == 503
    finally:
        w.stop()
    w = admin_server(tmp_path, "w4")
    try:
        status, _, reply = http(w.admin + "/commands/restore", b"definitely not a snapshot")
        assert status == 400 and b"snapshot" in reply
        status, _, reply = http(w.admin + "/commands/restore", b"")
        assert status == 400 and b"must be a snapshot" in reply
        # A restore body passes through a temp file in the data dir; none is left behind.
        left = [p.name for p in (tmp_path / "w4").rglob("restore.*")]
        assert left == [], left
        status, _, reply = http(w.admin + "/commands/snapshot?streaming=false")
        assert status == 200 and b"snapshot_file_name" in reply
        # Nothing was lost by the bad restore.
        zk = client(w.hostport)
        assert zk.exists("/zookeeper") is not None
        zk.stop()
    finally:
        w.stop()


def test_warden_restore_makes_a_backup_a_stopped_nodes_state(tmp_path):
    import subprocess

    w = admin_server(tmp_path, "src")
    try:
        zk = client(w.hostport)
        build(zk, "/offline")
        expected = {k: v for k, v in walk(zk).items() if k.startswith("/offline")}
        zk.stop()
        status, _, body = http(w.admin + "/commands/snapshot")
        assert status == 200
    finally:
        w.stop()
    backup = tmp_path / "backup.snap"
    backup.write_bytes(body)
    # Another node with state of its own, stopped: the backup replaces it, the old files are kept aside.
    t = admin_server(tmp_path, "dst")
    zk = client(t.hostport)
    zk.create("/mine", b"old")
    zk.stop()
    t.kill(signal.SIGTERM)
    out = subprocess.run([conftest.WARDEN_BIN, "restore", "--data-dir", t.data_dir, str(backup)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    aside = [d for d in os.listdir(t.data_dir) if d.startswith("version-2.before-restore-")]
    assert len(aside) == 1 and any(f.startswith("log.") for f in os.listdir(os.path.join(t.data_dir, aside[0])))
    t.launch()
    t.wait_ready()
    try:
        zk = client(t.hostport)
        got = walk(zk)
        assert "/mine" not in got
        assert_same_tree(expected, {k: v for k, v in got.items() if k.startswith("/offline")}, "warden restore --data-dir")
        zk.create("/next", b"n")
        assert zk.exists("/next").czxid > max(v[2][1] for v in expected.values())
        zk.stop()
    finally:
        t.stop()
    bad = tmp_path / "bad.snap"
    bad.write_bytes(b"not a snapshot at all")
    out = subprocess.run([conftest.WARDEN_BIN, "restore", "--data-dir", t.data_dir, str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "snapshot" in out.stderr


def test_a_backup_taken_during_writes_is_the_tree_at_its_zxid(tmp_path):
    """The backup is walked piece by piece while writes go on (values of
    900 KB make ~20 pieces of 4 MiB); each write is a multi that moves one
    token from /cut/a-tokens to /cut/z-tokens, adds a child to /cut/a-log and
    sets /cut/z-counter. The walk passes the "a" nodes before the big values
    and the "z" nodes after them, so a copy that is not exact at one zxid
    shows as a lost or doubled token, or a counter that disagrees with the log."""
    import threading

    tokens = 400
    w = admin_server(tmp_path, "live")
    r = admin_server(tmp_path, "restored")
    try:
        zk = client(w.hostport)
        for p in ("/cut", "/cut/a-log", "/cut/a-tokens", "/cut/m-values", "/cut/z-tokens"):
            zk.create(p, b"")
        zk.create("/cut/z-counter", b"0")
        for f in [zk.create_async("/cut/a-tokens/t%03d" % i, b"") for i in range(tokens)]:
            f.get(timeout=60)
        big = os.urandom(900 * 1000)
        for f in [zk.create_async("/cut/m-values/v%03d" % i, big) for i in range(100)]:
            f.get(timeout=60)
        stop, moved, errors = threading.Event(), [0], []

        def writer():
            try:
                while not stop.is_set() and moved[0] < tokens:
                    k = moved[0] + 1
                    t = zk.transaction()
                    t.delete("/cut/a-tokens/t%03d" % (k - 1))
                    t.create("/cut/z-tokens/t%03d" % (k - 1), b"")
                    t.create("/cut/a-log/e%06d" % k, b"")
                    t.set_data("/cut/z-counter", b"%d" % k)
                    results = t.commit()
                    assert not any(isinstance(x, Exception) for x in results), results
                    moved[0] = k
            except Exception as e:  # surfaced below
                errors.append(e)

        th = threading.Thread(target=writer)
        th.start()
        try:
            status, headers, body = http(w.admin + "/commands/snapshot")
        finally:
            stop.set()
            th.join(timeout=60)
        assert not errors, errors
        assert status == 200 and int(headers["snapshot_size"]) == len(body)
        zxid = int(headers["last_zxid"], 16)
        zk.stop()
        # No walk file or backup file is left in the data dir.
        left = [p.name for p in (tmp_path / "live").rglob("backup.*")]
        assert left == [], left

        status, _, reply = http(r.admin + "/commands/restore", body)
        assert status == 200, reply
        zk = client(r.hostport)
        a, z = zk.get_children("/cut/a-tokens"), zk.get_children("/cut/z-tokens")
        log = zk.get_children("/cut/a-log")
        counter, stat = zk.get("/cut/z-counter")
        assert len(a) + len(z) == tokens, "tokens %d + %d: the copy is not of one moment" % (len(a), len(z))
        assert sorted(set(a) | set(z)) == ["t%03d" % i for i in range(tokens)]
        assert int(counter) == len(log) == len(z), (counter, len(log), len(z))
        assert stat.mzxid <= zxid
        assert len(zk.get_children("/cut/m-values")) == 100
        assert zk.get("/cut/m-values/v042")[0] == big
        zk.stop()
    finally:
        w.stop()
        r.stop()


def test_work_files_a_stop_cut_short_are_removed_at_start(tmp_path):
    w = admin_server(tmp_path, "leftovers")
    w.kill(signal.SIGKILL)
    v = tmp_path / "leftovers" / "version-2"
    cut_short = ["backup.77.0.walk", "backup.77.0.zk", "restore.77.0.tmp", "snapshot.5.tmp", "snapshot.5.received.tmp"]
    for name in cut_short + ["notes.tmp"]:
        (v / name).write_bytes(b"left behind")
    w.launch()
    try:
        w.wait_ready()
        left = sorted(p.name for p in v.iterdir() if p.name in cut_short + ["notes.tmp"])
        assert left == ["notes.tmp"], "only Warden's own work files go: %s" % left
    finally:
        w.stop()


def test_a_followers_backup_taken_while_the_leader_commits_is_exact(tmp_path):
    """On a follower the walk's tree changes by commits from the leader, not
    by its own processor's writes: the backup is still the tree at one zxid."""
    import threading

    ensemble = conftest.Ensemble(dict(SETTINGS, **{"zookeeper.admin.rateLimiterIntervalInMS": "0"}), size=3)
    for m in ensemble.members:
        m.admin_port = free_port()
        m.settings = dict(m.settings, **{"admin.enableServer": "true", "admin.serverPort": str(m.admin_port)})
    ensemble.start()
    r = admin_server(tmp_path, "restored-from-follower")
    try:
        mode = {}
        for m in ensemble.members:
            status, _, body = http("http://127.0.0.1:%d/commands/srvr" % m.admin_port)
            mode[m] = json.loads(body).get("server_stats", {}).get("server_state", "")
        follower = next(m for m in ensemble.members if mode[m] == "follower")
        writer_member = next(m for m in ensemble.members if m is not follower)
        zk = client(writer_member.hostport)
        tokens = 300
        for p in ("/f", "/f/a-tokens", "/f/m-values", "/f/z-tokens"):
            zk.create(p, b"")
        for f in [zk.create_async("/f/a-tokens/t%03d" % i, b"") for i in range(tokens)]:
            f.get(timeout=60)
        big = os.urandom(900 * 1000)
        for f in [zk.create_async("/f/m-values/v%03d" % i, big) for i in range(60)]:
            f.get(timeout=60)
        stop, errors = threading.Event(), []

        def writer():
            try:
                for k in range(tokens):
                    if stop.is_set():
                        return
                    t = zk.transaction()
                    t.delete("/f/a-tokens/t%03d" % k)
                    t.create("/f/z-tokens/t%03d" % k, b"")
                    assert not any(isinstance(x, Exception) for x in t.commit())
            except Exception as e:
                errors.append(e)

        th = threading.Thread(target=writer)
        th.start()
        try:
            status, headers, body = http("http://127.0.0.1:%d/commands/snapshot" % follower.admin_port)
        finally:
            stop.set()
            th.join(timeout=60)
        assert not errors, errors
        assert status == 200, body[:200]
        zk.stop()
        status, _, reply = http(r.admin + "/commands/restore", body)
        assert status == 200, reply
        zk = client(r.hostport)
        a, z = zk.get_children("/f/a-tokens"), zk.get_children("/f/z-tokens")
        assert len(a) + len(z) == tokens, "tokens %d + %d: the copy is not of one moment" % (len(a), len(z))
        assert len(zk.get_children("/f/m-values")) == 60
        zk.stop()
    finally:
        r.stop()
        ensemble.stop()


def test_a_graceful_stop_finishes_the_snapshot_being_written(tmp_path):
    """SIGTERM while a snapshot is being written: the stop waits for it, so the
    next start loads it instead of replaying every transaction before it."""
    w = admin_server(tmp_path, "stop-mid-snapshot")
    try:
        zk = client(w.hostport)
        zk.create("/big", b"")
        big = os.urandom(900 * 1000)
        for f in [zk.create_async("/big/v%03d" % i, big) for i in range(120)]:
            f.get(timeout=60)
        zk.stop()
        # ~108 MB to write in 4 MiB pieces: still being written when the signal lands.
        status, _, body = http(w.admin + "/commands/snapshot?streaming=false")
        assert status == 200, body
        zxid = json.loads(body)["last_zxid"]
        w.kill(signal.SIGTERM)
        with open(w.log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        assert "finishing the snapshot in progress before stopping" in log, log[-3000:]
        names = sorted(p.name for p in (tmp_path / "stop-mid-snapshot" / "version-2").iterdir())
        assert "snapshot.%x" % zxid in names and not [n for n in names if n.endswith(".tmp")], names
        w.start()
        with open(w.log_path, "rb") as f:
            restarted = f.read().decode("utf-8", "replace").split("shutting down on signal")[-1]
        assert "loaded snapshot" in restarted and "zxid: 0x%x" % zxid in restarted, restarted[-3000:]
        zk = client(w.hostport)
        assert len(zk.get_children("/big")) == 120 and zk.get("/big/v119")[0] == big
        zk.stop()
    finally:
        w.stop()
