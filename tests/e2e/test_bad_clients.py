"""Misbehaving clients must not hurt a well-behaved one.

Each test runs a good kazoo client alongside the abuse and checks that it keeps
getting prompt answers and that its data stays intact: a thousand held
connections, stalled half-frames, a flood of watches from a client that then
vanishes, and frames longer than jute.maxbuffer.
"""

import re
import resource
import select
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import rawzk
from rawzk import RawClient, wait_closed, wait_until

# Unlimited connections per client IP (ZooKeeper's default is 60).
SERVER_SETTINGS = {"maxClientCnxns": "0"}

# Bound on any single answer to the good client while the abuse goes on.
PROMPT = 3.0


def raise_fd_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft != resource.RLIM_INFINITY and soft < wanted:
        pytest.skip("fd limit %d below the %d this test needs" % (soft, wanted))


class Good:
    """A well-behaved kazoo client that checks its own data on every round."""

    def __init__(self, zk, base):
        self.zk = zk
        self.path = base + "/good"
        self.value = 0
        zk.create(self.path, b"0")
        self.kids = set()

    def round(self):
        started = time.monotonic()
        data, _ = self.zk.get(self.path)
        assert data == str(self.value).encode(), "good data changed: %r" % data
        self.value += 1
        self.zk.set(self.path, str(self.value).encode())
        name = self.zk.create(self.path + "/c-", b"k", sequence=True)
        self.kids.add(name.rsplit("/", 1)[1])
        assert set(self.zk.get_children(self.path)) == self.kids
        took = time.monotonic() - started
        assert took < PROMPT, "good client waited %.1fs" % took

    def check(self):
        data, stat = self.zk.get(self.path)
        assert data == str(self.value).encode()
        assert stat.version == self.value
        assert set(self.zk.get_children(self.path)) == self.kids


def total_watches(hostport):
    out = rawzk.four_letter(hostport, b"wchs").decode("utf-8", "replace")
    m = re.search(r"Total watches:\s*(\d+)", out)
    assert m, "unexpected wchs output: %r" % out
    return int(m.group(1))


def connect_many(hostport, n, hello, deadline):
    """n connections, each sending `hello` at once (ZooKeeper drops a
    connection that sends nothing for 10 s). Opened from many threads: a
    server's short accept backlog makes some connects wait on SYN retries."""
    host, port = rawzk.parse_hostport(hostport)

    def one(_):
        s = socket.create_connection((host, port), timeout=max(1.0, deadline - time.monotonic()))
        s.sendall(hello)
        return s

    socks, errors = [], []
    with ThreadPoolExecutor(max_workers=100) as pool:
        for f in [pool.submit(one, i) for i in range(n)]:
            try:
                socks.append(f.result())
            except OSError as e:
                errors.append(e)
    if errors:
        for s in socks:
            s.close()
        raise AssertionError("%d of %d connects failed: %r" % (len(errors), n, errors[0]))
    return socks


def read_frames(socks, deadline):
    """One length-prefixed frame from each socket, read concurrently."""
    bufs = {s.fileno(): bytearray() for s in socks}
    by_fd = {s.fileno(): s for s in socks}
    done = {}
    poller = select.poll()
    for s in socks:
        s.setblocking(False)
        poller.register(s, select.POLLIN)
    while len(done) < len(socks):
        left = deadline - time.monotonic()
        assert left > 0, "only %d of %d connections answered" % (len(done), len(socks))
        for fd, _ in poller.poll(int(left * 1000)):
            try:
                chunk = by_fd[fd].recv(65536)
            except BlockingIOError:
                continue
            assert chunk, "a connection was closed before its handshake answer"
            buf = bufs[fd]
            buf.extend(chunk)
            if len(buf) >= 4:
                (n,) = struct.unpack("!i", bytes(buf[:4]))
                if len(buf) >= 4 + n:
                    done[fd] = bytes(buf[4:4 + n])
                    poller.unregister(fd)
    for s in socks:
        s.setblocking(True)
    return [done[s.fileno()] for s in socks]


