"""Sessions: timeout negotiation, expiry, closeSession, reconnect, passwords.

The module server runs with tickTime=200, so negotiated session timeouts are
clamped to [2*tick, 20*tick] = [400, 4000] ms.
"""

import threading

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.serialization import Connect
from kazoo.protocol.states import EventType

import rawzk
from conftest import start_server
from rawzk import RawClient, wait_closed, wait_until

TICK = 200
SERVER_SETTINGS = {"tickTime": TICK}


def expect_session_rejected(hostport, session_id, passwd):
    """A reconnect for a dead/foreign session: timeout 0, id 0, zero password, close."""
    c = RawClient(hostport, timeout_ms=4000, session_id=session_id, passwd=passwd)
    try:
        r = c.connect_response
        assert r.timeout == 0
        assert r.session_id == 0
        assert r.passwd == b"\x00" * 16
        closed, _ = wait_closed(c.sock, 5)
        assert closed
    finally:
        c.close()


@pytest.mark.parametrize(
    "requested, negotiated",
    [
        (1, 2 * TICK),
        (0, 2 * TICK),
        (-5, 2 * TICK),
        (2 * TICK, 2 * TICK),
        (1000, 1000),
        (3999, 3999),
        (20 * TICK, 20 * TICK),
        (100000, 20 * TICK),
    ],
)
def test_timeout_negotiation_raw(server, requested, negotiated):
    c = RawClient(server.hostport, timeout_ms=requested)
    try:
        assert c.negotiated_timeout == negotiated
        assert c.session_id != 0
        assert len(c.passwd) == 16
        assert c.connect_response.protocol_version == 0
        assert c.connect_response.read_only is False
    finally:
        c.close_session()


def _negotiated_via_kazoo(hostport, timeout_s):
    zk = KazooClient(hosts=hostport, timeout=timeout_s)
    seen = []
    orig = zk._connection._invoke

    def spy(timeout, request, xid=None):
        result = orig(timeout, request, xid)
        if isinstance(request, Connect):
            seen.append(result[0].time_out)
        return result

    zk._connection._invoke = spy
    zk.start()
    try:
        return seen[0]
    finally:
        zk.stop()
        zk.close()


def test_timeout_negotiation_kazoo(server):
    assert _negotiated_via_kazoo(server.hostport, 0.1) == 2 * TICK
    assert _negotiated_via_kazoo(server.hostport, 2.0) == 2000
    assert _negotiated_via_kazoo(server.hostport, 60.0) == 20 * TICK


def test_min_max_session_timeout_settings():
    srv = start_server({"tickTime": TICK, "minSessionTimeout": 1000, "maxSessionTimeout": 2500})
    try:
        for requested, negotiated in ((500, 1000), (1500, 1500), (10000, 2500)):
            c = RawClient(srv.hostport, timeout_ms=requested)
            assert c.negotiated_timeout == negotiated
            c.close_session()
    finally:
        srv.stop()


def test_session_expiry_removes_ephemerals_and_fires_watches(server, zk):
    raw = RawClient(server.hostport, timeout_ms=2 * TICK)
    path = "/expiring-%x" % raw.session_id
    assert raw.create(path, b"x", flags=rawzk.FLAG_EPHEMERAL).err == 0
    assert zk.exists(path).ephemeralOwner == raw.session_id
    fired = []
    done = threading.Event()

    def watcher(event):
        fired.append((event.type, event.path))
        done.set()

    assert zk.exists(path, watch=watcher) is not None
    # stop heartbeating: the connection stays open but silent
    wait_until(lambda: zk.exists(path) is None, timeout=15, message="ephemeral removal on expiry")
    assert done.wait(10)
    assert fired == [(EventType.DELETED, path)]
    # the server closes the expired session's connection
    closed, _ = wait_closed(raw.sock, 10)
    assert closed
    raw.close()
    expect_session_rejected(server.hostport, raw.session_id, raw.passwd)


def test_pings_keep_session_alive(server, zk):
    raw = RawClient(server.hostport, timeout_ms=1000)
    try:
        assert raw.negotiated_timeout == 1000
        path = "/kept-%x" % raw.session_id
        assert raw.create(path, flags=rawzk.FLAG_EPHEMERAL).err == 0
        raw.drain_events(3.0)  # pings every timeout/3 for 3 session timeouts
        assert zk.exists(path) is not None
        assert raw.ping().err == 0
    finally:
        raw.close_session()
    assert zk.exists(path) is None


def test_ping_reply_uses_ping_xid(server):
    raw = RawClient(server.hostport, timeout_ms=4000)
    try:
        rep = raw.request(rawzk.OP_PING, b"", xid=77)
        assert rep.xid == rawzk.XID_PING
        assert rep.err == 0
    finally:
        raw.close_session()


