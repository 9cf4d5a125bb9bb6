"""kazoo's own SSL test, unchanged, with kazoo's own harness.

``kazoo.tests.test_client::TestSSLClient`` runs on ``kazoo.testing``, which
makes a CA and X.509 v1 server and client certificates with pyOpenSSL,
saves them as JKS stores with pyjks (password "apassword"), writes a zoo.cfg
with ``ssl.keyStore.location=…/keystore.jks``, ``ssl.trustStore.location=…/
truststore.jks`` and their passwords, and starts a 3-member cluster by
running ``java -cp … QuorumPeerMain zoo.cfg``. Against ZooKeeper that is the
real java with Debian's jars; against Warden, ``java`` on PATH is a stand-in
that runs ``warden server --config zoo.cfg`` with the ``-D`` properties as
``--set`` (JVM-only ones left out). The test then connects over the secure
port with the client certificate and the CA and creates a node.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap

import pytest

from conftest import TARGET, WARDEN_BIN, ZK_JARS, single_node_only

pytestmark = single_node_only

# The JVM-only properties kazoo's harness passes; everything else is a ZooKeeper setting.
JAVA_STAND_IN = textwrap.dedent("""\
    #!%s
    import os, sys
    args, sets, i = sys.argv[1:], [], 0
    jvm_only = ("file.encoding", "zookeeper.log.dir", "zookeeper.root.logger", "log4j.", "java.awt.headless")
    while i < len(args) - 2:
        if args[i] in ("-cp", "-classpath"):
            i += 2
            continue
        if args[i].startswith("-D"):
            key, _, value = args[i][2:].partition("=")
            if not key.startswith(jvm_only):
                sets += ["--set", "%%s=%%s" %% (key, value)]
        i += 1
    with open(os.path.join(os.path.dirname(__file__), "started"), "a") as f, open(args[-1]) as cfg:
        f.write(cfg.read() + "\\n----\\n")
    warden = os.environ["WARDEN_BIN"]
    os.execv(warden, [warden, "server", "--config", args[-1], *sets])
    """) % sys.executable

# Jars beyond the suite's own that ZooKeeper's QuorumPeerMain needs when kazoo's harness runs it.
EXTRA_ZK_JARS = ["netty-buffer", "netty-transport", "netty-common", "netty-transport-native-unix-common",
                 "netty-transport-native-epoll", "slf4j-api", "commons-cli", "metrics-core", "zookeeper-jute"]


def harness_deps_missing():
    probe = subprocess.run([sys.executable, "-c", "import jks, OpenSSL, kazoo.testing"], capture_output=True)
    return probe.returncode != 0


def free_port_block(span=30):
    """A base port with `span` free ports above it (the harness uses base+10*i+0..4)."""
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
        s.close()
        if base + span > 65000:
            continue
        socks = []
        try:
            for p in range(base, base + span):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no block of free ports")


def test_kazoo_ssl_client_test_passes_with_kazoos_jks_stores():
    if harness_deps_missing():
        msg = "kazoo's harness needs pyjks and pyOpenSSL (tests/requirements.txt)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    work = tempfile.mkdtemp(prefix="warden-kazoo-ssl-")
    env = dict(os.environ, ZOOKEEPER_VERSION="3.8.0", ZOOKEEPER_PORT_OFFSET=str(free_port_block()), ZOOKEEPER_CLUSTER_SIZE="3")
    for k in ("ZOOKEEPER_PATH", "ZOOKEEPER_JAAS_AUTH", "ZOOKEEPER_OBSERVER_START_ID"):
        env.pop(k, None)
    if TARGET == "warden":
        stand_in = os.path.join(work, "java")
        with open(stand_in, "w") as f:
            f.write(JAVA_STAND_IN)
        os.chmod(stand_in, 0o755)
        env.update(PATH=work + os.pathsep + env["PATH"], WARDEN_BIN=WARDEN_BIN, ZOOKEEPER_CLASSPATH="warden")
    else:
        jars = ZK_JARS + ["/usr/share/java/%s.jar" % j for j in EXTRA_ZK_JARS]
        env["ZOOKEEPER_CLASSPATH"] = os.pathsep.join(jars)
    try:
        check_harness_run(work, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_harness_run(work, env):
    # Its own process group: if this test is cut short, the members the harness started go too.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", "kazoo.tests.test_client", "-k", "TestSSLClient"],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=240)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0 and "1 passed" in out, out[-4000:]
    if TARGET == "warden":
        with open(os.path.join(work, "started")) as f:
            configs = f.read().split("\n----\n")[:-1]
        assert len(configs) == 3, "three Warden members were started by the harness: %r" % configs
        for cfg in configs:
            assert "keystore.jks" in cfg and "truststore.jks" in cfg and "ssl.keyStore.password=apassword" in cfg, cfg