def test_thousand_held_connections(server, zk, base):
    n = 1000
    raise_fd_limit(n + 200)
    good = Good(zk, base)
    good.round()
    deadline = time.monotonic() + 15
    hello = rawzk.frame(rawzk.connect_request(timeout_ms=30000))
    socks = connect_many(server.hostport, n, hello, deadline)
    try:
        good.round()
        replies = read_frames(socks, deadline)
        sessions = set()
        for payload in replies:
            resp = rawzk.parse_connect_response(payload)
            assert resp.timeout > 0 and resp.session_id != 0
            sessions.add(resp.session_id)
        assert len(sessions) == n
        # Held: all stay open while the good client works.
        for _ in range(5):
            good.round()
        # poll, not select: 1,000 sockets put descriptors past select's 1,024.
        poller = select.poll()
        for s in socks:
            poller.register(s, select.POLLIN)
        r = poller.poll(0)
        assert not r, "%d held connections were closed or sent something" % len(r)
    finally:
        for s in socks:
            s.close()
    good.round()
    good.check()


def test_half_frames_stall(server, zk, base):
    good = Good(zk, base)
    hello = rawzk.frame(rawzk.connect_request(timeout_ms=30000))
    host, port = rawzk.parse_hostport(server.hostport)
    stalled = []
    sessions = []
    try:
        # 100 connections stall halfway through their connect request...
        for _ in range(100):
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(hello[: len(hello) // 2])
            stalled.append(s)
        # ...and 100 sessions stall halfway through a create.
        body = rawzk.create_body(base + "/never", b"v" * 200)
        req = rawzk.frame(rawzk.p_int(1) + rawzk.p_int(rawzk.OP_CREATE) + body)
        for _ in range(100):
            c = RawClient(server.hostport, timeout_ms=30000)
            sessions.append(c)
            c.send_raw(req[: len(req) // 2])
        started = time.monotonic()
        while time.monotonic() - started < 3:
            good.round()
        # Nobody's half frame was taken for a request.
        assert not zk.exists(base + "/never")
        # A stalled session still works once it finishes its frame.
        c = sessions[0]
        c.send_raw(req[len(req) // 2:])
        rep = c.read_reply()
        assert (rep.xid, rep.err) == (1, 0)
        assert zk.exists(base + "/never")
    finally:
        for s in stalled:
            s.close()
        for c in sessions:
            c.sock.close()
    good.round()
    good.check()


def test_watch_flood_then_disconnect(server, zk, base):
    good = Good(zk, base)
    baseline = total_watches(server.hostport)
    n, batch = 20000, 1000
    flood = RawClient(server.hostport, timeout_ms=30000)
    try:
        xid = 0
        for start in range(0, n, batch):
            frames = []
            for i in range(start, start + batch):
                xid += 1
                body = rawzk.path_watch_body("%s/w%05d" % (base, i), watch=True)
                frames.append(rawzk.frame(rawzk.p_int(xid) + rawzk.p_int(rawzk.OP_EXISTS) + body))
            flood.send_raw(b"".join(frames))
            for i in range(batch):
                rep = flood.read_reply()
                assert rep.err == rawzk.ERR_NO_NODE, rep
            if start % 5000 == 0:
                good.round()
        assert total_watches(server.hostport) >= baseline + n
        good.round()
    finally:
        # Vanish without closing the session: the connection's watches go with it.
        flood.sock.close()
    wait_until(lambda: total_watches(server.hostport) <= baseline, timeout=10,
               message="watch count back to baseline %d" % baseline)
    # The flooded paths fire nothing at the good client, and it still works.
    zk.create(base + "/w00000", b"x")
    good.round()
    good.check()


def test_oversized_frames_close_the_connection(server, zk, base):
    good = Good(zk, base)
    jute_max = int(server.settings.get("jute.maxbuffer", 0xFFFFF))
    host, port = rawzk.parse_hostport(server.hostport)
    victims = []
    try:
        for claim in (jute_max + 1024, 64 << 20, 0x7FFFFFFF):
            # Before the handshake: an oversized connect request.
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(struct.pack("!i", claim) + b"\x00" * 64)
            victims.append(s)
            # In a session: an oversized request.
            c = RawClient(server.hostport, timeout_ms=30000)
            c.send_raw(struct.pack("!iii", claim, 1, rawzk.OP_SET_DATA) + b"\x00" * 64)
            victims.append(c.sock)
        # A negative length is refused too.
        c = RawClient(server.hostport, timeout_ms=30000)
        c.send_raw(struct.pack("!i", -5) + b"\x00" * 16)
        victims.append(c.sock)
        for i, s in enumerate(victims):
            closed, _ = wait_closed(s, timeout=5)
            assert closed, "connection %d with an oversized frame was left open" % i
            good.round()
    finally:
        for s in victims:
            s.close()
    good.round()
    good.check()
