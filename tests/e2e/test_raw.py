"""Bad input over raw sockets, wire-level details, and four-letter words."""

import re
import socket

import pytest

from conftest import ENSEMBLE

# Clients use member 1 of an ensemble: a follower (the highest id leads).
EXPECTED_MODE = "standalone" if ENSEMBLE == 1 else "follower"

import rawzk
from conftest import start_server
from rawzk import RawClient, four_letter, frame, p_int, wait_closed

DEFAULT_MAX_BUFFER = 1024 * 1024


def connect(hostport):
    host, port = rawzk.parse_hostport(hostport)
    s = socket.create_connection((host, port), timeout=10)
    return s


def assert_server_healthy(zk, hostport, path=None, data=None):
    """The server still serves kazoo (on its existing session) and 4lw."""
    assert four_letter(hostport, b"ruok") == b"imok"
    if path is not None:
        assert zk.get(path)[0] == data
    probe = zk.create("/healthy-", b"ok", sequence=True, ephemeral=True)
    assert zk.get(probe)[0] == b"ok"
    zk.delete(probe)


@pytest.fixture
def keep(zk, base):
    path = zk.create(base + "/keep", b"precious")
    return path


# ------------------------------------------------------------ oversized frames


def test_oversized_frame_after_handshake_closes_connection(server, zk, keep):
    sid_before = zk.client_id[0]
    raw = RawClient(server.hostport, timeout_ms=30000)
    try:
        raw.send_raw(p_int(DEFAULT_MAX_BUFFER + 1) + b"\x00" * 64)
        closed, got = wait_closed(raw.sock, 10)
        assert closed
        assert got == b""
    finally:
        raw.close()
    assert_server_healthy(zk, server.hostport, keep, b"precious")
    assert zk.client_id[0] == sid_before


def test_oversized_first_frame_closes_connection(server, zk, keep):
    s = connect(server.hostport)
    try:
        s.sendall(p_int(DEFAULT_MAX_BUFFER + 1) + b"\x00" * 64)
        closed, got = wait_closed(s, 10)
        assert closed
        assert got == b""
    finally:
        s.close()
    assert_server_healthy(zk, server.hostport, keep, b"precious")


def test_negative_length_closes_connection(server, zk, keep):
    raw = RawClient(server.hostport, timeout_ms=30000)
    try:
        raw.send_raw(p_int(-1) + b"\x00" * 16)
        closed, _ = wait_closed(raw.sock, 10)
        assert closed
    finally:
        raw.close()
    assert_server_healthy(zk, server.hostport, keep, b"precious")


def test_large_request_under_default_limit_is_accepted(zk, base):
    blob = b"\xab" * 1_000_000
    zk.create(base + "/big", blob)
    assert zk.get(base + "/big")[0] == blob


def test_jute_maxbuffer_setting():
    from kazoo.client import KazooClient

    srv = start_server({"jute.maxbuffer": 65536})
    zk = KazooClient(hosts=srv.hostport)
    try:
        zk.start()
        zk.create("/keep", b"precious")
        raw = RawClient(srv.hostport, timeout_ms=30000)
        # a request whose frame fits is fine
        rep = raw.create("/fits", b"x" * 60000)
        assert rep.err == 0
        # a frame longer than jute.maxbuffer closes the connection
        raw.send_raw(p_int(65537) + b"\x00" * 128)
        closed, got = wait_closed(raw.sock, 10)
        assert closed
        assert got == b""
        raw.close()
        # same for the very first frame
        s = connect(srv.hostport)
        s.sendall(p_int(70000) + b"\x00" * 128)
        assert wait_closed(s, 10)[0]
        s.close()
        assert_server_healthy(zk, srv.hostport, "/keep", b"precious")
        assert len(zk.get("/fits")[0]) == 60000
    finally:
        zk.stop()
        zk.close()
        srv.stop()


# ------------------------------------------------------------ garbage


