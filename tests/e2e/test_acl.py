"""ACLs: digest, world, auth, ip, super digest; get/set ACL with versions."""

import pytest
from kazoo.exceptions import (
    AuthFailedError,
    BadVersionError,
    InvalidACLError,
    NoAuthError,
    NoNodeError,
)
from kazoo.security import (
    ACL,
    CREATOR_ALL_ACL,
    Id,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    Permissions,
    make_acl,
    make_digest_acl,
    make_digest_acl_credential,
)

import rawzk
from conftest import TARGET
import zkext
from rawzk import RawClient, wait_closed

SUPER_DIGEST = make_digest_acl_credential("super", "s3cret")  # "super:<base64 sha1>"
SERVER_SETTINGS = {"zookeeper.DigestAuthenticationProvider.superDigest": SUPER_DIGEST}


def assert_exists_acl(client, path):
    """exists on a node the client may not READ.

    Debian's ZooKeeper 3.8.0 answers it; ZooKeeper 3.8.4+ and 3.9 check READ
    (ZOOKEEPER-2590, an information leak fix), and so does Warden.
    """
    if TARGET == "zookeeper":
        assert client.exists(path) is not None
    else:
        with pytest.raises(NoAuthError):
            client.exists(path)


@pytest.fixture
def alice(make_client):
    c = make_client()
    c.add_auth("digest", "alice:pw")
    return c


@pytest.fixture
def anon(make_client):
    return make_client()


def test_digest_acl_denies_without_auth(alice, anon, base):
    path = alice.create(base + "/secret", b"s", acl=[make_digest_acl("alice", "pw", all=True)])
    with pytest.raises(NoAuthError):
        anon.get(path)
    with pytest.raises(NoAuthError):
        anon.set(path, b"x")
    with pytest.raises(NoAuthError):
        anon.get_children(path)
    with pytest.raises(NoAuthError):
        anon.create(path + "/child")
    with pytest.raises(NoAuthError):
        anon.set_acls(path, OPEN_ACL_UNSAFE)
    assert_exists_acl(anon, path)
    # the owner can do everything
    assert alice.get(path)[0] == b"s"
    alice.set(path, b"t")
    alice.create(path + "/child")
    assert alice.get_children(path) == ["child"]


def test_digest_auth_added_later_grants_access(alice, anon, base):
    path = alice.create(base + "/secret", b"s", acl=[make_digest_acl("alice", "pw", read=True)])
    with pytest.raises(NoAuthError):
        anon.get(path)
    anon.add_auth("digest", "alice:pw")
    assert anon.get(path)[0] == b"s"
    # read-only ACL: writes still denied
    with pytest.raises(NoAuthError):
        anon.set(path, b"x")


def test_wrong_digest_password_is_another_identity(alice, make_client, base):
    path = alice.create(base + "/secret", b"s", acl=[make_digest_acl("alice", "pw", all=True)])
    mallory = make_client()
    mallory.add_auth("digest", "alice:wrong")  # succeeds, but as a different id
    with pytest.raises(NoAuthError):
        mallory.get(path)


def test_world_read_only(zk, anon, base):
    path = zk.create(base + "/ro", b"r", acl=READ_ACL_UNSAFE)
    assert anon.get(path)[0] == b"r"
    assert anon.get_children(path) == []
    with pytest.raises(NoAuthError):
        anon.set(path, b"x")
    with pytest.raises(NoAuthError):
        anon.create(path + "/child")
    with pytest.raises(NoAuthError):
        anon.set_acls(path, OPEN_ACL_UNSAFE)
    # deleting is governed by the *parent's* DELETE permission (base is open)
    anon.delete(path)
    assert zk.exists(path) is None


def test_delete_needs_parent_delete_permission(zk, anon, base):
    parent = zk.create(
        base + "/p", acl=[make_acl("world", "anyone", read=True, create=True, write=True, admin=True)]
    )
    child = anon.create(parent + "/c")
    with pytest.raises(NoAuthError):
        anon.delete(child)
    zk.set_acls(parent, OPEN_ACL_UNSAFE)
    anon.delete(child)
    assert zk.exists(child) is None