def test_close_session_removes_ephemerals_and_fires_watches(zk, make_client, base):
    owner = make_client()
    path = owner.create(base + "/eph", ephemeral=True)
    seq = owner.create(base + "/eseq-", ephemeral=True, sequence=True)
    fired = []
    done = threading.Event()

    def watcher(event):
        fired.append((event.type, event.path))
        done.set()

    zk.exists(path, watch=watcher)
    child_events = []
    child_done = threading.Event()

    def child_watcher(event):
        child_events.append((event.type, event.path))
        child_done.set()

    zk.get_children(base, watch=child_watcher)
    owner.stop()  # sends closeSession and waits for the reply
    assert zk.exists(path) is None
    assert zk.exists(seq) is None
    assert done.wait(10)
    assert fired == [(EventType.DELETED, path)]
    assert child_done.wait(10)
    assert child_events == [(EventType.CHILD, base)]


def test_close_session_raw(server, zk):
    raw = RawClient(server.hostport, timeout_ms=4000)
    path = "/closing-%x" % raw.session_id
    assert raw.create(path, flags=rawzk.FLAG_EPHEMERAL).err == 0
    rep = raw.request(rawzk.OP_CLOSE_SESSION)
    assert rep.err == 0
    assert rep.xid == 2
    closed, _ = wait_closed(raw.sock, 5)
    assert closed
    raw.close()
    assert zk.exists(path) is None
    expect_session_rejected(server.hostport, raw.session_id, raw.passwd)


def test_reconnect_with_same_session_keeps_ephemerals(server, zk, make_client):
    raw = RawClient(server.hostport, timeout_ms=4000)
    sid, passwd = raw.session_id, raw.passwd
    path = "/reconnect-%x" % sid
    assert raw.create(path, b"mine", flags=rawzk.FLAG_EPHEMERAL).err == 0
    raw.close()  # drop the TCP connection without closeSession

    again = make_client(client_id=(sid, passwd))
    assert again.client_id[0] == sid
    data, stat = again.get(path)
    assert data == b"mine"
    assert stat.ephemeralOwner == sid
    # the session is fully usable: new ephemerals belong to it too
    again.create(path + "-2", ephemeral=True)
    assert zk.exists(path + "-2").ephemeralOwner == sid
    again.stop()
    assert zk.exists(path) is None
    assert zk.exists(path + "-2") is None


def test_second_connection_takes_over_session(server, zk):
    first = RawClient(server.hostport, timeout_ms=4000)
    try:
        path = "/takeover-%x" % first.session_id
        assert first.create(path, flags=rawzk.FLAG_EPHEMERAL).err == 0
        second = RawClient(server.hostport, timeout_ms=4000,
                           session_id=first.session_id, passwd=first.passwd)
        assert second.session_id == first.session_id
        assert second.negotiated_timeout == 4000
        # the server drops the old connection of the session
        closed, _ = wait_closed(first.sock, 5)
        assert closed
        assert second.exists(path).err == 0
        assert zk.exists(path).ephemeralOwner == first.session_id
        second.close_session()
        assert zk.exists(path) is None
    finally:
        first.close()


def test_wrong_password_is_rejected_raw(server, zk):
    owner = RawClient(server.hostport, timeout_ms=4000)
    sid, passwd = owner.session_id, owner.passwd
    path = "/guarded-%x" % sid
    assert owner.create(path, flags=rawzk.FLAG_EPHEMERAL).err == 0
    bad = bytes(b ^ 0xFF for b in passwd)
    expect_session_rejected(server.hostport, sid, bad)
    expect_session_rejected(server.hostport, sid, passwd[:8])
    # ZooKeeper 3.8 drops the session's current connection before it checks
    # the password, so the owner's socket may be gone; the session is not.
    owner.close()
    assert zk.exists(path).ephemeralOwner == sid
    again = RawClient(server.hostport, timeout_ms=4000, session_id=sid, passwd=passwd)
    assert again.session_id == sid
    assert again.negotiated_timeout == 4000
    again.close_session()
    assert zk.exists(path) is None


def test_wrong_password_kazoo_gets_new_session(server, zk, make_client):
    owner = RawClient(server.hostport, timeout_ms=4000)
    sid, passwd = owner.session_id, owner.passwd
    path = "/guarded-k-%x" % sid
    assert owner.create(path, flags=rawzk.FLAG_EPHEMERAL).err == 0
    owner.close()
    bad = bytes(b ^ 0xFF for b in passwd)
    intruder = make_client(client_id=(sid, bad))
    assert intruder.connected
    assert intruder.client_id[0] != sid
    assert intruder.exists(path).ephemeralOwner == sid
    again = RawClient(server.hostport, timeout_ms=4000, session_id=sid, passwd=passwd)
    assert again.session_id == sid
    again.close_session()
    assert zk.exists(path) is None


def test_unknown_session_id_is_rejected(server):
    expect_session_rejected(server.hostport, 0x7EADBEEF00000001, b"\x00" * 16)
