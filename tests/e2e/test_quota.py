"""Quotas as ZooKeeper 3.7+/3.8 keeps them.

The limits and stats nodes are written here as zkCli's setquota writes them
(`/zookeeper/quota/<path>/zookeeper_limits`, `.../zookeeper_stats`); the server
keeps the stats text current (data only: the stats node's Stat does not move)
and, with zookeeper.enforceQuota=true, refuses creates and sets past a hard
limit with QuotaExceeded while a soft limit only logs a warning. `warden cli`'s
setquota/listquota/delquota and ZooKeeper's own zkCli.sh run against either target.
"""

import os
import subprocess
import time

import pytest
from kazoo.exceptions import QuotaExceededError

from conftest import WARDEN_BIN, start_server

ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
UNLIMITED = "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=-1"


def limits_text(count=-1, nbytes=-1, count_hard=-1, bytes_hard=-1):
    return "count=%d,bytes=%d=;byteHardLimit=%d;countHardLimit=%d" % (count, nbytes, bytes_hard, count_hard)


def set_quota_nodes(zk, path, limits):
    """What zkCli's setquota does for a path without a quota."""
    zk.ensure_path("/zookeeper/quota" + path)
    zk.create("/zookeeper/quota%s/zookeeper_limits" % path, limits.encode())
    zk.create("/zookeeper/quota%s/zookeeper_stats" % path, b"count=0,bytes=0")


def drop_quota_nodes(zk, path):
    zk.delete("/zookeeper/quota" + path, recursive=True)


def stats(zk, path):
    data, st = zk.get("/zookeeper/quota%s/zookeeper_stats" % path)
    return data.decode(), st


def server_logs(server):
    members = getattr(server, "members", [server])
    text = ""
    for m in members:
        with open(m.log_path, "rb") as f:
            text += f.read().decode("utf-8", "replace")
    return text


