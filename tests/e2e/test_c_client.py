"""ZooKeeper's C client (Debian's zookeeper-bin `cli_mt` and libzookeeper-mt2).

`cli_mt host:port` reads commands on stdin and prints every completion on
stderr (`[/path]: rc = 0`, `Watcher CHANGED_EVENT ... for path /p`); each
command is sent once the previous one has answered. cli_mt has no multi, so
multi goes through the same library's `zoo_multi`, called with ctypes.
The resulting tree is checked with kazoo; the tests run against either target.
"""

import ctypes
import os
import re
import subprocess
import threading
import time

import pytest

CLI_MT = "/usr/lib/zookeeper/bin/cli_mt"
LIBZK = "/usr/lib/x86_64-linux-gnu/libzookeeper_mt.so.2"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CLI_MT), reason="cli_mt is absent: apt-get install zookeeper-bin libzookeeper-mt2"
)


class CliMt:
    """One cli_mt process; its stderr is collected by a reader thread."""

    def __init__(self, hostport):
        self.proc = subprocess.Popen([CLI_MT, hostport], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.err, self.out, self.pos = "", "", 0
        self.lock = threading.Lock()
        for stream, attr in ((self.proc.stderr, "err"), (self.proc.stdout, "out")):
            threading.Thread(target=self._pump, args=(stream, attr), daemon=True).start()
        self.session = int(self.expect(r"Got a new session id: 0x([0-9a-f]+)\n").group(1), 16)

    def _pump(self, stream, attr):
        for chunk in iter(lambda: stream.read1(4096), b""):
            with self.lock:
                setattr(self, attr, getattr(self, attr) + chunk.decode("utf-8", "replace"))

    def expect(self, pattern, timeout=10.0, stream="err"):
        """Waits for `pattern` in output not yet consumed; consumes up to its end."""
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while time.time() < deadline:
            with self.lock:
                text = getattr(self, stream)
            m = rx.search(text, self.pos if stream == "err" else 0)
            if m:
                if stream == "err":
                    self.pos = m.end()
                return m
            time.sleep(0.02)
        raise AssertionError("no %r in cli_mt output:\n%s" % (pattern, getattr(self, stream)[self.pos:]))

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def run(self, line, pattern, **kw):
        self.send(line)
        return self.expect(pattern, **kw)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def cli(server):
    c = CliMt(server.hostport)
    yield c
    c.close()


def stat_block(m):
    return int(m.group("czxid"), 16), int(m.group("mzxid"), 16), int(m.group("version"), 16)


STAT = r"\tczxid=(?P<czxid>[0-9a-f]+)\n\tmtime=[^\n]*\n\tmzxid=(?P<mzxid>[0-9a-f]+)\n\tversion=(?P<version>[0-9a-f]+)\taversion=0\n\tephemeralOwner = (?P<owner>[0-9a-f]+)\n"


def test_cli_mt_create_get_watch_ls_set_sync_delete(cli, zk, base):
    p = base + "/c"
    m = cli.run("create " + p, r"Creating \[%s\] node \(mode: 0\)\n\[%s\]: rc = 0\n\tname = %s\n" % (p, p, p))
    data, st = zk.get(p)
    assert data == b"new"
    # create2 +s answers the sequential name and the new node's Stat.
    m = cli.run("create2 +s %s/s-" % p, r"\[%s/s-\]: rc = 0\n\tname = (?P<name>\S+)\n\tctime = [^\n]*\n" % p + STAT)
    assert m.group("name") == p + "/s-0000000000"
    seq = zk.exists(m.group("name"))
    assert stat_block(m) == (seq.czxid, seq.mzxid, seq.version)
    # get sets a data watch: kazoo's set fires it.
    m = cli.run("get " + p, r"%s: rc = 0\n value_len = 3\nnew\nStat:\n\tctime = [^\n]*\n" % p + STAT)
    assert stat_block(m) == (st.czxid, st.mzxid, 0)
    zk.set(p, b"changed")
    cli.expect(r"Watcher CHANGED_EVENT state = CONNECTED_STATE for path %s\n" % p)
    m = cli.run("set %s hello world" % p, r"%s: rc = 0 Stat:\n\tctime = [^\n]*\n" % p + STAT)
    data, st = zk.get(p)
    assert data == b"hello world" and stat_block(m) == (st.czxid, st.mzxid, 2)
    # ls sets a child watch; ls2 adds the parent's Stat.
    cli.run("ls " + p, r"%s: rc = 0\n\ts-0000000000\ntime = \d+ msec\n" % p)
    zk.create(p + "/k", b"")
    cli.expect(r"Watcher CHILD_EVENT state = CONNECTED_STATE for path %s\n" % p)
    m = cli.run("ls2 " + p, r"%s: rc = 0\n\t(?P<a>\S+)\n\t(?P<b>\S+)\ntime = \d+ msec\n\tctime = [^\n]*\n" % p + STAT)
    assert sorted([m.group("a"), m.group("b")]) == ["k", "s-0000000000"]
    cli.run("sync " + p, r"\[%s\]: rc = 0\n\tname = %s\n" % (p, p))
    # wexists on a missing node leaves a watch that the create fires.
    cli.run("wexists %s/later" % p, r"Error -101 for %s/later\n" % p)
    zk.create(p + "/later", b"")
    cli.expect(r"Watcher CREATED_EVENT state = CONNECTED_STATE for path %s/later\n" % p)
    # Error codes as the C client reports them.
    cli.run("create " + p, r"\[%s\]: rc = -110\n" % p)
    cli.run("delete " + p, r"%s: rc = -111\n" % p)
    cli.run("get %s/none" % p, r"%s/none: rc = -101\n" % p)
    for child in ("k", "later", "s-0000000000"):
        cli.run("delete %s/%s" % (p, child), r"%s/%s: rc = 0\n" % (p, child))
    cli.run("delete " + p, r"%s: rc = 0\n" % p)
    assert zk.get_children(base) == []


def test_cli_mt_ephemeral_and_ttl_nodes_belong_to_its_session(cli, zk, base):
    cli.send("myid")  # printf to a pipe: readable once cli_mt exits
    cli.run("create +e %s/eph" % base, r"Creating \[%s/eph\] node \(mode: 1\)\n\[%s/eph\]: rc = 0\n" % (base, base))
    assert zk.exists(base + "/eph").ephemeralOwner == cli.session
    cli.run("create +t=60000 %s/ttl" % base, r"\[%s/ttl\]: rc = 0\n" % base)
    assert zk.exists(base + "/ttl").ephemeralOwner == 0
    cli.run("quit", r"Quitting...\n")
    cli.proc.wait(timeout=10)
    assert int(cli.expect(r"session Id = ([0-9a-f]+)\n", stream="out").group(1), 16) == cli.session
    # The session closed with cli_mt: its ephemeral is gone, the TTL node stays.
    deadline = time.time() + 10
    while zk.exists(base + "/eph") is not None and time.time() < deadline:
        time.sleep(0.05)
    assert zk.exists(base + "/eph") is None
    assert zk.exists(base + "/ttl") is not None


# --- libzookeeper-mt's zoo_multi through ctypes -------------------------------


class Stat(ctypes.Structure):
    _fields_ = [(n, t) for n, t in [
        ("czxid", ctypes.c_int64), ("mzxid", ctypes.c_int64), ("ctime", ctypes.c_int64), ("mtime", ctypes.c_int64),
        ("version", ctypes.c_int32), ("cversion", ctypes.c_int32), ("aversion", ctypes.c_int32),
        ("ephemeralOwner", ctypes.c_int64), ("dataLength", ctypes.c_int32), ("numChildren", ctypes.c_int32),
        ("pzxid", ctypes.c_int64),
    ]]


class CreateOp(ctypes.Structure):
    _fields_ = [("path", ctypes.c_char_p), ("data", ctypes.c_char_p), ("datalen", ctypes.c_int), ("buf", ctypes.c_void_p),
                ("buflen", ctypes.c_int), ("acl", ctypes.c_void_p), ("flags", ctypes.c_int), ("ttl", ctypes.c_int64)]


class PathVersionOp(ctypes.Structure):
    _fields_ = [("path", ctypes.c_char_p), ("version", ctypes.c_int)]


class SetOp(ctypes.Structure):
    _fields_ = [("path", ctypes.c_char_p), ("data", ctypes.c_char_p), ("datalen", ctypes.c_int), ("version", ctypes.c_int),
                ("stat", ctypes.POINTER(Stat))]


class OpUnion(ctypes.Union):
    _fields_ = [("create_op", CreateOp), ("delete_op", PathVersionOp), ("set_op", SetOp), ("check_op", PathVersionOp)]


class ZooOp(ctypes.Structure):  # zoo_op_t
    _fields_ = [("type", ctypes.c_int), ("u", OpUnion)]


class OpResult(ctypes.Structure):  # zoo_op_result_t
    _fields_ = [("err", ctypes.c_int), ("value", ctypes.c_char_p), ("valuelen", ctypes.c_int), ("stat", ctypes.POINTER(Stat))]


WATCHER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


@pytest.fixture
def libzk(server):
    if not os.path.exists(LIBZK):
        pytest.skip("libzookeeper-mt2 is absent")
    lib = ctypes.CDLL(LIBZK)
    lib.zoo_set_debug_level(1)  # errors only
    lib.zookeeper_init.restype = ctypes.c_void_p
    lib.zookeeper_init.argtypes = [ctypes.c_char_p, WATCHER, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.zoo_state.argtypes = [ctypes.c_void_p]
    lib.zoo_multi.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ZooOp), ctypes.POINTER(OpResult)]
    lib.zookeeper_close.argtypes = [ctypes.c_void_p]
    watcher = WATCHER(lambda *a: None)
    zh = lib.zookeeper_init(server.hostport.encode(), watcher, 10000, None, None, 0)
    assert zh
    deadline = time.time() + 10
    while lib.zoo_state(zh) != 3 and time.time() < deadline:  # ZOO_CONNECTED_STATE
        time.sleep(0.02)
    assert lib.zoo_state(zh) == 3
    yield lib, zh
    lib.zookeeper_close(zh)
    del watcher


