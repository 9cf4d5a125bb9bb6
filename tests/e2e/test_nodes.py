"""Znode types, Stat bookkeeping and plain read operations."""

import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadArgumentsError,
    NoChildrenForEphemeralsError,
    NoNodeError,
)
from kazoo.protocol.states import ZnodeStat

import rawzk
import zkext
from rawzk import wait_until


def test_classic_example(hosts, make_client):
    setup = make_client()
    setup.create("/example", b"hello warden")
    try:
        zk = KazooClient(hosts=hosts)
        zk.start()
        try:
            data, stat = zk.get("/example")
            assert data == b"hello warden"
            assert isinstance(stat, ZnodeStat)
            assert stat.version == 0
            assert stat.dataLength == len(b"hello warden")
            assert stat.numChildren == 0
        finally:
            zk.stop()
            zk.close()
    finally:
        setup.delete("/example")


def test_persistent_node_survives_session(zk, make_client, base):
    path = zk.create(base + "/p", b"data")
    assert path == base + "/p"
    assert zk.exists(path).ephemeralOwner == 0
    zk.stop()
    other = make_client()
    data, stat = other.get(path)
    assert data == b"data"
    assert stat.ephemeralOwner == 0


def test_ephemeral_node_owned_by_session(zk, make_client, base):
    owner = make_client()
    path = owner.create(base + "/e", b"x", ephemeral=True)
    assert path == base + "/e"
    stat = zk.exists(path)
    assert stat.ephemeralOwner == owner.client_id[0]
    assert stat.ephemeralOwner != 0
    owner.stop()  # closeSession removes ephemerals before the reply
    assert zk.exists(path) is None


def test_ephemeral_cannot_have_children(zk, base):
    zk.create(base + "/e", ephemeral=True)
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create(base + "/e/child")
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create(base + "/e/child", ephemeral=True)


def test_sequential_suffix_counts_child_creates(zk, base):
    """The suffix is the parent's count of child *creates* so far.

    ZooKeeper persists a cversion that only child creates bump and derives
    the client-visible Stat.cversion as 2*persisted - numChildren (so it
    counts creates + deletes); the sequence suffix uses the persisted value.
    """
    first = zk.create(base + "/n-", sequence=True)
    assert first == base + "/n-0000000000"
    second = zk.create(base + "/n-", sequence=True)
    assert second == base + "/n-0000000001"
    # A plain child create bumps the counter too.
    zk.create(base + "/plain")
    third = zk.create(base + "/n-", sequence=True)
    assert third == base + "/n-0000000003"
    # A child delete bumps Stat.cversion but not the sequence counter.
    before = zk.exists(base).cversion
    zk.delete(base + "/plain")
    assert zk.exists(base).cversion == before + 1
    fourth = zk.create(base + "/other-", sequence=True)
    assert fourth == base + "/other-0000000004"
    # 5 creates, 1 delete
    assert zk.exists(base).cversion == 6
    assert sorted(zk.get_children(base)) == sorted(
        ["n-0000000000", "n-0000000001", "n-0000000003", "other-0000000004"]
    )
    # deleting every child does not reset the counter
    for child in zk.get_children(base):
        zk.delete(base + "/" + child)
    assert zk.exists(base).cversion == 10
    assert zk.create(base + "/n-", sequence=True) == base + "/n-0000000005"


def test_sequential_with_trailing_slash_names_child_by_counter(zk, base):
    # "parent/" + sequence => a child named only by the 10-digit counter.
    p = zkext.raw_create(zk, base + "/", flags=rawzk.FLAG_PERSISTENT_SEQUENTIAL)
    assert p == base + "/0000000000"
    p = zk.create(base + "/", sequence=True)
    assert p == base + "/0000000001"


def test_sequential_data_and_stat(zk, base):
    path = zk.create(base + "/s-", b"payload", sequence=True)
    data, stat = zk.get(path)
    assert data == b"payload"
    assert stat.ephemeralOwner == 0