def test_acl_is_not_inherited(zk, anon, base):
    parent = zk.create(base + "/p", acl=[make_acl("world", "anyone", read=True, create=True)])
    child = anon.create(parent + "/c", b"c")
    assert anon.get_acls(child)[0] == OPEN_ACL_UNSAFE
    anon.set(child, b"d")


def test_auth_scheme_acl(alice, anon, base):
    path = alice.create(base + "/mine", b"m", acl=CREATOR_ALL_ACL)  # auth:: -> creator's ids
    acls, _ = alice.get_acls(path)
    assert len(acls) == 1
    assert acls[0].perms == Permissions.ALL
    assert acls[0].id.scheme == "digest"
    assert acls[0].id.id == make_digest_acl_credential("alice", "pw")
    with pytest.raises(NoAuthError):
        anon.get(path)
    assert alice.get(path)[0] == b"m"


def test_auth_scheme_without_authenticated_id_is_invalid(anon, base):
    with pytest.raises(InvalidACLError):
        anon.create(base + "/x", acl=CREATOR_ALL_ACL)
    assert anon.exists(base + "/x") is None


@pytest.mark.parametrize(
    "acl",
    [
        [ACL(Permissions.ALL, Id("bogus", "x"))],
        [ACL(Permissions.ALL, Id("world", "someone"))],
        [ACL(Permissions.ALL, Id("digest", "nocolon"))],
        [ACL(Permissions.ALL, Id("ip", "999.1.1.1"))],
        [ACL(Permissions.ALL, Id("ip", "127.0.0.1/99"))],
    ],
)
def test_invalid_acl(zk, base, acl):
    with pytest.raises(InvalidACLError):
        zk.create(base + "/x", acl=acl)
    with pytest.raises(InvalidACLError):
        zk.set_acls(base, acl)
    assert zk.exists(base + "/x") is None
    assert zk.get_acls(base)[0] == OPEN_ACL_UNSAFE


def test_empty_acl_is_invalid(zk, base):
    with pytest.raises(InvalidACLError):
        zkext.call(zk, zkext.RawCreate(base + "/x", b"", [], 0))


def test_get_set_acls_with_version(zk, base):
    path = zk.create(base + "/v")
    acls, stat = zk.get_acls(path)
    assert acls == OPEN_ACL_UNSAFE
    assert stat.aversion == 0
    assert stat == zk.exists(path)
    new = [make_acl("world", "anyone", read=True, write=True, admin=True)]
    with pytest.raises(BadVersionError):
        zk.set_acls(path, new, version=1)
    s1 = zk.set_acls(path, new, version=0)
    assert s1.aversion == 1
    acls, stat = zk.get_acls(path)
    assert acls == new
    assert acls[0].perms == Permissions.READ | Permissions.WRITE | Permissions.ADMIN
    assert stat.aversion == 1
    assert zk.set_acls(path, OPEN_ACL_UNSAFE, version=-1).aversion == 2


def test_multiple_acl_entries(alice, anon, base):
    acl = [make_digest_acl("alice", "pw", all=True), make_acl("world", "anyone", read=True)]
    path = alice.create(base + "/mixed", b"m", acl=acl)
    assert anon.get(path)[0] == b"m"
    with pytest.raises(NoAuthError):
        anon.set(path, b"x")
    alice.set(path, b"y")
    got, _ = alice.get_acls(path)
    assert sorted(got) == sorted(acl)
    # without ADMIN permission ZooKeeper redacts digest hashes in getACL
    got, _ = anon.get_acls(path)
    assert sorted(got) == sorted(
        [ACL(Permissions.ALL, Id("digest", "alice:x")), make_acl("world", "anyone", read=True)]
    )


def test_set_acls_needs_admin(zk, anon, base):
    path = zk.create(base + "/noadmin", acl=[make_acl("world", "anyone", read=True, write=True)])
    anon.set(path, b"w")
    with pytest.raises(NoAuthError):
        anon.set_acls(path, OPEN_ACL_UNSAFE)