def test_libzookeeper_multi(libzk, zk, base):
    lib, zh = libzk
    acl = ctypes.addressof(ctypes.c_char.in_dll(lib, "ZOO_OPEN_ACL_UNSAFE"))
    keep = []

    def c(s):
        b = ctypes.create_string_buffer(s.encode() if isinstance(s, str) else s)
        keep.append(b)
        return b

    def multi(build):
        ops = (ZooOp * len(build))()
        results = (OpResult * len(build))()
        for i, fn in enumerate(build):
            fn(ctypes.byref(ops[i]))
        rc = lib.zoo_multi(zh, len(build), ops, results)
        return rc, [r.err for r in results]

    m = base + "/m"
    name = ctypes.create_string_buffer(256)
    set_stat = Stat()
    rc, errs = multi([
        lambda op: lib.zoo_create_op_init(op, c(m), c("top"), 3, ctypes.c_void_p(acl), 0, None, 0),
        lambda op: lib.zoo_create_op_init(op, c(m + "/a"), c("x"), 1, ctypes.c_void_p(acl), 0, None, 0),
        lambda op: lib.zoo_create_op_init(op, c(m + "/s-"), c(""), 0, ctypes.c_void_p(acl), 2, name, 256),
        lambda op: lib.zoo_set_op_init(op, c(m), c("y"), 1, 0, ctypes.byref(set_stat)),
        lambda op: lib.zoo_check_op_init(op, c(m), 1),
        lambda op: lib.zoo_delete_op_init(op, c(m + "/a"), 0),
    ])
    assert (rc, errs) == (0, [0, 0, 0, 0, 0, 0])
    assert name.value.decode() == m + "/s-0000000001"
    data, st = zk.get(m)
    assert data == b"y" and st.version == 1
    assert (set_stat.version, set_stat.czxid, set_stat.mzxid) == (1, st.czxid, st.mzxid)
    assert zk.get_children(m) == ["s-0000000001"]
    # A failing op rolls the whole multi back: ZBADVERSION (-103), later ops ZRUNTIMEINCONSISTENCY (-2).
    rc, errs = multi([
        lambda op: lib.zoo_create_op_init(op, c(m + "/b"), c(""), 0, ctypes.c_void_p(acl), 0, None, 0),
        lambda op: lib.zoo_check_op_init(op, c(m), 7),
        lambda op: lib.zoo_delete_op_init(op, c(m + "/s-0000000001"), -1),
    ])
    assert rc == -103
    assert errs == [0, -103, -2]
    assert zk.exists(m + "/b") is None and zk.exists(m + "/s-0000000001") is not None
