"""The audit log (zookeeper.audit.enable): one line per state change, with
ZooKeeper's fields (session, user, ip, operation, znode, znode_type, acl,
result), as ZooKeeper's AuditHelper writes them.

Warden writes them to zookeeper.auditlog.file (relative to its working
directory here); ZooKeeper, with the harness's log4j config, to its log.
"""

import os
import time

from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.security import make_digest_acl

from conftest import TARGET

AUDIT_FILE = "audit.log"
SERVER_SETTINGS = {"zookeeper.audit.enable": "true", "zookeeper.auditlog.file": AUDIT_FILE}
MARK = "audit.Slf4jAuditLogger: "


def audit_lines(server):
    """The audit events the member the clients use has logged, in order."""
    first = getattr(server, "members", [server])[0]
    if TARGET == "warden":
        path = os.path.join(first.tmpdir, AUDIT_FILE)
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n").split(MARK, 1)[1] for line in f if MARK in line]
    with open(first.log_path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n").split(" - ", 1)[1] for line in f if "Slf4jAuditLogger" in line and " - " in line]


def wait_for(server, predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        lines = audit_lines(server)
        if predicate(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_server_start_is_audited(server):
    lines = wait_for(server, lambda ls: any("operation=serverStart" in line for line in ls))
    start = [line for line in lines if "operation=serverStart" in line]
    assert start and start[0].startswith("user=") and start[0].endswith("\toperation=serverStart\tresult=success")


def test_each_change_is_one_line_with_zookeepers_fields(server, make_client, base):
    zk = make_client()
    zk.add_auth("digest", "alice:pw")
    session = "0x%x" % zk.client_id[0]
    seq = zk.create(base + "/s-", b"x", ephemeral=True, sequence=True)
    zk.set(seq, b"y")
    acl = [make_digest_acl("alice", "pw", all=True)]
    zk.set_acls(seq, acl)
    try:
        zk.create(seq)
    except NodeExistsError:
        pass
    tx = zk.transaction()
    tx.create(base + "/m", b"")
    tx.set_data(base + "/m", b"v")
    tx.check(base + "/m", 1)
    tx.commit()
    tx = zk.transaction()
    tx.delete(base + "/missing")
    tx.create(base + "/never", b"")
    tx.commit()
    zk.delete(base + "/m")
    try:
        zk.delete(base + "/m")
    except NoNodeError:
        pass
    zk.get(base)  # reads are not audited
    who = "session=%s\tuser=127.0.0.1,alice\tip=127.0.0.1" % session
    want = [
        who + "\toperation=create\tznode=%s\tznode_type=ephemeral_sequential\tresult=success" % seq,
        who + "\toperation=setData\tznode=%s\tresult=success" % seq,
        who + "\toperation=setAcl\tznode=%s\tacl=%s\tresult=success" % (seq, "digest:%s:cdrwa" % acl[0].id.id),
        who + "\toperation=create\tznode=%s\tznode_type=persistent\tresult=failure" % seq,
        who + "\toperation=create\tznode=%s/m\tznode_type=persistent\tresult=success" % base,
        who + "\toperation=setData\tznode=%s/m\tresult=success" % base,
        who + "\toperation=multiOperation\tresult=failure",
        who + "\toperation=delete\tznode=%s/m\tresult=success" % base,
        who + "\toperation=delete\tznode=%s/m\tresult=failure" % base,
    ]
    lines = wait_for(server, lambda ls: sum(session in line for line in ls) >= len(want))
    assert [line for line in lines if line.startswith("session=%s\t" % session)] == want

    zk.stop()
    zk.close()
    gone = "\toperation=ephemeralZNodeDeletionOnSessionCloseOrExpire\tznode=%s\tresult=success" % seq
    lines = wait_for(server, lambda ls: any(line.endswith(gone) for line in ls))
    ended = [line for line in lines if line.endswith(gone)]
    assert len(ended) == 1 and ended[0].startswith("session=%s\tuser=" % session), lines[-5:]
    # The server, not the client, removed it: no ip field.
    assert "\tip=" not in ended[0] and "alice" not in ended[0]
