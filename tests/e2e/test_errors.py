"""Error codes for bad requests, checked against real ZooKeeper 3.8.

Paths are sent with zkext.raw_* so kazoo does not rewrite or reject them:
the server's validation is what is tested.
"""

import pytest
from kazoo.exceptions import (
    BadArgumentsError,
    BadVersionError,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
)
from kazoo.security import OPEN_ACL_UNSAFE

import zkext


@pytest.fixture
def tree(zk, base):
    """base/a with child base/a/b."""
    zk.create(base + "/a/b", b"b", makepath=True)
    return base


def test_no_node_errors(zk, base):
    missing = base + "/missing"
    with pytest.raises(NoNodeError):
        zk.get(missing)
    with pytest.raises(NoNodeError):
        zk.set(missing, b"x")
    with pytest.raises(NoNodeError):
        zk.delete(missing)
    with pytest.raises(NoNodeError):
        zk.get_children(missing)
    with pytest.raises(NoNodeError):
        zk.get_acls(missing)
    with pytest.raises(NoNodeError):
        zk.set_acls(missing, OPEN_ACL_UNSAFE)
    with pytest.raises(NoNodeError):
        zk.create(missing + "/child")  # parent missing
    assert zk.exists(missing) is None


def test_node_exists(zk, base):
    zk.create(base + "/x", b"1")
    with pytest.raises(NodeExistsError):
        zk.create(base + "/x", b"2")
    with pytest.raises(NodeExistsError):
        zk.create(base + "/x", ephemeral=True)
    assert zk.get(base + "/x")[0] == b"1"


def test_bad_version(zk, base):
    path = zk.create(base + "/v", b"0")
    with pytest.raises(BadVersionError):
        zk.set(path, b"1", version=1)
    assert zk.set(path, b"1", version=0).version == 1
    assert zk.set(path, b"2", version=-1).version == 2  # -1 matches any version
    with pytest.raises(BadVersionError):
        zk.delete(path, version=0)
    with pytest.raises(BadVersionError):
        zk.set_acls(path, OPEN_ACL_UNSAFE, version=3)
    assert zk.get(path)[0] == b"2"
    zk.delete(path, version=2)
    assert zk.exists(path) is None


def test_not_empty(zk, base):
    zk.create(base + "/p/c", makepath=True)
    with pytest.raises(NotEmptyError):
        zk.delete(base + "/p")
    zk.delete(base + "/p/c")
    zk.delete(base + "/p")


def test_delete_root_is_bad_arguments(zk):
    with pytest.raises(BadArgumentsError):
        zkext.raw_delete(zk, "/")
    assert zk.exists("/") is not None


def test_create_root_is_node_exists(zk):
    with pytest.raises(NodeExistsError):
        zkext.raw_create(zk, "/")


def test_zookeeper_system_node(zk):
    with pytest.raises(NodeExistsError):
        zkext.raw_create(zk, "/zookeeper")
    with pytest.raises(BadArgumentsError):
        zkext.raw_delete(zk, "/zookeeper")
    with pytest.raises(BadArgumentsError):
        zkext.raw_delete(zk, "/zookeeper/quota")
    children = zk.get_children("/zookeeper")
    assert "quota" in children
    assert "config" in children
    # /zookeeper/config is read-only for everyone
    with pytest.raises(NoAuthError):
        zk.set("/zookeeper/config", b"x")
    # ordinary nodes may be created below /zookeeper
    assert zkext.raw_create(zk, "/zookeeper/e2e-scratch") == "/zookeeper/e2e-scratch"
    zk.delete("/zookeeper/e2e-scratch")


@pytest.mark.parametrize(
    "rel, expected",
    [
        ("/a/", BadArgumentsError),       # trailing slash, parent exists
        ("/a/b/", BadArgumentsError),
        ("/a/.", BadArgumentsError),      # relative path component
        ("/a/..", BadArgumentsError),
        ("/a//b", NoNodeError),           # parent "/a/" is looked up first
        ("/a/./b", NoNodeError),          # parent "/a/." does not exist
        ("/a/../b", NoNodeError),
        ("/a//", NoNodeError),
        ("/missing/", NoNodeError),       # parent lookup precedes validation
        ("/a\u0000b", BadArgumentsError),  # control / reserved characters
        ("/a\u0001b", BadArgumentsError),
        ("/a\u007fb", BadArgumentsError),
        ("/a\ud7ffb\ufff0", BadArgumentsError),
    ],
)
def test_create_bad_paths(zk, tree, rel, expected):
    with pytest.raises(expected):
        zkext.raw_create(zk, tree + rel)
    assert sorted(zk.get_children(tree)) == ["a"]
    assert zk.get_children(tree + "/a") == ["b"]


@pytest.mark.parametrize("path", ["x", "", "/.", "/..", "//"])
def test_create_bad_absolute_paths(zk, path):
    with pytest.raises(BadArgumentsError):
        zkext.raw_create(zk, path)


def test_create_relative_path_with_slash_is_no_node(zk):
    # "a/b": the parent "a" is looked up (and not found) before validation
    with pytest.raises(NoNodeError):
        zkext.raw_create(zk, "a/b")


@pytest.mark.parametrize("rel", ["/a.b", "/...", "/.a", "/\u00e9", "/a\u00a0b", "/a b", "/a:b@c"])
def test_create_unusual_but_valid_names(zk, tree, rel):
    assert zkext.raw_create(zk, tree + rel) == tree + rel
    assert zk.exists(tree + rel) is not None


@pytest.mark.parametrize("rel", ["/a/", "/a//b", "/a/./b", "/a/../b", "/a/.", "/a/b/"])
def test_reads_and_writes_on_malformed_paths(zk, tree, rel):
    path = tree + rel
    # reads do not validate the path: the node simply does not exist
    with pytest.raises(NoNodeError):
        zkext.raw_get_data(zk, path)
    assert zkext.raw_exists(zk, path) is None
    with pytest.raises(NoNodeError):
        zkext.raw_delete(zk, path)
    # setData validates the path
    with pytest.raises(BadArgumentsError):
        zkext.raw_set_data(zk, path, b"x")
    assert zk.get(tree + "/a/b")[0] == b"b"


def test_relative_path_ops(zk):
    with pytest.raises(NoNodeError):
        zkext.raw_get_data(zk, "x")
    assert zkext.raw_exists(zk, "x") is None
    with pytest.raises(BadArgumentsError):
        zkext.raw_delete(zk, "x")
    with pytest.raises(BadArgumentsError):
        zkext.raw_set_data(zk, "x", b"d")


def test_set_on_missing_node(zk, base):
    with pytest.raises(NoNodeError):
        zk.set(base + "/nope", b"d")
    with pytest.raises(NoNodeError):
        zk.set(base + "/nope", b"d", version=0)


def test_error_does_not_break_session(zk, base):
    sid = zk.client_id[0]
    for _ in range(3):
        with pytest.raises(NoNodeError):
            zk.get(base + "/nope")
        with pytest.raises(BadArgumentsError):
            zkext.raw_create(zk, "bad")
    assert zk.client_id[0] == sid
    assert zk.create(base + "/ok") == base + "/ok"
