"""Migration from Apache ZooKeeper 3.8 to Warden on the same data dir, and back.

The real ZooKeeper builds a tree (thousands of znodes, digest/world/ip ACLs,
sequential, ephemeral, container and TTL nodes, bumped versions, a multi) and
is SIGKILLed with a session open; Warden starts on its dataDir and must serve
the same tree, Stat field by Stat field, keep the session (its client
reconnects with ZooKeeper's password, keeping ephemerals and watches),
continue the zxid sequence and leave ZooKeeper's files byte for byte as they
were. Then `warden snapshot export --zookeeper` and ZooKeeper loads the result,
again field by field, and the same session reconnects to it.

The test starts both servers itself, whatever WARDEN_TEST_TARGET says.
"""

import hashlib
import os
import re
import subprocess
import tempfile
import threading
import shutil
import time

import pytest
from kazoo.client import KazooClient, KazooState
from kazoo.security import OPEN_ACL_UNSAFE, make_acl, make_digest_acl, make_digest_acl_credential

import conftest
import rawzk
from conftest import TARGET, WARDEN_BIN, free_port, single_node_only

ZK_JAR = "/usr/share/java/zookeeper.jar"
SNAPPY_JAR = "/usr/share/java/snappy-java.jar"
pytestmark = [
    pytest.mark.skipif(not os.path.exists(ZK_JAR), reason="needs Apache ZooKeeper 3.8 (Debian's zookeeper package: /usr/share/java/zookeeper.jar)"),
    # It runs both ZooKeeper and Warden itself: once per suite (the Warden pass) is enough.
    pytest.mark.skipif(TARGET != "warden", reason="starts ZooKeeper and Warden itself; runs in the Warden pass"),
    single_node_only,
]

NODES = 3000
SUPER = ("super", "migrate")
SETTINGS = {
    "zookeeper.DigestAuthenticationProvider.superDigest": make_digest_acl_credential(*SUPER),
    "maxSessionTimeout": "60000",
}
ACLS = [
    OPEN_ACL_UNSAFE,
    [make_digest_acl("alice", "pw", all=True)],
    [make_acl("ip", "127.0.0.1", read=True, write=True), make_acl("world", "anyone", read=True)],
    [make_digest_acl("bob", "pw", read=True, admin=True), make_acl("ip", "10.0.0.0/8", all=True)],
]


class Node(conftest.Server):
    """A ZooKeeper or Warden server on a given data dir and port."""

    def __init__(self, target, data_dir, port, settings):
        super().__init__(settings)
        self.target = target
        self.data_dir = data_dir
        self.port = port
        self.hostport = "%s:%d" % (self.host, port)

    def command(self):
        cmd = super().command()
        if self.target == "zookeeper" and os.path.exists(SNAPPY_JAR):
            # snapshot.compression.method=snappy needs snappy-java on the class path.
            i = cmd.index("-cp") + 1
            cmd[i] += ":" + SNAPPY_JAR
        return cmd

    def launch(self):
        saved = conftest.TARGET
        conftest.TARGET = self.target
        try:
            return super().launch()
        finally:
            conftest.TARGET = saved


def client(hostport, **kw):
    zk = KazooClient(hosts=hostport, timeout=30.0, connection_retry=dict(max_tries=-1, delay=0.1, backoff=1, max_delay=0.3), **kw)
    zk.start(timeout=20)
    zk.add_auth("digest", "%s:%s" % SUPER)
    return zk


def walk(zk):
    """Every znode: (data, ACL list in order, the 11 Stat fields)."""
    out, level = {}, ["/"]
    while level:
        calls = [(p, zk.get_async(p), zk.get_acls_async(p), zk.get_children_async(p)) for p in level]
        level = []
        for p, g, a, c in calls:
            data, stat = g.get(timeout=30)
            acl, _ = a.get(timeout=30)
            out[p] = (data, [(x.perms, x.id.scheme, x.id.id) for x in acl], tuple(stat))
            level += [p.rstrip("/") + "/" + child for child in c.get(timeout=30)]
    return out