@pytest.mark.parametrize(
    "payload",
    [
        frame(b"\xff\xff\xff"),                  # too short for a ConnectRequest
        frame(b"hello"),
        frame(b""),                              # empty frame
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",    # length prefix "GET " is huge
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32,  # TLS ClientHello
    ],
    ids=["short", "hello", "empty", "http", "tls"],
)
def test_garbage_handshake_closes_connection(server, zk, keep, payload):
    s = connect(server.hostport)
    try:
        s.sendall(payload)
        closed, got = wait_closed(s, 10)
        assert closed
        assert got == b""
    finally:
        s.close()
    assert_server_healthy(zk, server.hostport, keep, b"precious")


def test_truncated_frame_then_close(server, zk, keep):
    s = connect(server.hostport)
    s.sendall(p_int(200) + b"\x00" * 20)
    s.close()
    # same after a valid handshake: half a request, then the client vanishes
    raw = RawClient(server.hostport, timeout_ms=30000)
    try:
        raw.send_raw(p_int(100) + p_int(1) + p_int(rawzk.OP_GET_DATA) + b"\x00\x00")
    finally:
        raw.close()
    assert_server_healthy(zk, server.hostport, keep, b"precious")


def test_handshake_with_future_zxid_is_refused(server, zk):
    far_future = (zk.last_zxid or 0) + (1 << 40)
    s = connect(server.hostport)
    try:
        s.sendall(frame(rawzk.connect_request(timeout_ms=30000, last_zxid=far_future)))
        closed, got = wait_closed(s, 10)
        assert closed
        assert got == b""
    finally:
        s.close()


def test_handshake_without_read_only_flag(server):
    s = connect(server.hostport)
    try:
        s.sendall(frame(rawzk.connect_request(timeout_ms=30000)[:-1]))
        resp = rawzk.parse_connect_response(rawzk.read_frame(s))
        assert resp.timeout == 30000
        assert resp.session_id != 0
        assert len(resp.passwd) == 16
    finally:
        s.close()


def test_read_only_request_on_standalone_gets_rw_session(server):
    raw = RawClient(server.hostport, timeout_ms=30000, read_only=True)
    try:
        assert raw.connect_response.read_only is False
        assert raw.create("/ro-req-%x" % raw.session_id, flags=rawzk.FLAG_EPHEMERAL).err == 0
    finally:
        raw.close_session()


# ------------------------------------------------------------ requests


def test_unknown_opcode(server, zk):
    raw = RawClient(server.hostport, timeout_ms=30000)
    sid, passwd = raw.session_id, raw.passwd
    try:
        path = "/unknown-op-%x" % sid
        assert raw.create(path, flags=rawzk.FLAG_EPHEMERAL).err == 0
        rep = raw.request(999, b"\x00\x01\x02")
        assert rep.xid == 2
        assert rep.err == rawzk.ERR_UNIMPLEMENTED
        assert rep.body == b""
        # ZooKeeper then closes the connection, but the session lives on
        closed, _ = wait_closed(raw.sock, 10)
        assert closed
    finally:
        raw.close()
    assert zk.exists(path).ephemeralOwner == sid
    again = RawClient(server.hostport, timeout_ms=30000, session_id=sid, passwd=passwd)
    try:
        assert again.session_id == sid
        assert again.negotiated_timeout == 30000
        assert again.exists(path).err == 0
    finally:
        again.close_session()
    assert zk.exists(path) is None


def test_malformed_request_body_is_marshalling_error(server, zk, keep):
    raw = RawClient(server.hostport, timeout_ms=30000)
    try:
        rep = raw.request(rawzk.OP_GET_DATA, b"\x00\x00")  # truncated string length
        assert rep.err == rawzk.ERR_MARSHALLING
        # the connection stays usable
        assert raw.ping().err == 0
        rep = raw.get_data(keep)
        assert rep.err == 0
        assert rawzk.Reader(rep.body).buffer() == b"precious"
    finally:
        raw.close_session()


