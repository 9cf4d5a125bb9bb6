"""Crash safety: SIGKILL the server at random moments while a client writes,
restart it on the same data dir, and check that every acknowledged write is
there, nothing is half-applied, sequence numbers never repeat, and sessions
that did not expire reattach with their ephemerals.

Runs against both targets: ZooKeeper keeps this promise, and so must Warden.
"""

import os
import random
import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError

from conftest import start_server

ROUNDS = int(os.environ.get("WARDEN_CRASH_ROUNDS", "6"))
SEED = int(os.environ.get("WARDEN_CRASH_SEED", str(random.randrange(1 << 30))))


def client(hostport, **kw):
    zk = KazooClient(hosts=hostport, timeout=10.0, connection_retry={"max_tries": 0}, **kw)
    zk.start(timeout=15)
    return zk


class Writer(threading.Thread):
    """Sequential creates and versioned setData; records what was acknowledged."""

    def __init__(self, zk, round_no):
        super().__init__(daemon=True)
        self.zk, self.round_no = zk, round_no
        self.acked_creates = []  # (path, data)
        self.acked_register = None  # (value, version)
        self.stop = False

    def run(self):
        i = 0
        while not self.stop:
            i += 1
            data = ("%d-%d" % (self.round_no, i)).encode()
            try:
                path = self.zk.create("/q/item-", data, sequence=True)
                self.acked_creates.append((path, data))
                value, stat = self.zk.get("/reg")
                new = str(int(value) + 1).encode()
                stat = self.zk.set("/reg", new, version=stat.version)
                self.acked_register = (int(new), stat.version)
            except BadVersionError:
                continue
            except Exception:
                return  # the server went away: outcome of the last op unknown


def test_acknowledged_writes_survive_sigkill():
    rng = random.Random(SEED)
    print("crash test seed", SEED, "(WARDEN_CRASH_SEED to replay)")
    server = start_server({"tickTime": "500"})
    try:
        zk = client(server.hostport)
        zk.ensure_path("/q")
        zk.create("/reg", b"0")
        zk.stop()
        all_acked, last_register = [], (0, 0)
        for round_no in range(ROUNDS):
            zk = client(server.hostport)
            eph = zk.create("/eph-%d" % round_no, b"e", ephemeral=True)
            session_id, passwd = zk.client_id
            writer = Writer(zk, round_no)
            writer.start()
            time.sleep(rng.uniform(0.2, 0.8))
            server.kill()  # SIGKILL in the middle of the writes
            writer.stop = True
            writer.join(10)
            zk.stop()
            zk.close()
            all_acked += writer.acked_creates
            if writer.acked_register:
                last_register = max(last_register, writer.acked_register)

            server.start()
            check = client(server.hostport)
            children = check.get_children("/q")
            for path, data in all_acked:
                got, _ = check.get(path)
                assert got == data, "acknowledged create %s lost or changed" % path
            suffixes = sorted(int(c.rsplit("-", 1)[1]) for c in children)
            assert len(suffixes) == len(set(suffixes)), "sequence numbers repeated"
            value, stat = check.get("/reg")
            assert int(value) >= last_register[0], "acknowledged setData lost"
            assert stat.version == int(value), "register half-applied: value %s version %d" % (value, stat.version)
            fresh = check.create("/q/item-", b"after", sequence=True)
            assert not suffixes or int(fresh.rsplit("-", 1)[1]) > suffixes[-1], "sequence reused"
            check.delete(fresh)
            # The session of this round did not expire: it reattaches with its ephemeral.
            assert check.exists(eph).ephemeralOwner == session_id
            again = KazooClient(hosts=server.hostport, client_id=(session_id, passwd), timeout=10.0)
            again.start(timeout=15)
            assert again.client_id[0] == session_id
            assert again.exists(eph) is not None
            again.stop()  # closeSession: the ephemeral goes
            again.close()
            assert check.exists(eph) is None
            check.stop()
            check.close()
        assert all_acked, "the writer never got a write acknowledged"
    finally:
        server.stop()


def test_clean_restart_keeps_everything():
    server = start_server({"tickTime": "500"})
    try:
        zk = client(server.hostport)
        zk.create("/keep", b"v1")
        zk.set("/keep", b"v2")
        zk.create("/keep/child", b"c", acl=zk.default_acl)
        before = zk.exists("/keep")
        zk.stop()
        server.restart()
        zk = client(server.hostport)
        data, after = zk.get("/keep")
        assert data == b"v2"
        assert after == before
        assert zk.get_children("/keep") == ["child"]
        with pytest.raises(NodeExistsError):
            zk.create("/keep")
        zk.stop()
    finally:
        server.stop()
