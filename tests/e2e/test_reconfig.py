"""Dynamic reconfiguration through kazoo's reconfig API (opcode 16), on a
3-member ensemble of the selected target (Warden or ZooKeeper 3.8) with
reconfigEnabled and the `super:test` superuser kazoo's own tests use; and
what a standalone server answers. Members joining for real, leaving and
changing role under write load are in actors/tests/ensemble.rs."""

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadArgumentsError,
    BadVersionError,
    MarshallingError,
    NewConfigNoQuorumError,
    NoAuthError,
    ReconfigDisabledError,
    UnimplementedError,
)

from conftest import Ensemble, Server, single_node_only
from rawzk import four_letter, wait_until

pytestmark = single_node_only  # starts its own ensemble; once per run is enough

SUPER = {"zookeeper.DigestAuthenticationProvider.superDigest": "super:D/InIHSb7yEEbrWz8b9l71RjZJU="}
SETTINGS = dict(SUPER, reconfigEnabled="true")


@pytest.fixture(scope="module")
def ensemble():
    e = Ensemble(SETTINGS, size=3).start()
    yield e
    e.stop()


def client(member, **kwargs):
    zk = KazooClient(hosts=member.hostport, timeout=10, **kwargs)
    zk.start(timeout=15)
    return zk


@pytest.fixture
def zk(ensemble):
    c = client(ensemble.members[0])
    yield c
    c.stop()
    c.close()


@pytest.fixture
def su(ensemble):
    c = client(ensemble.members[1], auth_data=[("digest", "super:test")])
    yield c
    c.stop()
    c.close()


def reconfig(zk, joining=None, leaving=None, new_members=None, from_config=-1):
    return zk.reconfig(joining=joining, leaving=leaving, new_members=new_members, from_config=from_config)


def version_of(data):
    last = data.decode().split("\n")[-1]
    assert last.startswith("version="), data
    return int(last.split("=")[1], 16)


def configs(ensemble):
    out = []
    for m in ensemble.members:
        c = client(m)
        c.sync("/")
        out.append(c.get("/zookeeper/config")[0])
        c.stop()
        c.close()
    return out


def test_config_znode_holds_the_members_and_a_version(ensemble, zk):
    # The static config gets a version once a leader is established.
    assert wait_until(lambda: version_of(zk.get("/zookeeper/config")[0]) > 0, timeout=10)
    data, stat = zk.get("/zookeeper/config")
    lines = data.decode().split("\n")
    for i in (1, 2, 3):
        assert "server.%d=%s:participant" % (i, ensemble.settings["server.%d" % i]) in lines
    assert (stat.version, stat.aversion, stat.mzxid) == (-1, -1, version_of(data))
    assert len(set(configs(ensemble))) == 1, "every member shows the same config"


def test_conf_shows_the_quorum_settings_and_the_membership(ensemble, zk):
    member = ensemble.members[0]
    text = four_letter(member.hostport, b"conf").decode()
    quorum_port, election_port = ensemble.settings["server.1"].split(":")[1:3]
    for line in ("initLimit=10", "syncLimit=5", "electionAlg=3", "peerType=0",
                 "quorumPort=" + quorum_port, "electionPort=" + election_port):
        assert line in text.split("\n"), text
    zk.sync("/")
    assert text.split("membership: \n", 1)[1] == zk.get("/zookeeper/config")[0].decode(), text


def test_reconfig_needs_write_permission_on_the_config_znode(zk):
    # kazoo's test_no_super_auth: an observer does not change the quorum, so
    # the ACL check (after the quorum check) is what refuses.
    with pytest.raises(NoAuthError):
        reconfig(zk, joining="server.999=0.0.0.0:1234:2345:observer;3456")


def test_bad_server_specs_are_bad_arguments(zk, su):
    with pytest.raises(BadArgumentsError):
        reconfig(zk, joining="some thing")
    with pytest.raises(BadArgumentsError):
        reconfig(su, joining="server.10=127.0.0.1:1234:2345:observer")  # no client port
    with pytest.raises(MarshallingError):
        reconfig(su, leaving="x")
    with pytest.raises(BadArgumentsError):
        reconfig(su, leaving="1,2")  # one voter is no ensemble (standaloneEnabled)


def test_a_new_config_without_a_synced_quorum_is_refused(zk, su):
    line1 = [l for l in zk.get("/zookeeper/config")[0].decode().split("\n") if l.startswith("server.1=")][0]
    members = ",".join([line1, "server.7=127.0.0.1:1:2:participant;3", "server.8=127.0.0.1:4:5:participant;6"])
    with pytest.raises(NewConfigNoQuorumError):
        reconfig(su, new_members=members)


def test_add_and_remove_an_observer_with_version_checks(ensemble, zk, su):
    joining = "server.100=0.0.0.0:1234:2345:observer;0.0.0.0:3456"
    before = version_of(zk.get("/zookeeper/config")[0])
    data, stat = reconfig(su, joining=joining, from_config=before)
    assert joining.encode() in data
    assert version_of(data) == stat.mzxid > before
    assert stat.version == -1
    data, _ = reconfig(su, leaving="100")
    assert joining.encode() not in data
    # A server that is not there leaves without complaint (a new version all the same).
    again, _ = reconfig(su, leaving="100")
    assert version_of(again) > version_of(data)
    with pytest.raises(BadVersionError):
        reconfig(su, joining=joining, from_config=version_of(again) + 1)
    # Without a role the joiner is a participant; a bare client port means every interface.
    data, _ = reconfig(su, joining="server.101=127.0.0.1:1235:2346;3457")
    assert b"server.101=127.0.0.1:1235:2346:participant;0.0.0.0:3457" in data
    reconfig(su, leaving="101")
    seen = configs(ensemble)
    assert len(set(seen)) == 1 and b"server.101" not in seen[0], seen


def test_standalone_answers_reconfig_disabled_or_unimplemented():
    plain = Server({}).start()
    try:
        zk = client(plain)
        data, stat = zk.get("/zookeeper/config")
        assert (data, stat.aversion) == (b"", -1)
        with pytest.raises(ReconfigDisabledError):
            reconfig(zk, joining="server.9=127.0.0.1:14:15:observer;16")
        zk.stop()
    finally:
        plain.stop()
    enabled = Server(SETTINGS).start()
    try:
        zk = client(enabled, auth_data=[("digest", "super:test")])
        with pytest.raises(UnimplementedError):
            reconfig(zk, joining="server.9=127.0.0.1:14:15:observer;16")
        zk.stop()
    finally:
        enabled.stop()


def test_zkcli_reconfig_and_config_commands(ensemble):
    """ZooKeeper's own shell (zkCli.sh's main class) drives reconfig too."""
    from test_tls_sasl import zkcli

    spec = "server.102=127.0.0.1:1236:2347:observer;127.0.0.1:3458"
    out = zkcli(ensemble.members[1].hostport, ["addauth digest super:test", "reconfig -add " + spec, "config"])
    assert out.count(spec) >= 2, out  # in reconfig's answer and in config's
    out = zkcli(ensemble.members[0].hostport, ["addauth digest super:test", "reconfig -remove 102", "config"])
    assert "server.102" not in out.split("reconfig -remove 102", 1)[-1], out
    assert "version=" in out