def test_pipelined_requests_are_answered_in_order(server, zk, base):
    raw = RawClient(server.hostport, timeout_ms=30000)
    try:
        batch = b""
        expected = []
        for i in range(50):
            raw.xid += 1
            if i % 2 == 0:
                body = rawzk.create_body("%s/p%02d" % (base, i), b"%d" % i)
                batch += frame(p_int(raw.xid) + p_int(rawzk.OP_CREATE) + body)
            else:
                body = rawzk.path_watch_body("%s/p%02d" % (base, i - 1))
                batch += frame(p_int(raw.xid) + p_int(rawzk.OP_GET_DATA) + body)
            expected.append(raw.xid)
        raw.send_raw(batch)
        replies = [raw.read_reply() for _ in expected]
        assert [r.xid for r in replies] == expected
        assert all(r.err == 0 for r in replies)
        zxids = [r.zxid for r in replies]
        assert zxids == sorted(zxids)
        for i, r in enumerate(replies):
            if i % 2 == 1:
                assert rawzk.Reader(r.body).buffer() == b"%d" % (i - 1)
    finally:
        raw.close_session()


def test_pipelined_reads_around_writes_keep_request_order(server, zk, base):
    # Runs of plain reads (Warden answers them on the connection's I/O thread,
    # writing a run's replies together) between writes (the processor's): every
    # reply in request order, every read seeing the writes sent before it.
    raw = RawClient(server.hostport, timeout_ms=30000)
    try:
        path = base + "/runs"
        zk.create(path, b"0")
        batch, expected = b"", []
        for i in range(120):
            raw.xid += 1
            if i % 10 == 9:
                body = rawzk.set_data_body(path, b"%d" % (i // 10 + 1))
                batch += frame(p_int(raw.xid) + p_int(rawzk.OP_SET_DATA) + body)
                expected.append((raw.xid, None))
            else:
                batch += frame(p_int(raw.xid) + p_int(rawzk.OP_GET_DATA) + rawzk.path_watch_body(path))
                expected.append((raw.xid, b"%d" % (i // 10)))
        raw.send_raw(batch)
        replies = [raw.read_reply() for _ in expected]
        assert [r.xid for r in replies] == [x for x, _ in expected]
        assert all(r.err == 0 for r in replies)
        for r, (_, value) in zip(replies, expected):
            if value is not None:
                assert rawzk.Reader(r.body).buffer() == value
    finally:
        raw.close_session()


def test_reply_zxid_tracks_writes(server, zk, base):
    raw = RawClient(server.hostport, timeout_ms=30000)
    try:
        r1 = raw.create(base + "/z1")
        r2 = raw.create(base + "/z2")
        assert r2.zxid > r1.zxid
        stat = rawzk.Reader(raw.exists(base + "/z2").body).stat()
        assert stat.czxid == r2.zxid
        r3 = raw.get_data(base + "/z1")
        assert r3.zxid >= r2.zxid
    finally:
        raw.close_session()


def test_error_reply_has_empty_body(server, base):
    raw = RawClient(server.hostport, timeout_ms=30000)
    try:
        rep = raw.get_data(base + "/missing")
        assert rep.err == rawzk.ERR_NO_NODE
        assert rep.body == b""
        rep = raw.exists(base + "/missing")
        assert rep.err == rawzk.ERR_NO_NODE
        assert rep.body == b""
    finally:
        raw.close_session()


# ------------------------------------------------------------ four-letter words


def mntr(hostport):
    out = four_letter(hostport, b"mntr").decode()
    values = {}
    for line in out.splitlines():
        if not line:
            continue
        assert re.match(r"^zk_[^\t]+\t[^\t]*$", line), line
        key, value = line.split("\t", 1)
        values[key] = value
    return values


def srvr(hostport):
    out = four_letter(hostport, b"srvr").decode()
    values = {}
    for line in out.splitlines():
        if ": " in line:
            key, value = line.split(": ", 1)
            values[key] = value
    return out, values


def test_ruok(server):
    assert four_letter(server.hostport, b"ruok") == b"imok"


def test_isro(server):
    assert four_letter(server.hostport, b"isro") == b"rw"


def test_srvr(server):
    out, values = srvr(server.hostport)
    assert out.startswith("Zookeeper version: ")
    assert values["Mode"] == EXPECTED_MODE
    assert re.match(r"^\d+/[\d.]+/\d+$", values["Latency min/avg/max"])
    assert re.match(r"^0x[0-9a-f]+$", values["Zxid"])
    for key in ("Received", "Sent", "Connections", "Outstanding", "Node count"):
        assert values[key].isdigit(), key


def test_stat_lists_clients(server, zk):
    out = four_letter(server.hostport, b"stat").decode()
    assert out.startswith("Zookeeper version: ")
    assert "\nClients:\n" in out
    assert " /127.0.0.1:" in out
    assert "\nMode: %s\n" % EXPECTED_MODE in out
    assert re.search(r"\nNode count: \d+\n", out)


def test_conf(server):
    out = four_letter(server.hostport, b"conf").decode()
    lines = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert lines["clientPort"] == str(server.port)
    assert lines["tickTime"] == "2000"
    assert lines["minSessionTimeout"] == "4000"
    assert lines["maxSessionTimeout"] == "40000"
    assert "dataDir" in lines


def test_envi(server):
    out = four_letter(server.hostport, b"envi").decode()
    assert out.startswith("Environment:\n")
    assert re.search(r"^zookeeper\.version=3\.\d+\.\d+", out, re.M)


def test_mntr(server):
    values = mntr(server.hostport)
    assert values["zk_server_state"] == EXPECTED_MODE
    assert values["zk_version"].startswith("3.")
    for key in ("zk_znode_count", "zk_ephemerals_count", "zk_watch_count",
                "zk_num_alive_connections", "zk_outstanding_requests"):
        assert values[key].isdigit(), key


def test_mntr_latency_summaries(server, zk, base):
    """ZooKeeper's readlatency/updatelatency (AvgMinMaxPercentileCounter) and fsynctime (AvgMinMaxCounter)."""
    before = mntr(server.hostport)
    zk.create(base + "/lat", b"x")
    for _ in range(5):
        zk.get(base + "/lat")
    after = mntr(server.hostport)
    assert int(after["zk_cnt_updatelatency"]) >= int(before["zk_cnt_updatelatency"]) + 1
    assert int(after["zk_cnt_readlatency"]) >= int(before["zk_cnt_readlatency"]) + 5
    for name in ("readlatency", "updatelatency"):
        p = [int(after["zk_%s_%s" % (q, name)]) for q in ("min", "p50", "p95", "p99", "p999")]
        assert p == sorted(p), (name, p)
        assert int(after["zk_max_" + name]) >= p[-1] - 1
        assert float(after["zk_avg_" + name]) >= 0 and "." in after["zk_avg_" + name]
        assert int(after["zk_sum_" + name]) >= 0
    for key in ("zk_avg_fsynctime", "zk_min_fsynctime", "zk_max_fsynctime", "zk_cnt_fsynctime", "zk_sum_fsynctime"):
        assert key in after, key
    assert "zk_p99_fsynctime" not in after


def test_mntr_and_srvr_counts_track_the_tree(server, zk, base):
    before = mntr(server.hostport)
    _, srvr_before = srvr(server.hostport)
    zk.create(base + "/m1")
    zk.create(base + "/m2", ephemeral=True)
    zk.create(base + "/m3", ephemeral=True)
    zk.get(base + "/m1", watch=lambda e: None)
    zk.get_children(base, watch=lambda e: None)
    after = mntr(server.hostport)
    _, srvr_after = srvr(server.hostport)
    assert int(after["zk_znode_count"]) == int(before["zk_znode_count"]) + 3
    assert int(after["zk_ephemerals_count"]) == int(before["zk_ephemerals_count"]) + 2
    assert int(after["zk_watch_count"]) == int(before["zk_watch_count"]) + 2
    assert int(srvr_after["Node count"]) == int(srvr_before["Node count"]) + 3


def test_unknown_four_letter_word_closes_silently(server, zk, keep):
    assert four_letter(server.hostport, b"abcd") == b""
    assert_server_healthy(zk, server.hostport, keep, b"precious")


def test_four_letter_word_ignores_trailing_bytes(server):
    assert four_letter(server.hostport, b"ruok\n") == b"imok"