def test_get_acls_needs_read_or_admin(zk, make_client, base):
    path = zk.create(base + "/none", acl=[make_acl("world", "anyone", write=True)])
    with pytest.raises(NoAuthError):
        make_client().get_acls(path)
    admin_only = zk.create(base + "/admin", acl=[make_acl("world", "anyone", admin=True)])
    acls, _ = make_client().get_acls(admin_only)
    assert acls[0].perms == Permissions.ADMIN


def test_zero_permission_node(zk, anon, base):
    path = zk.create(base + "/zero", b"z", acl=[ACL(0, Id("world", "anyone"))])
    assert_exists_acl(anon, path)
    with pytest.raises(NoAuthError):
        anon.get(path)
    with pytest.raises(NoAuthError):
        anon.set(path, b"x")


def test_super_digest_bypasses_acls(alice, make_client, base):
    path = alice.create(base + "/private", b"p", acl=[make_digest_acl("alice", "pw", all=True)])
    zero = alice.create(base + "/zero", b"z", acl=[ACL(0, Id("world", "anyone"))])
    root = make_client()
    root.add_auth("digest", "super:s3cret")
    assert root.get(path)[0] == b"p"
    assert root.get(zero)[0] == b"z"
    root.set(path, b"overwritten")
    root.set_acls(zero, OPEN_ACL_UNSAFE)
    assert alice.get(path)[0] == b"overwritten"
    # wrong super password is just another digest identity
    impostor = make_client()
    impostor.add_auth("digest", "super:nope")
    with pytest.raises(NoAuthError):
        impostor.get(path)


def test_ip_acl(zk, anon, base):
    local = zk.create(base + "/local", b"l", acl=[make_acl("ip", "127.0.0.1", read=True)])
    assert anon.get(local)[0] == b"l"
    with pytest.raises(NoAuthError):
        anon.set(local, b"x")
    cidr = zk.create(base + "/cidr", b"c", acl=[make_acl("ip", "127.0.0.0/8", all=True)])
    assert anon.get(cidr)[0] == b"c"
    anon.set(cidr, b"d")
    other = zk.create(base + "/elsewhere", b"e", acl=[make_acl("ip", "10.1.2.3", all=True)])
    with pytest.raises(NoAuthError):
        anon.get(other)
    other_net = zk.create(base + "/othernet", b"e", acl=[make_acl("ip", "10.0.0.0/8", all=True)])
    with pytest.raises(NoAuthError):
        anon.get(other_net)


def test_who_am_i_reports_auth_ids(alice):
    ids = zkext.who_am_i(alice)
    assert ("ip", "127.0.0.1") in ids
    assert ("digest", "alice") in ids
    assert len(ids) == 2


def test_unknown_auth_scheme_fails_and_closes_connection(server):
    raw = RawClient(server.hostport, timeout_ms=30000)
    try:
        rep = raw.add_auth("bogus", b"whatever")
        assert rep.xid == rawzk.XID_AUTH
        assert rep.err == rawzk.ERR_AUTH_FAILED
        closed, _ = wait_closed(raw.sock, 5)
        assert closed
    finally:
        raw.close()


def test_unknown_auth_scheme_kazoo(make_client):
    zk = make_client()
    with pytest.raises(AuthFailedError):
        zk.add_auth("bogus", "whatever")


def test_digest_auth_reply(server):
    raw = RawClient(server.hostport, timeout_ms=30000)
    try:
        rep = raw.add_auth("digest", b"bob:pw")
        assert rep.xid == rawzk.XID_AUTH
        assert rep.err == 0
        assert raw.ping().err == 0
    finally:
        raw.close_session()


def test_acl_checked_in_multi(alice, anon, base):
    path = alice.create(base + "/locked", b"l", acl=[make_digest_acl("alice", "pw", all=True)])
    t = anon.transaction()
    t.create(base + "/free")
    t.set_data(path, b"x")
    results = t.commit()
    assert type(results[1]) is NoAuthError
    assert anon.exists(base + "/free") is None
    with pytest.raises(NoNodeError):
        anon.get(base + "/free")