def test_ephemeral_sequential(zk, make_client, base):
    owner = make_client()
    a = owner.create(base + "/lock-", b"1", ephemeral=True, sequence=True)
    b = owner.create(base + "/lock-", b"2", ephemeral=True, sequence=True)
    assert a == base + "/lock-0000000000"
    assert b == base + "/lock-0000000001"
    assert zk.exists(a).ephemeralOwner == owner.client_id[0]
    owner.stop()
    assert zk.get_children(base) == []
    stat = zk.exists(base)
    assert stat.cversion == 4  # two creates + two deletes
    assert stat.numChildren == 0
    # the sequence counter only counts creates
    assert zk.create(base + "/lock-", sequence=True) == base + "/lock-0000000002"


def test_create2_returns_stat(zk, base):
    path, stat = zk.create(base + "/c2", b"abc", include_data=True)
    assert path == base + "/c2"
    assert stat == zk.exists(path)
    assert stat.dataLength == 3


def test_container_deleted_after_last_child_removed(zk, base):
    path, stat = zkext.create_container(zk, base + "/ctr", b"cdata")
    assert path == base + "/ctr"
    assert stat.ephemeralOwner == 0
    assert zk.get(path)[0] == b"cdata"
    zk.create(path + "/a")
    zk.create(path + "/b")
    zk.delete(path + "/a")
    # still has a child: must survive several container-check intervals (500 ms)
    time.sleep(1.5)
    assert zk.exists(path) is not None
    zk.delete(path + "/b")
    wait_until(lambda: zk.exists(path) is None, timeout=10, message="container removal")


def test_container_never_used_is_kept(zk, base):
    path, _ = zkext.create_container(zk, base + "/empty-ctr")
    time.sleep(1.5)  # 3 container-check intervals
    assert zk.exists(path) is not None


def test_container_removed_when_ephemeral_child_session_ends(zk, make_client, base):
    path, _ = zkext.create_container(zk, base + "/ctr")
    owner = make_client()
    owner.create(path + "/member", ephemeral=True)
    owner.stop()
    wait_until(lambda: zk.exists(path) is None, timeout=10, message="container removal")


def test_container_flag_on_plain_create_makes_plain_persistent_node(zk, base):
    # ZooKeeper accepts CreateMode.CONTAINER (flag 4) on the plain create
    # opcode, but only the createContainer opcode makes a real container: this
    # node is an ordinary persistent node and is never garbage-collected.
    path = zkext.raw_create(zk, base + "/ctr", flags=rawzk.FLAG_CONTAINER)
    assert path == base + "/ctr"
    assert zk.exists(path).ephemeralOwner == 0
    zk.create(path + "/x")
    zk.delete(path + "/x")
    time.sleep(1.5)  # 3 container-check intervals
    assert zk.exists(path) is not None


def test_ttl_node_expires(zk, base):
    path, stat = zkext.create_ttl(zk, base + "/ttl", ttl=500, data=b"t")
    assert path == base + "/ttl"
    assert stat.ephemeralOwner == 0
    assert zk.get(path)[0] == b"t"
    wait_until(lambda: zk.exists(path) is None, timeout=10, message="TTL node removal")


def test_ttl_node_with_child_is_kept_until_empty(zk, base):
    path, _ = zkext.create_ttl(zk, base + "/ttl", ttl=300)
    zk.create(path + "/child")
    time.sleep(1.5)
    assert zk.exists(path) is not None
    zk.delete(path + "/child")
    wait_until(lambda: zk.exists(path) is None, timeout=10, message="TTL node removal")


def test_sequential_ttl_node(zk, base):
    path, _ = zkext.create_ttl(
        zk, base + "/st-", ttl=60000, flags=rawzk.FLAG_PERSISTENT_SEQUENTIAL_WITH_TTL
    )
    assert path == base + "/st-0000000000"
    assert zk.exists(path) is not None


@pytest.mark.parametrize(
    "flags, ttl",
    [
        (rawzk.FLAG_PERSISTENT_WITH_TTL, 0),
        (rawzk.FLAG_PERSISTENT_WITH_TTL, -1),
        (rawzk.FLAG_PERSISTENT_WITH_TTL, 1 << 41),  # above the max TTL (2^40 - 1)
        (rawzk.FLAG_PERSISTENT, 1000),  # TTL with a non-TTL mode
        (rawzk.FLAG_EPHEMERAL, 1000),
        (rawzk.FLAG_CONTAINER, 1000),
    ],
)
def test_ttl_bad_arguments(zk, base, flags, ttl):
    with pytest.raises(BadArgumentsError):
        zkext.create_ttl(zk, base + "/bad", ttl=ttl, flags=flags)
    assert zk.exists(base + "/bad") is None


