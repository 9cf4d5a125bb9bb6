"""ZooKeeper's throttles under their own keys: the connection throttle
(zookeeper.connection_throttle_*, a token bucket checked on every connect
request) and the request throttler (zookeeper.request_throttle_max_requests,
zookeeper.throttled_op_wait_time), with their mntr counters."""

import socket

import pytest

import rawzk
from conftest import ENSEMBLE, start_server
from rawzk import OP_CREATE, RawClient, create_body, four_letter

THROTTLED_OP = -127
NO_NODE = -101


def pipelined_creates(prefix, n):
    """n create requests (xids 1..n) for prefix-000, prefix-001, ... in one write."""
    return b"".join(rawzk.frame(rawzk.p_int(i + 1) + rawzk.p_int(OP_CREATE) + create_body("%s-%03d" % (prefix, i))) for i in range(n))


def mntr(server):
    lines = four_letter(server.hostport, "mntr").decode().splitlines()
    return dict(line.split("\t", 1) for line in lines if "\t" in line)


def test_connections_past_the_bucket_are_refused_and_counted():
    # Three tokens, refilled one per 10 minutes: the harness's readiness
    # handshake takes one, so at most two more sessions get in.
    srv = start_server({
        "zookeeper.connection_throttle_tokens": "3",
        "zookeeper.connection_throttle_fill_time": "600000",
        "zookeeper.connection_throttle_fill_count": "1",
    })
    clients, refused = [], 0
    try:
        for _ in range(6):
            try:
                clients.append(RawClient(srv.hostport, sock_timeout=5.0))
            except (rawzk.ConnectionClosed, ConnectionError, socket.timeout):
                refused += 1
        assert 1 <= len(clients) <= 2, (len(clients), refused)
        assert refused == 6 - len(clients)
        # Four-letter words need no session and are not throttled.
        assert int(mntr(srv)["zk_connection_rejected"]) == refused
        # Admitted sessions keep working.
        assert clients[0].ping().err == 0
    finally:
        for c in clients:
            c.sock.close()
        srv.stop()


@pytest.mark.skipif(ENSEMBLE > 1, reason="one member's throttler: its counters are read on the member the client uses")
def test_requests_that_waited_too_long_are_answered_throttled_in_order():
    # One request in process at a time; one that waited over 1 ms is ThrottledOp.
    srv = start_server({
        "zookeeper.request_throttle_max_requests": "1",
        "zookeeper.throttled_op_wait_time": "1",
        "zookeeper.request_throttle_stall_time": "5",
    })
    try:
        c = RawClient(srv.hostport)
        n = 200
        c.send_raw(pipelined_creates("/thr", n))
        replies = [c.read_reply() for _ in range(n)]
        assert [r.xid for r in replies] == list(range(1, n + 1))
        codes = [r.err for r in replies]
        assert set(codes) <= {0, THROTTLED_OP}, set(codes)
        throttled = codes.count(THROTTLED_OP)
        assert throttled >= 1 and codes.count(0) >= 1, codes
        # A throttled create did nothing; an answered one made its node.
        c2 = RawClient(srv.hostport)
        for i, code in enumerate(codes):
            rep = c2.request(rawzk.OP_EXISTS, rawzk.path_watch_body("/thr-%03d" % i))
            while rep.err == THROTTLED_OP:  # a read that waited over 1 ms is throttled too
                rep = c2.request(rawzk.OP_EXISTS, rawzk.path_watch_body("/thr-%03d" % i))
            assert rep.err == (0 if code == 0 else NO_NODE), (i, code, rep.err)
        assert int(mntr(srv)["zk_throttled_ops"]) >= throttled
        c.sock.close()
        c2.sock.close()
    finally:
        srv.stop()


def test_a_throttler_without_wait_limit_serves_everything():
    srv = start_server({"zookeeper.request_throttle_max_requests": "2"})
    try:
        c = RawClient(srv.hostport)
        n = 100
        c.send_raw(pipelined_creates("/all", n))
        replies = [c.read_reply() for _ in range(n)]
        assert [(r.xid, r.err) for r in replies] == [(i + 1, 0) for i in range(n)]
        assert int(mntr(srv)["zk_throttled_ops"]) == 0
        c.sock.close()
    finally:
        srv.stop()
