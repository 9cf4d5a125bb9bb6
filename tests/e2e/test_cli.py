"""`warden cli`: the zkCli-style shell, one-shot, piped and interactive.

The CLI is a client, so these run against either target: with
WARDEN_TEST_TARGET=zookeeper the same binary talks to the real ZooKeeper.
Output and messages are zkCli 3.8's (its "Created ..." line goes to stderr).
"""

import base64
import hashlib
import os
import re
import subprocess
import time

import pexpect
import pytest
from kazoo.security import make_digest_acl

from conftest import WARDEN_BIN

STAT_FIELDS = [
    "cZxid", "ctime", "mZxid", "mtime", "pZxid", "cversion",
    "dataVersion", "aclVersion", "ephemeralOwner", "dataLength", "numChildren",
]


def cli(server, *args, input=None, timeout=30):
    """Runs `warden cli -server HOST:PORT args...`; stdin is /dev/null unless `input`."""
    return subprocess.run(
        [WARDEN_BIN, "cli", "-server", server.hostport, *args],
        input=input if input is not None else "",
        capture_output=True, text=True, timeout=timeout,
    )


def ok(server, *args, **kw):
    r = cli(server, *args, **kw)
    assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r


def fails(server, *args, code=1, **kw):
    r = cli(server, *args, **kw)
    assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
    return r


