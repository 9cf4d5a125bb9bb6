"""Minimal raw ZooKeeper wire-protocol (jute) helpers for the e2e suite.

Nothing here depends on kazoo: these helpers speak the client protocol
directly over a TCP socket so tests can send malformed input, opcodes that
kazoo does not implement, and control heartbeating precisely.

Framing: every message (both directions) is a 4-byte big-endian signed length
followed by that many bytes.  The first client frame is a ConnectRequest, the
first server frame a ConnectResponse.  After that a request is
RequestHeader(xid:int, type:int) + body and a reply is
ReplyHeader(xid:int, zxid:long, err:int) + body.  Watch notifications arrive
with xid == -1, ping replies with xid == -2, auth replies with xid == -4.
"""

import socket
import struct
import time
from collections import namedtuple

# ---------------------------------------------------------------- opcodes
OP_NOTIFICATION = 0
OP_CREATE = 1
OP_DELETE = 2
OP_EXISTS = 3
OP_GET_DATA = 4
OP_SET_DATA = 5
OP_GET_ACL = 6
OP_SET_ACL = 7
OP_GET_CHILDREN = 8
OP_SYNC = 9
OP_PING = 11
OP_GET_CHILDREN2 = 12
OP_CHECK = 13
OP_MULTI = 14
OP_CREATE2 = 15
OP_RECONFIG = 16
OP_CHECK_WATCHES = 17
OP_REMOVE_WATCHES = 18
OP_CREATE_CONTAINER = 19
OP_DELETE_CONTAINER = 20
OP_CREATE_TTL = 21
OP_MULTI_READ = 22
OP_AUTH = 100
OP_SET_WATCHES = 101
OP_SASL = 102
OP_GET_EPHEMERALS = 103
OP_GET_ALL_CHILDREN_NUMBER = 104
OP_SET_WATCHES2 = 105
OP_ADD_WATCH = 106
OP_WHO_AM_I = 107
OP_CREATE_SESSION = -10
OP_CLOSE_SESSION = -11

XID_NOTIFICATION = -1
XID_PING = -2
XID_AUTH = -4
XID_SET_WATCHES = -8

# CreateMode flags
FLAG_PERSISTENT = 0
FLAG_EPHEMERAL = 1
FLAG_PERSISTENT_SEQUENTIAL = 2
FLAG_EPHEMERAL_SEQUENTIAL = 3
FLAG_CONTAINER = 4
FLAG_PERSISTENT_WITH_TTL = 5
FLAG_PERSISTENT_SEQUENTIAL_WITH_TTL = 6

# AddWatch modes
ADD_WATCH_PERSISTENT = 0
ADD_WATCH_PERSISTENT_RECURSIVE = 1

# WatcherType for checkWatches / removeWatches
WATCHER_CHILDREN = 1
WATCHER_DATA = 2
WATCHER_ANY = 3

# Watch event types
EVENT_NONE = -1
EVENT_NODE_CREATED = 1
EVENT_NODE_DELETED = 2
EVENT_NODE_DATA_CHANGED = 3
EVENT_NODE_CHILDREN_CHANGED = 4

# Error codes (KeeperException.Code)
OK = 0
ERR_SYSTEM = -1
ERR_RUNTIME_INCONSISTENCY = -2
ERR_MARSHALLING = -5
ERR_UNIMPLEMENTED = -6
ERR_BAD_ARGUMENTS = -8
ERR_NO_NODE = -101
ERR_NO_AUTH = -102
ERR_BAD_VERSION = -103
ERR_NO_CHILDREN_FOR_EPHEMERALS = -108
ERR_NODE_EXISTS = -110
ERR_NOT_EMPTY = -111
ERR_SESSION_EXPIRED = -112
ERR_INVALID_ACL = -114
ERR_AUTH_FAILED = -115
ERR_NO_WATCHER = -121

PERM_READ = 1
PERM_WRITE = 2
PERM_CREATE = 4
PERM_DELETE = 8
PERM_ADMIN = 16
PERM_ALL = 31

OPEN_ACL = [(PERM_ALL, "world", "anyone")]

Stat = namedtuple(
    "Stat",
    "czxid mzxid ctime mtime version cversion aversion ephemeralOwner "
    "dataLength numChildren pzxid",
)
STAT_STRUCT = struct.Struct("!qqqqiiiqiiq")
ConnectResponse = namedtuple(
    "ConnectResponse", "protocol_version timeout session_id passwd read_only"
)
Reply = namedtuple("Reply", "xid zxid err body")
WatchEvent = namedtuple("WatchEvent", "type state path")


# ------------------------------------------------------------ jute encoding
def p_int(v):
    return struct.pack("!i", v)


def p_long(v):
    return struct.pack("!q", v)


def p_bool(v):
    return b"\x01" if v else b"\x00"


def p_buffer(b):
    if b is None:
        return p_int(-1)
    return p_int(len(b)) + bytes(b)


