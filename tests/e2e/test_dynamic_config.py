"""dynamicConfigFile as ZooKeeper reads and writes it: members started from
a static zoo.cfg that points at `zoo.cfg.dynamic.<hex version>` take their
member list and its version from there; a committed reconfig writes
`<zoo.cfg>.dynamic.<new version>` beside each member's zoo.cfg and rewrites
the static file to point at it; a member restarted from the rewritten files
rejoins with the new config; an ensemble whose members are still in zoo.cfg
gets a `zoo.cfg.bak`. Runs against Warden and ZooKeeper 3.8 alike."""

import os
import signal

import pytest
from kazoo.client import KazooClient

from conftest import TARGET, WARDEN_BIN, ZK_JARS, ZK_MAIN, Server, free_port, is_sysprop, single_node_only
from rawzk import four_letter, wait_until

pytestmark = single_node_only  # starts its own ensembles

SUPER_DIGEST = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="  # super:test
INITIAL_VERSION = 0x100000000


class FileMember(Server):
    """A member started from its own zoo.cfg (written once: a reconfig may rewrite it)."""

    def __init__(self, settings, dynamic_text=None):
        super().__init__(settings)
        self.cfg = os.path.join(self.tmpdir, "zoo.cfg")
        self.dynamic_text = dynamic_text
        self._written = False

    def write_files(self):
        s = dict(self.settings)
        s.update(clientPort=str(self.port), clientPortAddress=self.host, dataDir=self.data_dir)
        props = {k: v for k, v in s.items() if is_sysprop(k)} if TARGET == "zookeeper" else {}
        if self.dynamic_text is not None:
            dyn = "%s.dynamic.%x" % (self.cfg, INITIAL_VERSION)
            with open(dyn, "w") as f:
                f.write(self.dynamic_text)
            s = {k: v for k, v in s.items() if not k.startswith("server.")}
            s["dynamicConfigFile"] = dyn
        self.original = "".join("%s=%s\n" % (k, v) for k, v in s.items() if k not in props)
        with open(self.cfg, "w") as f:
            f.write(self.original)
        self._props = ["-D%s=%s" % kv for kv in props.items()]
        if TARGET == "zookeeper":
            super().command()  # writes log4j.properties (and a zoo.cfg we replace below)
            with open(self.cfg, "w") as f:
                f.write("".join("%s=%s\n" % (k, v) for k, v in s.items() if k not in props))

    def command(self):
        if not self._written:
            self.write_files()
            self._written = True
        if TARGET == "warden":
            return [WARDEN_BIN, "server", "--config", self.cfg]
        log4j = os.path.join(self.tmpdir, "log4j.properties")
        return ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", ":".join(ZK_JARS),
                "-Dlog4j.configuration=file:" + log4j, *self._props, ZK_MAIN, self.cfg]


def ensemble(dynamic):
    settings = {"reconfigEnabled": "true", "standaloneEnabled": "false", "initLimit": "10", "syncLimit": "5",
                "zookeeper.DigestAuthenticationProvider.superDigest": SUPER_DIGEST}
    ports = [(free_port(), free_port()) for _ in range(3)]
    members = []
    for i in range(3):
        members.append(FileMember(settings))
    lines = ["server.%d=127.0.0.1:%d:%d:participant;127.0.0.1:%d" % (i + 1, q, e, m.port) for i, ((q, e), m) in enumerate(zip(ports, members))]
    for i, m in enumerate(members, 1):
        m.myid = i
        if dynamic:
            m.dynamic_text = "\n".join(lines) + "\n"
        else:
            m.settings.update(line.split("=", 1) for line in lines)
    for m in members:
        m.launch()
    try:
        for m in members:
            m.wait_ready()
    except Exception:
        for m in members:
            m.stop()
        raise
    return members


def connect(member, **kw):
    zk = KazooClient(hosts=member.hostport, timeout=10, **kw)
    zk.start(timeout=20)
    return zk