def wait_for_log(server, needle, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if needle in server_logs(server):
            return True
        time.sleep(0.1)
    return False


def test_stats_follow_creates_sets_and_deletes(zk, base):
    zk.set(base, b"ab")
    zk.create(base + "/c1", b"xyz")
    zk.create(base + "-sibling", b"not under the quota")
    try:
        set_quota_nodes(zk, base, limits_text(count_hard=2))
        # The stats node's data is replaced by the subtree's usage, the node itself included.
        text, st0 = stats(zk, base)
        assert text == "count=2,bytes=5"
        assert (st0.version, st0.mzxid, st0.data_length) == (0, st0.czxid, len(text))
        zk.create(base + "/c1/g", b"hello")
        zk.create(base + "-sibling/x", b"ignored")
        assert stats(zk, base)[0] == "count=3,bytes=10"
        zk.set(base + "/c1", b"x")
        assert stats(zk, base)[0] == "count=3,bytes=8"
        zk.set(base + "/c1", b"")
        assert stats(zk, base)[0] == "count=3,bytes=7"
        zk.delete(base + "/c1/g")
        text, st = stats(zk, base)
        assert text == "count=2,bytes=2"
        # Only the data moved: no version, mzxid or mtime change on the stats node.
        assert (st.version, st.mzxid, st.mtime, st.czxid) == (0, st0.mzxid, st0.mtime, st0.czxid)
        assert st.data_length == len(text)
        # Without zookeeper.enforceQuota a hard limit refuses nothing; the count runs past it.
        for i in range(3):
            zk.create("%s/n%d" % (base, i), b"12")
        assert stats(zk, base)[0] == "count=5,bytes=8"
        assert zk.get("/zookeeper/quota%s/zookeeper_limits" % base)[0].decode() == limits_text(count_hard=2)
        # Deleting the limits node ends the tracking; the stats text stays as it was.
        zk.delete("/zookeeper/quota%s/zookeeper_limits" % base)
        zk.create(base + "/after", b"zz")
        assert stats(zk, base)[0] == "count=5,bytes=8"
    finally:
        drop_quota_nodes(zk, base)
        zk.delete(base + "-sibling", recursive=True)


def test_stats_keep_unknown_keys_and_the_deepest_quota_counts(zk, base):
    zk.create(base + "/inner/leaf", b"1", makepath=True)
    try:
        set_quota_nodes(zk, base, UNLIMITED)
        set_quota_nodes(zk, base + "/inner", UNLIMITED)
        assert stats(zk, base)[0] == "count=3,bytes=1"
        assert stats(zk, base + "/inner")[0] == "count=2,bytes=1"
        # A change below /inner counts only for the deepest quota.
        zk.create(base + "/inner/more", b"abcd")
        assert stats(zk, base)[0] == "count=3,bytes=1"
        assert stats(zk, base + "/inner")[0] == "count=3,bytes=5"
        # A stats text written by hand is parsed and rewritten in StatsTrack's form.
        zk.set("/zookeeper/quota%s/zookeeper_stats" % base, b"zeta=7;bytes=1,count=3")
        zk.create(base + "/x", b"")
        assert stats(zk, base)[0] == "count=4,bytes=1=;zeta=7"
    finally:
        drop_quota_nodes(zk, base)


def test_quota_state_survives_a_restart(make_client):
    srv = start_server({"snapCount": "20"})
    try:
        zk = make_client(hosts=srv.hostport)
        zk.create("/r", b"1234")
        set_quota_nodes(zk, "/r", limits_text(count=100))
        for i in range(30):  # enough for a snapshot on both targets
            zk.create("/r/n%d" % i, b"ab")
        zk.set("/r/n0", b"")
        zk.delete("/r/n1")
        expected = "count=30,bytes=60"
        assert stats(zk, "/r")[0] == expected
        _, before = stats(zk, "/r")
        zk.stop()
        srv.restart()
        zk = make_client(hosts=srv.hostport)
        text, after = stats(zk, "/r")
        assert text == expected
        assert (after.mzxid, after.version, after.czxid) == (before.mzxid, before.version, before.czxid)
        # The quota'd path is known again: changes keep counting.
        zk.create("/r/again", b"xyz")
        assert stats(zk, "/r")[0] == "count=31,bytes=63"
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def enforcing():
    srv = start_server({"zookeeper.enforceQuota": "true"})
    yield srv
    srv.stop()


def test_enforced_hard_limits_refuse_with_quota_exceeded(make_client, enforcing):
    zk = make_client(hosts=enforcing.hostport)
    zk.create("/hard", b"")
    set_quota_nodes(zk, "/hard", limits_text(count_hard=3, bytes_hard=6))
    zk.create("/hard/a", b"abc")
    zk.create("/hard/b", b"")
    with pytest.raises(QuotaExceededError):
        zk.create("/hard/c", b"")
    assert zk.exists("/hard/c") is None
    zk.set("/hard/a", b"abcdef")  # exactly the limit
    with pytest.raises(QuotaExceededError):
        zk.set("/hard/a", b"abcdefg")
    assert zk.get("/hard/a")[0] == b"abcdef"
    assert stats(zk, "/hard")[0] == "count=3,bytes=6"
    assert wait_for_log(enforcing, "Quota exceeded: /hard [current count=4, hardCountLimit=3]")
    assert wait_for_log(enforcing, "Quota exceeded: /hard [current bytes=7, hardByteLimit=6]")
    # In a transaction the refused create fails the whole of it; usage is checked as committed.
    tx = zk.transaction()
    tx.delete("/hard/b")
    tx.create("/hard/d", b"")
    results = tx.commit()
    assert isinstance(results[1], QuotaExceededError), results
    assert zk.exists("/hard/b") is not None and zk.exists("/hard/d") is None
    # Outside the quota'd subtree nothing is checked.
    zk.create("/hardly", b"x" * 100)


def test_enforced_soft_limits_only_warn(make_client, enforcing):
    zk = make_client(hosts=enforcing.hostport)
    zk.create("/soft", b"")
    set_quota_nodes(zk, "/soft", limits_text(count=1, nbytes=2))
    zk.create("/soft/a", b"abc")
    zk.set("/soft/a", b"abcd")
    assert stats(zk, "/soft")[0] == "count=2,bytes=4"
    assert wait_for_log(enforcing, "Quota exceeded: /soft [current count=2, softCountLimit=1]")
    assert wait_for_log(enforcing, "Quota exceeded: /soft [current bytes=4, softByteLimit=2]")


def wcli(server, *args):
    return subprocess.run([WARDEN_BIN, "cli", "-server", server.hostport, *args], input="", capture_output=True, text=True, timeout=30)


def test_warden_cli_setquota_listquota_delquota(server, zk, base):
    zk.set(base, b"ab")
    zk.create(base + "/c", b"xyz")
    r = wcli(server, "setquota", "-N", "3", base)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert zk.get("/zookeeper/quota%s/zookeeper_limits" % base)[0].decode() == limits_text(count_hard=3)
    assert stats(zk, base)[0] == "count=2,bytes=5"
    r = wcli(server, "listquota", base)
    assert r.returncode == 0
    assert r.stderr == "absolute path is /zookeeper/quota%s/zookeeper_limits\n" % base
    assert r.stdout == "Output quota for %s %s\nOutput stat for %s count=2,bytes=5\n" % (base, limits_text(count_hard=3), base)
    # A second setquota merges into the limits and warns when usage is already above.
    r = wcli(server, "setquota", "-b", "4", base)
    assert (r.returncode, r.stdout) == (0, "[Warning]: the bytes quota you create is less than the existing bytes:5\n")
    assert zk.get("/zookeeper/quota%s/zookeeper_limits" % base)[0].decode() == limits_text(nbytes=4, count_hard=3)
    # Refusals, as zkCli words them.
    r = wcli(server, "setquota", "-n", "1", base + "/c")
    assert (r.returncode, r.stderr) == (1, "%s/c has a parent %s which has a quota\n" % (base, base))
    r = wcli(server, "setquota", "-n", "1", base + "-missing")
    assert (r.returncode, r.stderr) == (1, "%s-missing does not exist.\n" % base)
    r = wcli(server, "setquota", "-n", "0", base)
    assert (r.returncode, r.stderr) == (0, "the num quota must be greater than zero\n")
    r = wcli(server, "setquota", base)
    assert r.returncode == 1 and "Missing required option: [-n num soft quota" in r.stderr
    r = wcli(server, "setquota", "-n", "2", "/zookeeper/quota/x")
    assert (r.returncode, r.stderr) == (0, "cannot set a quota under the path: /zookeeper/quota\n")
    # delquota of one limit resets it to -1; without a flag it removes the quota's nodes.
    r = wcli(server, "delquota", "-b", base)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert zk.get("/zookeeper/quota%s/zookeeper_limits" % base)[0].decode() == limits_text(count_hard=3)
    r = wcli(server, "delquota", base)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert zk.exists("/zookeeper/quota" + base) is None
    assert zk.exists("/zookeeper/quota") is not None
    r = wcli(server, "delquota", base)
    assert (r.returncode, r.stdout) == (0, "Quota does not exist for %s\n" % base)
    r = wcli(server, "listquota", base)
    assert (r.returncode, r.stdout) == (0, "")
    assert r.stderr.endswith("quota for %s does not exist.\n" % base)


def test_warden_cli_refuses_a_quota_above_an_existing_one(server, zk, base):
    zk.create(base + "/deep/er", b"", makepath=True)
    assert wcli(server, "setquota", "-n", "5", base + "/deep/er").returncode == 0
    try:
        r = wcli(server, "setquota", "-n", "5", base)
        assert (r.returncode, r.stderr) == (1, "%s has a child %s/deep/er which has a quota\n" % (base, base))
        # delquota trims the now-empty quota path up to /zookeeper/quota.
        assert wcli(server, "delquota", base + "/deep/er").returncode == 0
        assert zk.exists("/zookeeper/quota" + base) is None
    finally:
        if zk.exists("/zookeeper/quota" + base):
            drop_quota_nodes(zk, base)


def zkcli(server, *args):
    env = dict(os.environ, JVMFLAGS="-Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    r = subprocess.run([ZKCLI, "-server", server.hostport, *args], capture_output=True, text=True, timeout=60, env=env)
    lines = [ln for ln in r.stdout.splitlines() if ln and not ln.startswith(("Connecting to", "WATCHER::", "WatchedEvent"))]
    return r.returncode, lines, r.stderr


@pytest.mark.skipif(not os.path.exists(ZKCLI), reason="ZooKeeper's zkCli.sh is not installed (Debian package zookeeper)")
def test_zookeeper_zkcli_quota_commands(server, zk, base):
    zk.set(base, b"abc")
    rc, out, _ = zkcli(server, "setquota", "-B", "10", base)
    assert (rc, out) == (0, [])
    assert zk.get("/zookeeper/quota%s/zookeeper_limits" % base)[0].decode() == limits_text(bytes_hard=10)
    # zkCli creates the quota path's nodes without data.
    assert zk.get("/zookeeper/quota" + base)[0] is None
    zk.create(base + "/k", b"12")
    assert stats(zk, base)[0] == "count=2,bytes=5"
    rc, out, err = zkcli(server, "listquota", base)
    assert rc == 0
    assert out == ["Output quota for %s %s" % (base, limits_text(bytes_hard=10)), "Output stat for %s count=2,bytes=5" % base]
    assert "absolute path is /zookeeper/quota%s/zookeeper_limits" % base in err
    rc, out, _ = zkcli(server, "delquota", base)
    assert (rc, out) == (0, [])
    assert zk.exists("/zookeeper/quota" + base) is None