def p_string(s):
    if s is None:
        return p_int(-1)
    return p_buffer(s.encode("utf-8"))


def p_acls(acls):
    out = p_int(len(acls))
    for perms, scheme, ident in acls:
        out += p_int(perms) + p_string(scheme) + p_string(ident)
    return out


def frame(payload):
    return p_int(len(payload)) + payload


class Reader:
    """Sequential jute decoder over a bytes object."""

    def __init__(self, data, offset=0):
        self.data = data
        self.off = offset

    def int(self):
        (v,) = struct.unpack_from("!i", self.data, self.off)
        self.off += 4
        return v

    def long(self):
        (v,) = struct.unpack_from("!q", self.data, self.off)
        self.off += 8
        return v

    def bool(self):
        v = self.data[self.off]
        self.off += 1
        return v != 0

    def buffer(self):
        n = self.int()
        if n < 0:
            return None
        v = self.data[self.off : self.off + n]
        if len(v) != n:
            raise ValueError("truncated buffer")
        self.off += n
        return v

    def string(self):
        b = self.buffer()
        return None if b is None else b.decode("utf-8")

    def stat(self):
        v = Stat._make(STAT_STRUCT.unpack_from(self.data, self.off))
        self.off += STAT_STRUCT.size
        return v

    def acls(self):
        n = self.int()
        return [(self.int(), self.string(), self.string()) for _ in range(n)]

    def strings(self):
        n = self.int()
        return [self.string() for _ in range(n)]

    def remaining(self):
        return len(self.data) - self.off


# ------------------------------------------------------------ request bodies
def connect_request(
    timeout_ms=30000, session_id=0, passwd=b"\x00" * 16, last_zxid=0,
    read_only=False, protocol_version=0,
):
    return (
        p_int(protocol_version)
        + p_long(last_zxid)
        + p_int(timeout_ms)
        + p_long(session_id)
        + p_buffer(passwd)
        + p_bool(read_only)
    )


def parse_connect_response(payload):
    r = Reader(payload)
    proto = r.int()
    timeout = r.int()
    sid = r.long()
    passwd = r.buffer()
    ro = r.bool() if r.remaining() > 0 else False
    return ConnectResponse(proto, timeout, sid, passwd, ro)


def create_body(path, data=b"", acls=OPEN_ACL, flags=0):
    return p_string(path) + p_buffer(data) + p_acls(acls) + p_int(flags)


def create_ttl_body(path, data=b"", acls=OPEN_ACL, flags=FLAG_PERSISTENT_WITH_TTL, ttl=1000):
    return create_body(path, data, acls, flags) + p_long(ttl)


def path_watch_body(path, watch=False):
    return p_string(path) + p_bool(watch)


def delete_body(path, version=-1):
    return p_string(path) + p_int(version)


def set_data_body(path, data, version=-1):
    return p_string(path) + p_buffer(data) + p_int(version)


def add_watch_body(path, mode):
    return p_string(path) + p_int(mode)


def watches_body(path, watcher_type):
    """Body of CheckWatchesRequest / RemoveWatchesRequest."""
    return p_string(path) + p_int(watcher_type)


def auth_body(scheme, auth, auth_type=0):
    return p_int(auth_type) + p_string(scheme) + p_buffer(auth)


# ------------------------------------------------------------ socket helpers
def parse_hostport(hostport):
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionClosed("peer closed after %d of %d bytes" % (len(buf), n))
        buf.extend(chunk)
    return bytes(buf)


class ConnectionClosed(Exception):
    pass


def read_frame(sock):
    (n,) = struct.unpack("!i", recv_exact(sock, 4))
    return recv_exact(sock, n)


def four_letter(hostport, cmd, timeout=5.0):
    """Send a four-letter word on a fresh connection; return all bytes until close."""
    host, port = parse_hostport(hostport)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(cmd if isinstance(cmd, bytes) else cmd.encode())
        out = bytearray()
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out.extend(chunk)
    return bytes(out)


def wait_closed(sock, timeout=5.0):
    """Read and discard until the peer closes; True if it closed within timeout.

    Returns the bytes received before the close as second element.
    """
    deadline = time.monotonic() + timeout
    got = bytearray()
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return False, bytes(got)
        except (ConnectionResetError, BrokenPipeError):
            return True, bytes(got)
        if not chunk:
            return True, bytes(got)
        got.extend(chunk)
    return False, bytes(got)


