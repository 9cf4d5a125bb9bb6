"""Read-only mode (readonlymode.enabled): a member cut off from its quorum
serves clients that allow read-only, refuses writes with NotReadOnly, says
"ro" to isro, and turns read-write again when the quorum returns. Runs a
3-member ensemble of the selected target (Warden or ZooKeeper)."""

import signal
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NotReadOnlyCallError
from kazoo.protocol.states import KeeperState

from conftest import Ensemble
from rawzk import four_letter, wait_until

# As in ZooKeeper 3.8, a read-only server creates sessions only as local
# sessions; without localSessionsEnabled it refuses them (tested below).
SETTINGS = {"readonlymode.enabled": "true", "localSessionsEnabled": "true", "tickTime": "500"}


@pytest.fixture
def ensemble():
    e = Ensemble(SETTINGS, size=3).start()
    yield e
    e.stop()


def isro(member):
    try:
        return four_letter(member.hostport, b"isro", timeout=2.0).decode()
    except OSError:
        return ""


def test_cut_off_member_serves_reads_refuses_writes_and_recovers(ensemble):
    lone, others = ensemble.members[0], ensemble.members[1:]
    zk = KazooClient(hosts=lone.hostport, timeout=10)
    zk.start(timeout=15)
    zk.create("/ro-data", b"before")
    zk.stop()
    zk.close()
    assert isro(lone) == "rw"

    for m in others:
        m.kill(signal.SIGKILL)
    assert wait_until(lambda: isro(lone) == "ro", timeout=30), "the lone member never went read-only: %r" % isro(lone)
    srvr = four_letter(lone.hostport, b"srvr").decode()
    assert "READ-ONLY mode; serving only read-only clients" in srvr

    # A client that does not allow read-only is refused.
    rw_only = KazooClient(hosts=lone.hostport, timeout=4, connection_retry={"max_tries": 1})
    with pytest.raises(Exception):
        rw_only.start(timeout=4)
    rw_only.stop()
    rw_only.close()

    ro = KazooClient(hosts=lone.hostport, read_only=True, timeout=10)
    ro.start(timeout=15)
    try:
        assert ro.client_state == KeeperState.CONNECTED_RO
        assert ro.get("/ro-data")[0] == b"before"
        assert "ro-data" in ro.get_children("/")
        with pytest.raises(NotReadOnlyCallError):
            ro.create("/ro-write", b"x")
        with pytest.raises(NotReadOnlyCallError):
            ro.set("/ro-data", b"after")

        # The quorum returns: the member turns read-write and the client,
        # moved by a reconnect, can write again.
        for m in others:
            m.launch()
        assert wait_until(lambda: isro(lone) == "rw", timeout=60), "still %r" % isro(lone)

        def can_write():
            try:
                ro.create("/ro-after", b"y")
                return True
            except Exception:
                return False

        assert wait_until(can_write, timeout=60), "no write after the quorum returned"
        assert ro.get("/ro-data")[0] == b"before"
    finally:
        ro.stop()
        ro.close()


def test_without_local_sessions_a_new_read_only_session_is_refused_with_not_read_only():
    e = Ensemble({"readonlymode.enabled": "true", "tickTime": "500"}, size=3).start()
    try:
        lone = e.members[0]
        for m in e.members[1:]:
            m.kill(signal.SIGKILL)
        assert wait_until(lambda: isro(lone) == "ro", timeout=30)
        import socket
        import rawzk
        s = socket.create_connection((lone.host, lone.port), timeout=5)
        try:
            s.sendall(rawzk.frame(rawzk.connect_request(30000, read_only=True)))
            reply = rawzk.read_frame(s)
        finally:
            s.close()
        # A reply header (xid 0, zxid, err), not a ConnectResponse.
        assert len(reply) == 16
        assert int.from_bytes(reply[12:16], "big", signed=True) == -119
    finally:
        e.stop()