def test_ttl_flag_on_plain_create_is_bad_arguments(zk, base):
    with pytest.raises(BadArgumentsError):
        zkext.raw_create(zk, base + "/bad", flags=rawzk.FLAG_PERSISTENT_WITH_TTL)


@pytest.mark.parametrize("flags", [7, 99, -1])
def test_invalid_create_flags(zk, base, flags):
    with pytest.raises(BadArgumentsError):
        zkext.raw_create(zk, base + "/bad", flags=flags)


def test_ttl_unimplemented_without_extended_types():
    from conftest import start_server
    from kazoo.exceptions import UnimplementedError

    srv = start_server({"zookeeper.extendedTypesEnabled": "false"})
    zk = KazooClient(hosts=srv.hostport)
    try:
        zk.start()
        with pytest.raises(UnimplementedError):
            zkext.create_ttl(zk, "/ttl", ttl=1000)
        assert zk.exists("/ttl") is None
        # containers do not need extended types
        assert zkext.create_container(zk, "/ctr")[0] == "/ctr"
    finally:
        zk.stop()
        zk.close()
        srv.stop()


# ------------------------------------------------------------------ Stat


def test_stat_after_create(zk, base):
    before_ms = time.time() * 1000
    path = zk.create(base + "/n", b"12345")
    create_zxid = zk.last_zxid
    stat = zk.exists(path)
    assert stat.czxid == create_zxid
    assert stat.mzxid == stat.czxid
    assert stat.pzxid == stat.czxid
    assert stat.ctime == stat.mtime
    assert abs(stat.ctime - before_ms) < 60000  # wall-clock milliseconds
    assert stat.version == 0
    assert stat.cversion == 0
    assert stat.aversion == 0
    assert stat.ephemeralOwner == 0
    assert stat.dataLength == 5
    assert stat.numChildren == 0


def test_stat_after_set(zk, base):
    path = zk.create(base + "/n", b"a")
    s0 = zk.exists(path)
    s1 = zk.set(path, b"bbb")
    set_zxid = zk.last_zxid
    assert s1 == zk.exists(path)
    assert s1.mzxid == set_zxid
    assert s1.mzxid > s0.mzxid
    assert s1.czxid == s0.czxid
    assert s1.pzxid == s0.pzxid
    assert s1.ctime == s0.ctime
    assert s1.mtime >= s0.mtime
    assert s1.version == 1
    assert s1.cversion == 0
    assert s1.aversion == 0
    assert s1.dataLength == 3
    s2 = zk.set(path, b"")
    assert s2.version == 2
    assert s2.dataLength == 0
    assert s2.mzxid > s1.mzxid


def test_stat_parent_on_child_create_and_delete(zk, base):
    parent = zk.create(base + "/p", b"pd")
    s0 = zk.exists(parent)
    zk.create(parent + "/c1")
    c1 = zk.exists(parent + "/c1")
    s1 = zk.exists(parent)
    assert s1.cversion == s0.cversion + 1
    assert s1.numChildren == 1
    assert s1.pzxid == c1.czxid
    assert s1.mzxid == s0.mzxid  # children do not touch data fields
    assert s1.version == s0.version
    assert s1.mtime == s0.mtime

    zk.create(parent + "/c2")
    s2 = zk.exists(parent)
    assert s2.cversion == s1.cversion + 1
    assert s2.numChildren == 2

    # data change of a child does not touch the parent
    zk.set(parent + "/c1", b"zzz")
    assert zk.exists(parent) == s2

    zk.delete(parent + "/c1")
    delete_zxid = zk.last_zxid
    s3 = zk.exists(parent)
    assert s3.cversion == s2.cversion + 1
    assert s3.numChildren == 1
    assert s3.pzxid == delete_zxid
    assert s3.pzxid > s2.pzxid
    assert s3.mzxid == s0.mzxid


def test_stat_after_set_acls(zk, base):
    from kazoo.security import OPEN_ACL_UNSAFE

    path = zk.create(base + "/n", b"x")
    s0 = zk.exists(path)
    s1 = zk.set_acls(path, OPEN_ACL_UNSAFE)
    assert s1.aversion == 1
    assert s1.version == s0.version
    assert s1.mzxid == s0.mzxid
    assert s1.mtime == s0.mtime
    assert s1.cversion == s0.cversion
    assert zk.exists(path) == s1
    assert zk.set_acls(path, OPEN_ACL_UNSAFE, version=1).aversion == 2