def java_date(ms):
    return time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(ms // 1000))


def expected_stat(st):
    """zkCli's stat block for a kazoo ZnodeStat."""
    u64 = lambda v: v & 0xFFFFFFFFFFFFFFFF  # noqa: E731
    return (
        "cZxid = 0x%x\nctime = %s\nmZxid = 0x%x\nmtime = %s\npZxid = 0x%x\n"
        "cversion = %d\ndataVersion = %d\naclVersion = %d\nephemeralOwner = 0x%x\n"
        "dataLength = %d\nnumChildren = %d\n"
        % (
            u64(st.czxid), java_date(st.ctime), u64(st.mzxid), java_date(st.mtime),
            u64(st.pzxid), st.cversion, st.version, st.aversion, u64(st.ephemeralOwner),
            st.dataLength, st.numChildren,
        )
    )


def digest(user, password):
    return base64.b64encode(hashlib.sha1(("%s:%s" % (user, password)).encode()).digest()).decode()


# --- one-shot mode -----------------------------------------------------------


def test_create_get_set(server, zk, base):
    p = base + "/n"
    r = ok(server, "create", p, "hello world")
    assert r.stderr == "Created %s\n" % p and r.stdout == ""
    assert zk.get(p)[0] == b"hello world"
    assert ok(server, "get", p).stdout == "hello world\n"
    assert ok(server, "set", p, "v2").stdout == ""
    assert zk.get(p)[0] == b"v2"
    r = ok(server, "set", "-s", p, "v3")
    assert r.stdout == expected_stat(zk.get(p)[1])
    r = ok(server, "get", "-s", p)
    assert r.stdout == "v3\n" + expected_stat(zk.get(p)[1])
    # set -v: the right version works, a wrong one is zkCli's BadVersion message.
    ok(server, "set", "-v", "2", p, "v4")
    r = fails(server, "set", "-v", "9", p, "v5")
    assert r.stderr == "version No is not valid : %s\n" % p
    assert zk.get(p)[0] == b"v4"
    # A node created without data reads back empty.
    ok(server, "create", base + "/empty")
    assert ok(server, "get", base + "/empty").stdout == "\n"


def test_stat_exact_format(server, zk, base):
    zk.create(base + "/s", b"12345")
    zk.create(base + "/s/kid")
    r = ok(server, "stat", base + "/s")
    assert r.stdout == expected_stat(zk.exists(base + "/s"))
    assert [line.split(" = ")[0] for line in r.stdout.splitlines()] == STAT_FIELDS
    assert re.search(r"^ctime = \w{3} \w{3} \d\d \d\d:\d\d:\d\d UTC \d{4}$", r.stdout, re.M)
    assert "dataLength = 5\nnumChildren = 1\n" in r.stdout
    r = fails(server, "stat", base + "/missing")
    assert r.stderr == "Node does not exist: %s/missing\n" % base


def test_ls(server, zk, base):
    for name in ["b", "a", "c"]:
        zk.create("%s/%s" % (base, name))
    zk.create(base + "/a/x")
    assert ok(server, "ls", base).stdout == "[a, b, c]\n"
    assert ok(server, "ls", base + "/b").stdout == "[]\n"
    r = ok(server, "ls", "-s", base)
    assert r.stdout == "[a, b, c]\n" + expected_stat(zk.exists(base))
    r = ok(server, "ls", "-R", base)
    assert r.stdout.splitlines() == [base, base + "/a", base + "/b", base + "/c", base + "/a/x"]
    assert "zookeeper" in ok(server, "ls", "/").stdout
    assert ok(server, "getAllChildrenNumber", base).stdout == "4\n"


def test_create_modes(server, zk, base):
    r = ok(server, "create", "-s", base + "/seq-", "x")
    assert r.stderr == "Created %s/seq-0000000000\n" % base
    r = ok(server, "create", "-s", base + "/seq-")
    assert r.stderr == "Created %s/seq-0000000001\n" % base
    # The ephemeral lives as long as the CLI's session: gone once it exits.
    r = ok(server, "create", "-e", base + "/eph", "e")
    assert r.stderr == "Created %s/eph\n" % base
    assert zk.exists(base + "/eph") is None
    ok(server, "create", "-c", base + "/cont")
    assert zk.exists(base + "/cont") is not None
    ok(server, "create", "-t", "60000", base + "/ttl", "t")
    assert zk.get(base + "/ttl")[0] == b"t"
    # Option combinations zkCli rejects before sending anything.
    r = fails(server, "create", "-c", "-s", base + "/bad")
    assert "-c cannot be combined with -s or -e" in r.stderr
    r = fails(server, "create", "-e", "-t", "100", base + "/bad")
    assert r.stderr == "TTLs cannot be used with Ephemeral znodes\n"
    r = fails(server, "create", "-t", "0", base + "/bad")
    assert r.stderr == "ttl must be positive and cannot be larger than: 1099511627775\n"
    assert zk.exists(base + "/bad") is None
    # Ephemerals cannot have children.
    zk.create(base + "/keph", ephemeral=True)
    r = fails(server, "create", base + "/keph/c")
    assert r.stderr == "Ephemerals cannot have children: %s/keph/c\n" % base


def test_delete_and_deleteall(server, zk, base):
    zk.create(base + "/d", b"x")
    zk.create(base + "/d/c1/c2", makepath=True)
    r = fails(server, "delete", base + "/d")
    assert r.stderr == "Node not empty: %s/d\n" % base
    zk.create(base + "/v")
    zk.set(base + "/v", b"1")
    r = fails(server, "delete", "-v", "0", base + "/v")
    assert r.stderr == "version No is not valid : %s/v\n" % base
    r = ok(server, "delete", "-v", "1", base + "/v")
    assert r.stdout == "" and r.stderr == ""
    assert zk.exists(base + "/v") is None
    ok(server, "deleteall", base + "/d")
    assert zk.exists(base + "/d") is None
    r = fails(server, "deleteall", base + "/d")
    assert r.stderr == "Node does not exist: %s/d\n" % base
    r = fails(server, "delete", base + "/nope")
    assert r.stderr == "Node does not exist: %s/nope\n" % base


def test_errors(server, zk, base):
    zk.create(base + "/e")
    r = fails(server, "create", base + "/e")
    assert r.stderr == "Node already exists: %s/e\n" % base
    r = fails(server, "get", "/no/such/node")
    assert r.stderr == "Node does not exist: /no/such/node\n" and r.stdout == ""
    r = fails(server, "create", base + "/x/y")
    assert r.stderr == "Node does not exist: %s/x/y\n" % base
    assert fails(server, "ls", "relative").stderr == "Path must start with / character\n"
    assert fails(server, "get", base + "/").stderr == "Path must not end with / character\n"
    r = fails(server, "ls", base + "//x")
    assert r.stderr == 'Invalid path string "%s//x" caused by empty node name specified @%d\n' % (
        base, len(base) + 1)
    # Missing arguments print the command's usage; unknown options are refused.
    assert fails(server, "get").stderr == "get [-s] [-w] path\n"
    assert fails(server, "set", base + "/e").stderr == "set [-s] [-v version] path data\n"
    assert fails(server, "ls", "-x", base).stderr == "Unrecognized option: -x\n"
    # Unknown commands: the usage and exit code 127, as zkCli.
    r = fails(server, "frobnicate", code=127)
    assert r.stderr.endswith("Command not found: Command not found frobnicate\n")
    assert "\tcreate [-s] [-e] [-c] [-t ttl] path [data] [acl]\n" in r.stderr


def test_no_server():
    r = subprocess.run(
        [WARDEN_BIN, "cli", "--server", "127.0.0.1:1", "-timeout", "2000", "ls", "/"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 1 and "Unable to connect to 127.0.0.1:1" in r.stderr


def test_acls(server, zk, base):
    p = base + "/acl"
    ok(server, "create", p, "x")
    assert ok(server, "getAcl", p).stdout == "'world,'anyone\n: cdrwa\n"
    r = ok(server, "getAcl", "-s", p)
    assert r.stdout == "'world,'anyone\n: cdrwa\n" + expected_stat(zk.exists(p))
    ok(server, "setAcl", p, "world:anyone:r,ip:127.0.0.1:cdrwa")
    assert ok(server, "getAcl", p).stdout == "'world,'anyone\n: r\n'ip,'127.0.0.1\n: cdrwa\n"
    acls, stat = zk.get_acls(p)
    assert stat.aversion == 1
    assert sorted((a.id.scheme, a.id.id, a.perms) for a in acls) == [
        ("ip", "127.0.0.1", 31), ("world", "anyone", 1)]
    r = fails(server, "setAcl", "-v", "0", p, "world:anyone:cdrwa")
    assert r.stderr == "version No is not valid : %s\n" % p
    r = ok(server, "setAcl", "-s", "-v", "1", p, "world:anyone:cdrwa")
    assert r.stdout == expected_stat(zk.exists(p))
    # create with an ACL argument, including a digest id (id = between first and last
    # colon). Without ADMIN on the node the server redacts the hash to "x" (ZOOKEEPER-1392).
    h = digest("bob", "secret")
    ok(server, "create", base + "/withacl", "d", "digest:bob:%s:cdrwa,world:anyone:r" % h)
    r = ok(server, "getAcl", base + "/withacl")
    assert r.stdout == "'digest,'bob:x\n: cdrwa\n'world,'anyone\n: r\n"
    acls, _ = zk.get_acls(base + "/withacl")
    assert ("digest", "bob:x", 31) in [(a.id.scheme, a.id.id, a.perms) for a in acls]
    # Malformed ACLs: zkCli's warnings, then InvalidACL with no request sent.
    r = fails(server, "create", base + "/badacl", "d", "nonsense")
    assert r.stderr == (
        "nonsense does not have the form scheme:id:perm\n"
        "KeeperErrorCode = InvalidACL\nAcl is not valid : null\n")
    r = ok(server, "create", base + "/oddperm", "d", "world:anyone:rq")
    assert r.stderr == "Unknown perm type: q\nCreated %s/oddperm\n" % base
    assert ok(server, "getAcl", base + "/oddperm").stdout == "'world,'anyone\n: r\n"
    # setAcl -R applies to the whole subtree.
    zk.create(base + "/tree/a/b", makepath=True)
    ok(server, "setAcl", "-R", base + "/tree", "world:anyone:cdr")
    for node in ["/tree", "/tree/a", "/tree/a/b"]:
        assert ok(server, "getAcl", base + node).stdout == "'world,'anyone\n: cdr\n"


def test_addauth_digest_protected_node(server, zk, base):
    p = base + "/secret"
    zk.create(p, b"treasure", acl=[make_digest_acl("bob", "secret", all=True)])
    r = fails(server, "get", p)
    assert r.stderr == "Insufficient permission : %s\n" % p
    # Piped stdin: one command per line in one session, no prompt; exit code of the last.
    r = ok(server, input="addauth digest bob:secret\nget %s\nwhoami\n" % p)
    lines = r.stdout.splitlines()
    assert lines[:2] == ["treasure", "Auth scheme: User"], r.stdout
    # ZooKeeper lists digest before ip; the order is the server's.
    assert sorted(lines[2:]) == ["digest: bob", "ip: 127.0.0.1"], r.stdout
    r = cli(server, input="addauth digest bob:wrong\nget %s\n" % p)
    assert r.returncode == 1 and "Insufficient permission : %s" % p in r.stderr
    # The same through the interactive shell's auth scheme `auth`: creator-only nodes.
    r = ok(server, input="addauth digest bob:secret\ncreate %s/mine m auth::cdrwa\ngetAcl %s/mine\n" % (p, p))
    assert r.stdout == "'digest,'bob:%s\n: cdrwa\n" % digest("bob", "secret")


def test_sync_whoami_ephemerals(server, zk, base):
    assert ok(server, "sync", base).stdout == "Sync is OK\n"
    assert ok(server, "whoami").stdout == "Auth scheme: User\nip: 127.0.0.1\n"
    assert ok(server, "getEphemerals").stdout == "[]\n"
    r = ok(server, input="create -e %s/e1\ngetEphemerals %s\ngetEphemerals /nowhere\n" % (base, base))
    assert r.stdout == "[%s/e1]\n[]\n" % base
    assert zk.exists(base + "/e1") is None


def test_piped_script(server, zk, base):
    script = "\n".join([
        "create %s/q 'quoted data'" % base,
        "get %s/q" % base,
        "",
        'set %s/q "double quoted"' % base,
        "get %s/q" % base,
        "ls %s" % base,
        "history",
    ]) + "\n"
    r = ok(server, input=script)
    assert r.stdout == (
        "quoted data\ndouble quoted\n[q]\n"
        "0 - create {b}/q 'quoted data'\n1 - get {b}/q\n2 - set {b}/q \"double quoted\"\n"
        "3 - get {b}/q\n4 - ls {b}\n5 - history\n".format(b=base))
    assert "[zk:" not in r.stdout
    # The exit code is the last command's.
    assert cli(server, input="get /nope\nls %s\n" % base).returncode == 0
    r = cli(server, input="ls %s\nget /nope\n" % base)
    assert r.returncode == 1 and r.stderr == "Node does not exist: /nope\n"
    # quit ends the script early.
    r = ok(server, input="quit\ncreate %s/never\n" % base)
    assert zk.exists(base + "/never") is None


# --- interactive shell (pseudo-terminal) -----------------------------------


def spawn_shell(server):
    env = dict(os.environ, TERM="xterm")
    child = pexpect.spawn(
        WARDEN_BIN, ["cli", "-server", server.hostport], env=env,
        encoding="utf-8", timeout=15, dimensions=(50, 250),
    )
    return child


def prompt(server, n, state="CONNECTED"):
    return re.escape("[zk: %s(%s) %d] " % (server.hostport, state, n))


def test_interactive_shell(server, zk, base):
    child = spawn_shell(server)
    try:
        child.expect("WatchedEvent state:SyncConnected type:None path:null")
        child.expect(prompt(server, 0))
        child.sendline("create %s/i hello" % base)
        child.expect("Created %s/i" % re.escape(base))
        child.expect(prompt(server, 1))
        child.sendline("get %s/i" % base)
        child.expect("\r\nhello\r\n")
        child.expect(prompt(server, 2))
        # A watch fired while the shell sits at its prompt is printed like zkCli's.
        child.sendline("get -w %s/i" % base)
        child.expect(prompt(server, 3))
        zk.set(base + "/i", b"changed")
        child.expect(re.escape("WATCHER::"))
        child.expect(re.escape("WatchedEvent state:SyncConnected type:NodeDataChanged path:%s/i" % base))
        # Arrow-up recalls the previous command ("get -w"), which runs again.
        child.send("\x1b[A")
        child.expect(re.escape("get -w %s/i" % base))
        child.send("\r")
        child.expect("changed")
        child.expect(prompt(server, 4))
        # Two arrow-ups reach "get" (without -w).
        child.send("\x1b[A\x1b[A")
        child.expect(re.escape("get %s/i" % base))
        child.send("\r")
        child.expect(prompt(server, 5))
        # addWatch: persistent recursive by default; events keep coming.
        child.sendline("addWatch %s" % base)
        child.expect(prompt(server, 6))
        zk.create(base + "/i/kid")
        child.expect(re.escape("type:NodeCreated path:%s/i/kid" % base))
        zk.set(base + "/i", b"again")
        child.expect(re.escape("type:NodeDataChanged path:%s/i" % base))
        child.sendline("history")
        child.expect(re.escape("0 - create %s/i hello" % base))
        child.expect(re.escape("3 - get -w %s/i" % base))
        child.expect(re.escape("4 - get %s/i" % base))
        child.expect(re.escape("5 - addWatch %s" % base))
        child.expect(re.escape("6 - history"))
        child.expect(prompt(server, 7))
        # Errors go on; the shell stays up.
        child.sendline("get %s/nope" % base)
        child.expect(re.escape("Node does not exist: %s/nope" % base))
        child.expect(prompt(server, 8))
        child.sendline("close")
        child.expect("WatchedEvent state:Closed type:None path:null")
        child.expect(prompt(server, 9, "CLOSED"))
        child.sendline("ls /")
        child.expect("Not connected")
        child.expect(prompt(server, 10, "CLOSED"))
        child.sendline("connect %s" % server.hostport)
        child.expect(prompt(server, 11))
        child.sendline("ls %s" % base)
        child.expect(re.escape("[i]"))
        child.expect(prompt(server, 12))
        child.sendline("quit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_interactive_eof_and_ephemerals(server, zk, base):
    child = spawn_shell(server)
    try:
        child.expect(prompt(server, 0))
        child.sendline("create -e %s/eph" % base)
        child.expect(prompt(server, 1))
        child.sendline("getEphemerals %s" % base)
        child.expect(re.escape("[%s/eph]" % base))
        child.expect(prompt(server, 2))
        assert zk.exists(base + "/eph") is not None
        child.sendline("")  # blank lines do not count
        child.expect(prompt(server, 2))
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert zk.exists(base + "/eph") is None