def config_of(zk):
    zk.sync("/zookeeper/config")
    data, _ = zk.get("/zookeeper/config")
    lines = data.decode().strip().splitlines()
    version = int([line for line in lines if line.startswith("version=")][0].split("=", 1)[1], 16)
    return sorted(line for line in lines if line.startswith("server.")), version


def static_keys(path):
    with open(path) as f:
        return dict(line.strip().split("=", 1) for line in f if "=" in line and not line.startswith("#"))


def test_members_start_from_the_dynamic_file_and_reconfig_rewrites_it():
    members = ensemble(dynamic=True)
    try:
        zk = connect(members[0])
        servers, version = config_of(zk)
        assert version == INITIAL_VERSION and len(servers) == 3
        # Remove a follower (removing the leader would drop the reconfig's own connection).
        modes = [four_letter(m.hostport, "srvr").decode() for m in members]
        gone = [i for i, mode in enumerate(modes) if "Mode: follower" in mode][-1]
        members.append(members.pop(gone))
        su = connect(members[1], auth_data=[("digest", "super:test")])
        su.reconfig(joining=None, leaving=str(members[2].myid), new_members=None)
        servers, version = wait_until(lambda: (lambda c: c if c[1] != INITIAL_VERSION else None)(config_of(su)), 20, message="the reconfig")
        assert len(servers) == 2 and version > INITIAL_VERSION
        su.stop()
        zk.stop()
        for m in members[:2]:
            dyn = "%s.dynamic.%x" % (m.cfg, version)
            wait_until(lambda: static_keys(m.cfg).get("dynamicConfigFile") == os.path.realpath(dyn), 20, message="zoo.cfg pointing at " + dyn)
            keys = static_keys(m.cfg)
            assert not any(k.startswith("server.") for k in keys)
            assert keys["tickTime"] == m.settings["tickTime"] and keys["dataDir"] == m.data_dir
            with open(dyn) as f:
                assert sorted(f.read().strip().splitlines()) == servers
            # The file it started from is left as it was.
            assert os.path.exists("%s.dynamic.%x" % (m.cfg, INITIAL_VERSION))
        # Restarted from the rewritten files, the two members serve the new config.
        for m in members:
            m.kill(signal.SIGTERM)
        for m in members[:2]:
            m.launch()
        for m in members[:2]:
            m.wait_ready()
        zk = connect(members[0])
        assert config_of(zk) == (servers, version)
        zk.create("/after-restart", b"x")
        zk.stop()
    finally:
        for m in members:
            m.stop()


def test_members_in_the_static_file_get_a_backup_then_a_dynamic_file():
    members = ensemble(dynamic=False)
    try:
        zk = connect(members[0])
        # Once a leader is established the config gets a version (ZOOKEEPER-1783), which
        # commits like a reconfig: the member lines move to a dynamic file.
        servers, version = wait_until(lambda: (lambda c: c if c[1] > 0 else None)(config_of(zk)), 20, message="a config version")
        zk.stop()
        for m in members:
            with open(m.cfg + ".bak") as bak:
                assert bak.read() == m.original
            dyn = "%s.dynamic.%x" % (m.cfg, version)
            wait_until(lambda: static_keys(m.cfg).get("dynamicConfigFile") == os.path.realpath(dyn), 20, message="zoo.cfg pointing at " + dyn)
            assert not any(k.startswith("server.") for k in static_keys(m.cfg))
            with open(dyn) as f:
                assert sorted(f.read().strip().splitlines()) == servers
    finally:
        for m in members:
            m.stop()


@pytest.mark.skipif(TARGET != "warden", reason="the error text is Warden's; ZooKeeper stops with a ConfigException")
def test_member_lines_beside_a_dynamic_file_are_refused(tmp_path):
    import subprocess

    dyn = tmp_path / "zoo.cfg.dynamic.5"
    dyn.write_text("server.1=127.0.0.1:2888:3888\n")
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text("dataDir=%s\nserver.2=127.0.0.1:2889:3889\ndynamicConfigFile=%s\n" % (tmp_path / "data", dyn))
    out = subprocess.run([WARDEN_BIN, "server", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "separate dynamic config file" in out.stderr + out.stdout