def assert_same_tree(expected, got, what, restamped=()):
    """`restamped`: nodes every server rewrites at start (ZooKeeper too), whose mtime moves."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing and not extra, "%s: missing %s, extra %s" % (what, missing[:10], extra[:10])
    fields = ("czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion", "ephemeralOwner", "dataLength", "numChildren", "pzxid")
    for path in sorted(expected):
        (d1, a1, s1), (d2, a2, s2) = expected[path], got[path]
        assert d2 == d1, "%s: data of %s differs" % (what, path)
        assert a2 == a1, "%s: ACL of %s differs: %s vs %s" % (what, path, a1, a2)
        for name, v1, v2 in zip(fields, s1, s2):
            if name == "mtime" and path in restamped:
                continue
            assert v2 == v1, "%s: %s of %s is %r, expected %r" % (what, name, path, v2, v1)


def last_zxid(hostport):
    text = rawzk.four_letter(hostport, "srvr").decode()
    return int(re.search(r"Zxid: (0x[0-9a-f]+)", text).group(1), 16)


def file_hashes(version_dir):
    return {n: hashlib.sha256(open(os.path.join(version_dir, n), "rb").read()).hexdigest() for n in sorted(os.listdir(version_dir))}


def wait_for(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def build_tree(zk, hostport, nodes=NODES):
    zk.create("/data", b"root of the bulk")
    pending = []
    for i in range(nodes):
        value = bytes((i * 7 + k) % 256 for k in range(i % 200))
        pending.append(zk.create_async("/data/n%04d" % i, value, acl=ACLS[i % len(ACLS)]))
        if len(pending) >= 500:
            [p.get(timeout=30) for p in pending]
            pending = []
    [p.get(timeout=30) for p in pending]
    for i in range(0, nodes, 7):
        for _ in range(1 + i % 3):
            zk.set("/data/n%04d" % i, b"changed %d" % i)
    for i in range(3, nodes, 97):
        zk.set_acls("/data/n%04d" % i, ACLS[(i + 1) % len(ACLS)])
    for i in range(49, nodes, 50):
        zk.delete("/data/n%04d" % i)
    zk.create("/seq")
    for i in range(12):
        zk.create("/seq/item-", b"%d" % i, sequence=True)
    raw = rawzk.RawClient(hostport)
    rep = raw.request(rawzk.OP_CREATE_CONTAINER, rawzk.create_body("/box", b"", flags=rawzk.FLAG_CONTAINER))
    assert rep.err == 0, rep
    rep = raw.create_ttl("/ttl", b"lives an hour", ttl=3_600_000)
    assert rep.err == 0, rep
    raw.close()
    zk.create("/box/child", b"keeps the container")
    zk.create("/watched")
    zk.create("/eph")
    tx = zk.transaction()
    tx.create("/multi", b"m")
    tx.set_data("/data/n0000", b"set in a multi")
    tx.check("/seq", 0)
    assert all(not isinstance(r, Exception) for r in tx.commit())



def stop_all(clients, servers, work):
    """Closes every client, stops every server by its pid, removes the work dir."""
    for zk in clients:
        try:
            zk.stop()
            zk.close()
        except Exception:
            pass
    for s in servers:
        s.stop()
    shutil.rmtree(work, ignore_errors=True)

def test_zookeeper_data_dir_comes_up_in_warden_and_goes_back():
    work = tempfile.mkdtemp(prefix="warden-zkdata-")
    data_dir, back_dir = os.path.join(work, "data"), os.path.join(work, "back")
    os.makedirs(data_dir)
    port = free_port()
    zk_settings = dict(SETTINGS, **{"zookeeper.snapCount": "1000"})
    servers, clients = [], []
    try:
        zookeeper = Node("zookeeper", data_dir, port, zk_settings)
        servers.append(zookeeper)
        zookeeper.start()
        admin = client(zookeeper.hostport)
        clients.append(admin)
        build_tree(admin, zookeeper.hostport)

        # The session that lives through the migration: ephemerals and watches.
        holder = client(zookeeper.hostport)
        clients.append(holder)
        holder.create("/eph/one", b"1", ephemeral=True)
        holder.create("/eph/seq-", b"2", ephemeral=True, sequence=True)
        fired = {"data": threading.Event(), "child": threading.Event()}
        holder.get("/data/n0001", watch=lambda e: fired["data"].set())
        holder.get_children("/watched", watch=lambda e: fired["child"].set())
        session_id, passwd = holder.client_id

        served_by_zookeeper = walk(admin)
        assert len(served_by_zookeeper) > NODES * 0.9
        admin.stop()
        admin.close()
        clients.remove(admin)
        zk_zxid = last_zxid(zookeeper.hostport)
        zookeeper.kill()  # SIGKILL by pid, the holder's session still open
        version_dir = os.path.join(data_dir, "version-2")
        before = file_hashes(version_dir)
        assert any(n.startswith("snapshot.") for n in before) and any(n.startswith("log.") for n in before), before
        # The offline tools read ZooKeeper's files too.
        newest = max((n for n in before if n.startswith("snapshot.")), key=lambda n: int(n.split(".")[1], 16))
        out = subprocess.run([WARDEN_BIN, "snapshot", "verify", os.path.join(version_dir, newest)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "valid snapshot" in out.stdout, out.stdout + out.stderr
        out = subprocess.run([WARDEN_BIN, "log", "dump", data_dir], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "createSession" in out.stdout and "'/eph/one'" in out.stdout, out.stderr

        warden = Node("warden", data_dir, port, SETTINGS)
        servers.append(warden)
        warden.launch()
        # Before any session (start()'s readiness check opens one): the last zxid is ZooKeeper's.
        wait_for(lambda: conftest.ruok(warden.hostport), "Warden to answer ruok")
        assert last_zxid(warden.hostport) == zk_zxid, "Warden does not continue at ZooKeeper's last zxid"
        warden.wait_ready()
        # The holder's client reconnects by itself, with ZooKeeper's password.
        wait_for(lambda: holder.state == KazooState.CONNECTED and holder.connected, "the session to reconnect to Warden")
        assert holder.client_id[0] == session_id
        reader = client(warden.hostport)
        clients.append(reader)
        assert_same_tree(served_by_zookeeper, walk(reader), "Warden vs ZooKeeper")
        ephemerals = sorted(reader.get_children("/eph"))
        assert len(ephemerals) == 2 and ephemerals[0] == "one" and ephemerals[1].startswith("seq-"), ephemerals
        assert reader.exists("/eph/one").ephemeralOwner == session_id
        # The zxid sequence continues.
        before_create = last_zxid(warden.hostport)
        stat = reader.create("/after", b"written by Warden", include_data=True)[1]
        assert stat.czxid == before_create + 1 and before_create > zk_zxid, (hex(stat.czxid), hex(zk_zxid))
        # Watches the client set on ZooKeeper still fire.
        reader.set("/data/n0001", b"changed under Warden")
        reader.create("/watched/x")
        assert fired["data"].wait(10), "data watch set on ZooKeeper did not fire on Warden"
        assert fired["child"].wait(10), "child watch set on ZooKeeper did not fire on Warden"
        # Only ZooKeeper's password (or Warden's own) reattaches the session.
        wrong = rawzk.RawClient(warden.hostport, session_id=session_id, passwd=bytes(16))
        assert wrong.connect_response.session_id == 0 and wrong.connect_response.timeout == 0
        wrong.close()
        right = rawzk.RawClient(warden.hostport, session_id=session_id, passwd=passwd, timeout_ms=30000)
        assert right.connect_response.session_id == session_id
        assert right.connect_response.passwd == passwd, "Warden should hand back ZooKeeper's password"
        right.close()
        wait_for(lambda: holder.connected, "the holder to reconnect after the raw client took the session over")

        served_by_warden = walk(reader)
        reader.stop()
        reader.close()
        clients.remove(reader)
        warden.stop()
        after = file_hashes(version_dir)
        changed = [n for n in before if after.get(n) != before[n]]
        assert not changed, "Warden changed or removed ZooKeeper's files: %s" % changed

        # The way back.
        out = subprocess.run([WARDEN_BIN, "snapshot", "export", "--zookeeper", back_dir, data_dir], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        back = Node("zookeeper", back_dir, port, zk_settings)
        servers.append(back)
        back.start()
        # The session reattaches to ZooKeeper with the password ZooKeeper first issued. (Checked
        # with a raw connect once ZooKeeper serves: kazoo's own retry may have hit ZooKeeper
        # while it started and then waits out a whole session timeout.)
        again = rawzk.RawClient(back.hostport, session_id=session_id, passwd=passwd, timeout_ms=30000)
        assert again.connect_response.session_id == session_id and again.connect_response.timeout > 0, again.connect_response
        again.close()
        checker = client(back.hostport)
        clients.append(checker)
        served_back = walk(checker)
        assert_same_tree(served_by_warden, served_back, "ZooKeeper (exported) vs Warden")
        assert checker.exists("/eph/one").ephemeralOwner == session_id
    finally:
        stop_all(clients, servers, work)


def test_zookeeper_ensemble_migrates_to_warden_members_on_the_same_dirs():
    """Stop a 3-member ZooKeeper ensemble, start Warden members on its dirs and ports."""
    work = tempfile.mkdtemp(prefix="warden-zkens-")
    dirs = [os.path.join(work, "m%d" % i) for i in (1, 2, 3)]
    ports = [free_port() for _ in dirs]
    quorum = {"server.%d" % i: "127.0.0.1:%d:%d" % (free_port(), free_port()) for i in (1, 2, 3)}
    settings = dict(SETTINGS, initLimit="10", syncLimit="5", **quorum)
    hosts = ",".join("127.0.0.1:%d" % p for p in ports)
    servers, clients = [], []

    def members(target):
        out = []
        for i, (d, p) in enumerate(zip(dirs, ports), 1):
            os.makedirs(d, exist_ok=True)
            m = Node(target, d, p, settings)
            m.myid = i
            out.append(m)
        servers.extend(out)
        for m in out:
            m.launch()
        for m in out:
            m.wait_ready()
        return out

    try:
        zookeepers = members("zookeeper")
        admin = client(hosts)
        clients.append(admin)
        build_tree(admin, zookeepers[0].hostport, nodes=600)
        holder = client(zookeepers[1].hostport)
        clients.append(holder)
        holder.create("/eph/one", b"1", ephemeral=True)
        session_id = holder.client_id[0]
        admin.sync("/")
        served_by_zookeeper = walk(admin)
        admin.stop()
        admin.close()
        clients.remove(admin)
        zk_zxid = max(last_zxid(m.hostport) for m in zookeepers)
        for m in zookeepers:
            m.kill()
        # acceptedEpoch/currentEpoch are shared with ZooKeeper by design: Warden moves them on.
        shared = ("acceptedEpoch", "currentEpoch")
        before = [{n: h for n, h in file_hashes(os.path.join(d, "version-2")).items() if n not in shared} for d in dirs]

        wardens = members("warden")
        wait_for(lambda: holder.connected, "the session to reconnect to a Warden member")
        assert holder.client_id[0] == session_id
        for m in wardens:
            reader = client(m.hostport)
            clients.append(reader)
            reader.sync("/")
            # An ensemble member writes its config into /zookeeper/config at start, as ZooKeeper does.
            assert_same_tree(served_by_zookeeper, walk(reader), "Warden member %d vs ZooKeeper" % m.myid, restamped=("/zookeeper/config",))
        stat = reader.create("/after", b"x", include_data=True)[1]
        assert stat.czxid >> 32 > zk_zxid >> 32, "a new epoch after ZooKeeper's: %#x vs %#x" % (stat.czxid, zk_zxid)
        holder.stop()  # closeSession: its ephemeral goes
        holder.close()
        clients.remove(holder)
        reader.sync("/")
        assert reader.exists("/eph/one") is None
        served_by_warden = walk(reader)
        for zk in list(clients):
            zk.stop()
            zk.close()
            clients.remove(zk)
        for m in wardens:
            m.stop()
        for d, old in zip(dirs, before):
            now = file_hashes(os.path.join(d, "version-2"))
            changed = [n for n in old if now.get(n) != old[n]]
            assert not changed, "Warden changed or removed ZooKeeper's files in %s: %s" % (d, changed)
        # The way back from a member's dir, across the epoch change: a standalone ZooKeeper loads it.
        back_dir = os.path.join(work, "back")
        out = subprocess.run([WARDEN_BIN, "snapshot", "export", "--zookeeper", back_dir, dirs[0]], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        back = Node("zookeeper", back_dir, free_port(), SETTINGS)
        servers.append(back)
        back.start()
        checker = client(back.hostport)
        clients.append(checker)
        assert_same_tree(served_by_warden, walk(checker), "ZooKeeper (exported from a member) vs Warden", restamped=("/zookeeper/config",))
    finally:
        stop_all(clients, servers, work)


@pytest.mark.parametrize("method", ["gz", "snappy"])
def test_compressed_zookeeper_snapshots_are_read(method):
    """snapshot.compression.method=gz|snappy: ZooKeeper writes snapshot.<zxid>.<method>."""
    if method == "snappy" and not os.path.exists(SNAPPY_JAR):
        pytest.skip("needs snappy-java (Debian's libsnappy-java, a dependency of zookeeper)")
    work = tempfile.mkdtemp(prefix="warden-zkgz-")
    data_dir = os.path.join(work, "data")
    os.makedirs(data_dir)
    port = free_port()
    settings = dict(SETTINGS, **{"zookeeper.snapCount": "200", "zookeeper.snapshot.compression.method": method})
    servers = []
    try:
        zookeeper = Node("zookeeper", data_dir, port, settings)
        servers.append(zookeeper)
        zookeeper.start()
        admin = client(zookeeper.hostport)
        build_tree(admin, zookeeper.hostport, nodes=400)
        served_by_zookeeper = walk(admin)
        admin.stop()
        admin.close()
        zookeeper.kill()
        names = os.listdir(os.path.join(data_dir, "version-2"))
        assert any(n.endswith("." + method) and n != "snapshot.0." + method for n in names), names
        warden = Node("warden", data_dir, port, SETTINGS)
        servers.append(warden)
        warden.start()
        reader = client(warden.hostport)
        try:
            assert_same_tree(served_by_zookeeper, walk(reader), "Warden vs ZooKeeper (%s snapshots)" % method)
        finally:
            reader.stop()
            reader.close()
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