class RawClient:
    """Synchronous single-connection ZooKeeper client over a raw socket.

    Watch notifications received while waiting for replies are queued in
    ``self.events``.  Nothing is sent unless a method is called, so a test can
    let the session expire simply by not calling anything.
    """

    def __init__(self, hostport, timeout_ms=30000, session_id=0,
                 passwd=b"\x00" * 16, last_zxid=0, read_only=False,
                 sock_timeout=10.0):
        host, port = parse_hostport(hostport)
        self.sock = socket.create_connection((host, port), timeout=sock_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.xid = 0
        self.events = []
        self.last_send = time.monotonic()
        self.sock.sendall(frame(connect_request(
            timeout_ms, session_id, passwd, last_zxid, read_only)))
        self.connect_response = parse_connect_response(read_frame(self.sock))
        self.session_id = self.connect_response.session_id
        self.passwd = self.connect_response.passwd
        self.negotiated_timeout = self.connect_response.timeout

    # -- low level
    def send_raw(self, data):
        self.sock.sendall(data)
        self.last_send = time.monotonic()

    def send(self, opcode, body=b"", xid=None):
        if xid is None:
            self.xid += 1
            xid = self.xid
        self.send_raw(frame(p_int(xid) + p_int(opcode) + body))
        return xid

    def read_reply(self):
        """Read one frame and decode the reply header."""
        data = read_frame(self.sock)
        r = Reader(data)
        xid, zxid, err = r.int(), r.long(), r.int()
        return Reply(xid, zxid, err, data[r.off:])

    def _handle_event(self, reply):
        r = Reader(reply.body)
        self.events.append(WatchEvent(r.int(), r.int(), r.string()))

    def request(self, opcode, body=b"", xid=None):
        """Send a request and wait for the reply with the matching xid."""
        xid = self.send(opcode, body, xid)
        while True:
            rep = self.read_reply()
            if rep.xid == XID_NOTIFICATION:
                self._handle_event(rep)
                continue
            if rep.xid == XID_PING and opcode == OP_PING:
                # ZooKeeper always answers a ping with xid -2, whatever xid it carried.
                return rep
            if rep.xid == XID_PING:
                continue
            if rep.xid != xid:
                raise AssertionError("unexpected reply xid %r (wanted %r)" % (rep.xid, xid))
            return rep

    def ping(self):
        return self.request(OP_PING, b"", xid=XID_PING)

    def wait_events(self, count, timeout=10.0):
        """Wait until at least ``count`` events are queued (pinging meanwhile)."""
        deadline = time.monotonic() + timeout
        ping_every = max(0.1, self.negotiated_timeout / 3000.0)
        while len(self.events) < count and time.monotonic() < deadline:
            if time.monotonic() - self.last_send > ping_every:
                self.send(OP_PING, b"", xid=XID_PING)
            self.sock.settimeout(min(ping_every, max(0.01, deadline - time.monotonic())))
            try:
                rep = self.read_reply()
            except socket.timeout:
                continue
            finally:
                self.sock.settimeout(10.0)
            if rep.xid == XID_NOTIFICATION:
                self._handle_event(rep)
        return list(self.events)

    def drain_events(self, duration=0.5):
        """Collect events arriving within ``duration`` seconds (pings too)."""
        end = time.monotonic() + duration
        while time.monotonic() < end:
            self.wait_events(len(self.events) + 1, timeout=end - time.monotonic())
        return list(self.events)

    # -- conveniences
    def create(self, path, data=b"", acls=OPEN_ACL, flags=0):
        return self.request(OP_CREATE, create_body(path, data, acls, flags))

    def create2(self, path, data=b"", acls=OPEN_ACL, flags=0):
        return self.request(OP_CREATE2, create_body(path, data, acls, flags))

    def create_ttl(self, path, data=b"", ttl=1000, flags=FLAG_PERSISTENT_WITH_TTL, acls=OPEN_ACL):
        return self.request(OP_CREATE_TTL, create_ttl_body(path, data, acls, flags, ttl))

    def get_data(self, path, watch=False):
        return self.request(OP_GET_DATA, path_watch_body(path, watch))

    def exists(self, path, watch=False):
        return self.request(OP_EXISTS, path_watch_body(path, watch))

    def set_data(self, path, data, version=-1):
        return self.request(OP_SET_DATA, set_data_body(path, data, version))

    def delete(self, path, version=-1):
        return self.request(OP_DELETE, delete_body(path, version))

    def get_children(self, path, watch=False):
        return self.request(OP_GET_CHILDREN, path_watch_body(path, watch))

    def add_watch(self, path, mode):
        return self.request(OP_ADD_WATCH, add_watch_body(path, mode))

    def check_watches(self, path, watcher_type):
        return self.request(OP_CHECK_WATCHES, watches_body(path, watcher_type))

    def remove_watches(self, path, watcher_type):
        return self.request(OP_REMOVE_WATCHES, watches_body(path, watcher_type))

    def add_auth(self, scheme, auth):
        return self.request(OP_AUTH, auth_body(scheme, auth), xid=XID_AUTH)

    def close_session(self):
        try:
            return self.request(OP_CLOSE_SESSION)
        finally:
            self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_until(predicate, timeout=10.0, interval=0.05, message="condition"):
    """Poll ``predicate`` until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, message))
        time.sleep(interval)