def test_stat_ephemeral_owner(zk, base):
    path = zk.create(base + "/e", ephemeral=True)
    assert zk.exists(path).ephemeralOwner == zk.client_id[0]
    assert zk.exists(base).ephemeralOwner == 0


def test_null_and_empty_data(zk, base):
    zk.create(base + "/empty", b"")
    data, stat = zk.get(base + "/empty")
    assert data == b""
    assert stat.dataLength == 0
    zk.create(base + "/null", None)
    data, stat = zk.get(base + "/null")
    assert not data  # ZooKeeper returns a null buffer (kazoo: None) for null data
    assert stat.dataLength == 0


def test_large_data_roundtrip(zk, base):
    blob = bytes(range(256)) * 2000  # 512000 bytes, under the 1 MiB default
    zk.create(base + "/big", blob)
    data, stat = zk.get(base + "/big")
    assert data == blob
    assert stat.dataLength == len(blob)


def test_binary_and_unicode_names(zk, base):
    path = zk.create(base + "/\u00e9t\u00e9 \u4e2d", b"\x00\xff\x00")
    assert zk.get(path)[0] == b"\x00\xff\x00"
    assert zk.get_children(base) == ["\u00e9t\u00e9 \u4e2d"]


# ------------------------------------------------------------------ misc reads


def test_get_children_and_include_data(zk, base):
    for name in ("b", "a", "c"):
        zk.create(base + "/" + name)
    assert sorted(zk.get_children(base)) == ["a", "b", "c"]
    children, stat = zk.get_children(base, include_data=True)
    assert sorted(children) == ["a", "b", "c"]
    assert isinstance(stat, ZnodeStat)
    assert stat == zk.exists(base)
    assert stat.numChildren == 3
    assert zk.get_children(base + "/a") == []


def test_get_children_missing(zk, base):
    with pytest.raises(NoNodeError):
        zk.get_children(base + "/missing")
    with pytest.raises(NoNodeError):
        zk.get_children(base + "/missing", include_data=True)


def test_exists_missing_returns_none(zk, base):
    assert zk.exists(base + "/nope") is None


def test_sync(zk, make_client, base):
    other = make_client()
    other.create(base + "/s", b"v")
    assert zk.sync(base) == base
    assert zk.get(base + "/s")[0] == b"v"


def test_get_all_children_number(zk, base):
    assert zkext.get_all_children_number(zk, base) == 0
    zk.create(base + "/a/b/c", makepath=True)
    zk.create(base + "/a/d")
    zk.create(base + "/e")
    assert zkext.get_all_children_number(zk, base) == 5
    assert zkext.get_all_children_number(zk, base + "/a") == 3
    assert zkext.get_all_children_number(zk, base + "/a/b/c") == 0
    with pytest.raises(NoNodeError):
        zkext.get_all_children_number(zk, base + "/missing")


def test_get_ephemerals(zk, make_client, base):
    zk.create(base + "/e1", ephemeral=True)
    zk.create(base + "/sub/e2", ephemeral=True, makepath=True)
    zk.create(base + "/p")
    other = make_client()
    other.create(base + "/theirs", ephemeral=True)
    assert sorted(zkext.get_ephemerals(zk, base)) == sorted([base + "/e1", base + "/sub/e2"])
    assert zkext.get_ephemerals(zk, base + "/sub") == [base + "/sub/e2"]
    # the prefix is a plain string prefix, not a path
    assert zkext.get_ephemerals(zk, base + "/e") == [base + "/e1"]
    assert zkext.get_ephemerals(zk, base + "/nothing") == []
    mine_everywhere = zkext.get_ephemerals(zk, "/")
    assert sorted(mine_everywhere) == sorted([base + "/e1", base + "/sub/e2"])
    assert zkext.get_ephemerals(other, base) == [base + "/theirs"]


def test_who_am_i(zk):
    assert zkext.who_am_i(zk) == [("ip", "127.0.0.1")]


def test_server_version_via_envi(zk):
    version = zk.server_version()
    assert tuple(version[:2]) >= (3, 5)
