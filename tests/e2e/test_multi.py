"""multi (transactions) via kazoo's zk.transaction(), plus raw multi/multiRead."""

import threading

import pytest
from kazoo.exceptions import (
    BadArgumentsError,
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistency,
)
from kazoo.protocol.states import EventType, ZnodeStat

import rawzk
import zkext
from kazoo.security import OPEN_ACL_UNSAFE
from rawzk import RawClient


def test_transaction_success(zk, base):
    zk.create(base + "/old", b"o")
    zk.create(base + "/mod", b"m")
    t = zk.transaction()
    t.check(base + "/mod", 0)
    t.create(base + "/new", b"n")
    t.set_data(base + "/mod", b"m2")
    t.delete(base + "/old")
    results = t.commit()
    assert len(results) == 4
    assert results[0] is True
    assert results[1] == base + "/new"
    assert isinstance(results[2], ZnodeStat)
    assert results[2].version == 1
    assert results[2] == zk.exists(base + "/mod")
    assert results[3] is True
    assert zk.get(base + "/new")[0] == b"n"
    assert zk.get(base + "/mod")[0] == b"m2"
    assert zk.exists(base + "/old") is None


def test_transaction_ops_share_one_zxid(zk, base):
    t = zk.transaction()
    t.create(base + "/a")
    t.create(base + "/b")
    t.create(base + "/a/child")
    t.commit()
    a, b, c = (zk.exists(base + p) for p in ("/a", "/b", "/a/child"))
    assert a.czxid == b.czxid == c.czxid
    assert zk.exists(base).pzxid == a.czxid
    assert zk.exists(base).cversion == 2


def test_transaction_sees_its_own_earlier_ops(zk, base):
    t = zk.transaction()
    t.create(base + "/x", b"1")
    t.set_data(base + "/x", b"2", version=0)
    t.check(base + "/x", 1)
    t.create(base + "/x/y")
    t.delete(base + "/x/y")
    t.delete(base + "/x", version=1)
    t.create(base + "/x", b"3")
    results = t.commit()
    assert results[0] == base + "/x"
    assert results[1].version == 1
    assert results[2:6] == [True, base + "/x/y", True, True]
    assert results[6] == base + "/x"
    data, stat = zk.get(base + "/x")
    assert data == b"3"
    assert stat.version == 0


def test_transaction_failure_is_all_or_nothing(zk, base):
    zk.create(base + "/keep", b"k")
    zk.create(base + "/exists")
    t = zk.transaction()
    t.create(base + "/new1")
    t.set_data(base + "/keep", b"changed")
    t.create(base + "/exists")  # fails: NodeExists
    t.delete(base + "/keep")
    t.create(base + "/new2")
    results = t.commit()
    assert len(results) == 5
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], RolledBackError)
    assert isinstance(results[2], NodeExistsError)
    assert isinstance(results[3], RuntimeInconsistency)
    assert isinstance(results[4], RuntimeInconsistency)
    # nothing was applied
    assert zk.exists(base + "/new1") is None
    assert zk.exists(base + "/new2") is None
    data, stat = zk.get(base + "/keep")
    assert data == b"k"
    assert stat.version == 0
    assert sorted(zk.get_children(base)) == ["exists", "keep"]


@pytest.mark.parametrize(
    "op, error",
    [
        ("check_bad_version", BadVersionError),
        ("check_missing", NoNodeError),
        ("set_missing", NoNodeError),
        ("set_bad_version", BadVersionError),
        ("delete_missing", NoNodeError),
        ("delete_not_empty", NotEmptyError),
        ("create_no_parent", NoNodeError),
        ("create_bad_path", BadArgumentsError),
    ],
)
def test_transaction_failing_op_error(zk, base, op, error):
    zk.create(base + "/n/c", makepath=True)
    t = zk.transaction()
    t.create(base + "/first")
    if op == "check_bad_version":
        t.check(base + "/n", 5)
    elif op == "check_missing":
        t.check(base + "/missing", 0)
    elif op == "set_missing":
        t.set_data(base + "/missing", b"x")
    elif op == "set_bad_version":
        t.set_data(base + "/n", b"x", version=3)
    elif op == "delete_missing":
        t.delete(base + "/missing")
    elif op == "delete_not_empty":
        t.delete(base + "/n")
    elif op == "create_no_parent":
        t.create(base + "/missing/child")
    elif op == "create_bad_path":
        # kazoo strips a trailing slash itself, so send the path untouched
        t._add(zkext.RawCreate(base + "/n/", b"", OPEN_ACL_UNSAFE, 0))
    t.create(base + "/last")
    results = t.commit()
    assert len(results) == 3
    assert type(results[0]) is RolledBackError
    assert type(results[1]) is error
    assert type(results[2]) is RuntimeInconsistency
    assert zk.exists(base + "/first") is None
    assert zk.exists(base + "/last") is None


def test_transaction_failure_at_first_op(zk, base):
    t = zk.transaction()
    t.delete(base + "/missing")
    t.create(base + "/a")
    results = t.commit()
    assert type(results[0]) is NoNodeError
    assert type(results[1]) is RuntimeInconsistency
    assert zk.exists(base + "/a") is None


def test_transaction_sequential_and_ephemeral(zk, base):
    t = zk.transaction()
    t.create(base + "/s-", sequence=True)
    t.create(base + "/s-", sequence=True)
    t.create(base + "/e", ephemeral=True)
    results = t.commit()
    assert results[0] == base + "/s-0000000000"
    assert results[1] == base + "/s-0000000001"
    assert results[2] == base + "/e"
    assert zk.exists(base + "/e").ephemeralOwner == zk.client_id[0]


def test_failed_transaction_does_not_consume_sequence(zk, base):
    t = zk.transaction()
    t.create(base + "/s-", sequence=True)
    t.delete(base + "/missing")
    t.commit()
    assert zk.create(base + "/s-", sequence=True) == base + "/s-0000000000"


def test_transaction_fires_watches_after_commit(zk, make_client, base):
    zk.create(base + "/w", b"0")
    other = make_client()
    events = []
    done = threading.Event()

    def watcher(event):
        events.append((event.type, event.path))
        done.set()

    other.get(base + "/w", watch=watcher)
    # failed transaction: no watch event
    t = zk.transaction()
    t.set_data(base + "/w", b"1")
    t.delete(base + "/missing")
    t.commit()
    assert other.get(base + "/w")[0] == b"0"
    t = zk.transaction()
    t.set_data(base + "/w", b"2")
    t.create(base + "/other")
    t.commit()
    assert done.wait(10)
    assert events == [(EventType.CHANGED, base + "/w")]


def test_empty_transaction(zk):
    assert zk.transaction().commit() == []


def test_check_only_transaction(zk, base):
    t = zk.transaction()
    t.check(base, 0)
    assert t.commit() == [True]


# ------------------------------------------------------------ raw multi wire format


def multi_header(op_type, done=False, err=-1):
    return rawzk.p_int(op_type) + rawzk.p_bool(done) + rawzk.p_int(err)


def parse_multi_response(body):
    r = rawzk.Reader(body)
    out = []
    while True:
        op_type, done = r.int(), r.bool()
        r.int()  # header err (repeated in the error result body)
        if done:
            return out
        if op_type == -1:
            out.append(("error", r.int()))
        elif op_type == rawzk.OP_CREATE:
            out.append(("create", r.string()))
        elif op_type == rawzk.OP_CREATE2:
            out.append(("create2", r.string(), r.stat()))
        elif op_type == rawzk.OP_SET_DATA:
            out.append(("set", r.stat()))
        elif op_type in (rawzk.OP_DELETE, rawzk.OP_CHECK):
            out.append((op_type,))
        elif op_type == rawzk.OP_GET_DATA:
            out.append(("get", r.buffer(), r.stat()))
        elif op_type == rawzk.OP_GET_CHILDREN:
            out.append(("children", r.strings()))
        else:
            raise AssertionError("unexpected multi result type %d" % op_type)


@pytest.fixture
def raw(server):
    c = RawClient(server.hostport, timeout_ms=30000)
    yield c
    c.close()


def test_raw_multi_failure_wire_format(raw, zk, base):
    zk.create(base + "/x")
    body = (
        multi_header(rawzk.OP_CREATE) + rawzk.create_body(base + "/a")
        + multi_header(rawzk.OP_CREATE) + rawzk.create_body(base + "/x")
        + multi_header(rawzk.OP_DELETE) + rawzk.delete_body(base + "/x")
        + multi_header(-1, True, -1)
    )
    rep = raw.request(rawzk.OP_MULTI, body)
    # the reply header carries err 0; the per-op results carry the errors
    assert rep.err == 0
    assert parse_multi_response(rep.body) == [
        ("error", 0),
        ("error", rawzk.ERR_NODE_EXISTS),
        ("error", rawzk.ERR_RUNTIME_INCONSISTENCY),
    ]


def test_raw_multi_create2_reports_plain_create(raw, zk, base):
    # ZooKeeper 3.8 answers a create2 op inside multi with a plain create
    # result (type 1, path only, no Stat).
    body = (
        multi_header(rawzk.OP_CREATE2) + rawzk.create_body(base + "/c2", b"abc")
        + multi_header(rawzk.OP_CHECK) + rawzk.p_string(base + "/c2") + rawzk.p_int(0)
        + multi_header(-1, True, -1)
    )
    rep = raw.request(rawzk.OP_MULTI, body)
    assert rep.err == 0
    results = parse_multi_response(rep.body)
    assert results == [("create", base + "/c2"), (rawzk.OP_CHECK,)]
    assert raw_stat(raw, base + "/c2").czxid == rep.zxid


def test_raw_multi_read(raw, zk, base):
    zk.create(base + "/r", b"data")
    zk.create(base + "/r/kid")
    body = (
        multi_header(rawzk.OP_GET_DATA) + rawzk.path_watch_body(base + "/r")
        + multi_header(rawzk.OP_GET_CHILDREN) + rawzk.path_watch_body(base + "/r")
        + multi_header(rawzk.OP_GET_DATA) + rawzk.path_watch_body(base + "/missing")
        + multi_header(rawzk.OP_GET_CHILDREN) + rawzk.path_watch_body(base + "/r")
        + multi_header(-1, True, -1)
    )
    rep = raw.request(rawzk.OP_MULTI_READ, body)
    assert rep.err == 0
    results = parse_multi_response(rep.body)
    assert results[0][0] == "get"
    assert results[0][1] == b"data"
    assert results[0][2] == raw_stat(raw, base + "/r")
    # read ops are independent: a failure does not roll back the others
    assert results[1] == ("children", ["kid"])
    assert results[2] == ("error", rawzk.ERR_NO_NODE)
    assert results[3] == ("children", ["kid"])


def raw_stat(raw, path):
    rep = raw.exists(path)
    assert rep.err == 0
    return rawzk.Reader(rep.body).stat()


def test_raw_multi_read_rejects_write_ops(raw, zk, base):
    body = (
        multi_header(rawzk.OP_CREATE) + rawzk.create_body(base + "/nope")
        + multi_header(-1, True, -1)
    )
    rep = raw.request(rawzk.OP_MULTI_READ, body)
    assert rep.err != 0
    assert zk.exists(base + "/nope") is None
