"""Fixtures for the Warden end-to-end suite.

The target server is chosen by WARDEN_TEST_TARGET:

* ``warden`` (default): the binary at $WARDEN_BIN (default
  <repo>/target/release/warden), started as
  ``warden server --set key=value ...``.
* ``zookeeper``: the real Apache ZooKeeper (Debian's libzookeeper-java),
  with zoo.cfg keys written to zoo.cfg and system-property keys passed as -D.

With WARDEN_TEST_ENSEMBLE=N (N > 1) every server is instead an ensemble of N
members of the selected target on loopback; clients talk to member 1, which
is a follower when histories are equal (the highest id leads), so writes are
forwarded. Tests that only make sense on one node are marked
``single_node_only``.

A test module may define ``SERVER_SETTINGS = {...}`` to override/add settings
for the module-scoped ``server``; ``start_server(settings)`` starts an extra
server for tests that need special settings.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from kazoo.client import KazooClient

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rawzk  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TARGET = os.environ.get("WARDEN_TEST_TARGET", "warden").strip().lower()
WARDEN_BIN = os.environ.get("WARDEN_BIN", str(REPO / "target" / "release" / "warden"))

ZK_JARS = [
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-log4j12.jar",
    "/usr/share/java/log4j-1.2.jar",
    # Jetty and Jackson for ZooKeeper's AdminServer (admin.enableServer).
    "/usr/share/java/jetty9-server.jar",
    "/usr/share/java/jetty9-servlet.jar",
    "/usr/share/java/jetty9-http.jar",
    "/usr/share/java/jetty9-io.jar",
    "/usr/share/java/jetty9-util.jar",
    "/usr/share/java/jetty9-security.jar",
    "/usr/share/java/servlet-api.jar",
    "/usr/share/java/jackson-databind.jar",
    "/usr/share/java/jackson-core.jar",
    "/usr/share/java/jackson-annotations.jar",
    # Netty's codec and SSL handler for NettyServerCnxnFactory (the TLS tests).
    "/usr/share/java/netty-codec.jar",
    "/usr/share/java/netty-handler.jar",
    "/usr/share/java/netty-resolver.jar",
]
ZK_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"

# Settings every server gets; a test's settings are layered on top.
BASE_SETTINGS = {
    "tickTime": "2000",
    "4lw.commands.whitelist": "*",
    "zookeeper.extendedTypesEnabled": "true",
    "znode.container.checkIntervalMs": "500",
}

# Keys that are Java system properties for ZooKeeper (everything else is zoo.cfg).
_SYSPROP_PREFIXES = ("zookeeper.", "znode.", "jute.")
_SYSPROP_KEYS = {"readonlymode.enabled", "java.security.auth.login.config"}

STARTUP_TIMEOUT = 30.0
ENSEMBLE = int(os.environ.get("WARDEN_TEST_ENSEMBLE", "1"))
single_node_only = pytest.mark.skipif(ENSEMBLE > 1, reason="about one node (its own ports, process or admin API), not an ensemble")
# Per-test wall-clock limit so a server that never answers cannot hang the run.
TEST_TIMEOUT = int(os.environ.get("WARDEN_TEST_TIMEOUT", "120"))


def is_sysprop(key):
    return key.startswith(_SYSPROP_PREFIXES) or key in _SYSPROP_KEYS


# Ports come from below the kernel's ephemeral range (32768..60999), where an
# outgoing client connection could take a port between probe and bind, and
# are never handed out twice by one process (as tests/support/ports.rs).
_PORT_FIRST, _PORT_SPAN = 20000, 12000
_port_next = [(os.getpid() * 7919 + time.time_ns()) % _PORT_SPAN]


def free_port():
    for _ in range(_PORT_SPAN):
        port = _PORT_FIRST + _port_next[0] % _PORT_SPAN
        _port_next[0] += 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port")


def ruok(hostport, timeout=1.0):
    try:
        return rawzk.four_letter(hostport, b"ruok", timeout=timeout) == b"imok"
    except OSError:
        return False


def handshake_ok(hostport):
    """True once a client session can be established (and closed again).

    ZooKeeper answers ruok before its request pipeline is up, so a real
    handshake is the readiness check that matters.
    """
    try:
        client = rawzk.RawClient(hostport, timeout_ms=30000, sock_timeout=2.0)
    except (OSError, rawzk.ConnectionClosed, ValueError):
        return False
    try:
        if client.connect_response.timeout <= 0:
            return False
        client.close_session()
        return True
    except (OSError, rawzk.ConnectionClosed, AssertionError):
        return False
    finally:
        client.close()


class Server:
    """One running server process (Warden or ZooKeeper)."""

    def __init__(self, settings=None):
        self.settings = dict(BASE_SETTINGS)
        self.settings.update({k: str(v) for k, v in (settings or {}).items()})
        self.tmpdir = tempfile.mkdtemp(prefix="warden-e2e-")
        self.data_dir = os.path.join(self.tmpdir, "data")
        os.makedirs(self.data_dir)
        self.log_path = os.path.join(self.tmpdir, "server.log")
        self.host = "127.0.0.1"
        self.port = free_port()
        self.hostport = "%s:%d" % (self.host, self.port)
        self.proc = None
        self._log = None
        self.myid = None

    @property
    def tick_ms(self):
        return int(self.settings["tickTime"])

    def command(self):
        s = dict(self.settings)
        s["clientPort"] = str(self.port)
        s["clientPortAddress"] = self.host
        s["dataDir"] = self.data_dir
        if TARGET == "warden":
            cmd = [WARDEN_BIN, "server"]
            for k, v in s.items():
                cmd += ["--set", "%s=%s" % (k, v)]
            return cmd
        if TARGET == "zookeeper":
            s.setdefault("admin.enableServer", "false")
            cfg_lines, props = [], []
            for k, v in s.items():
                if is_sysprop(k):
                    props.append("-D%s=%s" % (k, v))
                else:
                    cfg_lines.append("%s=%s" % (k, v))
            cfg = os.path.join(self.tmpdir, "zoo.cfg")
            with open(cfg, "w") as f:
                f.write("\n".join(cfg_lines) + "\n")
            log4j = os.path.join(self.tmpdir, "log4j.properties")
            with open(log4j, "w") as f:
                f.write(
                    "log4j.rootLogger=INFO, CONSOLE\n"
                    "log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n"
                    "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n"
                    "log4j.appender.CONSOLE.layout.ConversionPattern="
                    "%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n\n"
                )
            return [
                "java",
                "-Xmx512m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-cp", ":".join(ZK_JARS),
                "-Dlog4j.configuration=file:" + log4j,
                *props,
                ZK_MAIN,
                cfg,
            ]
        raise RuntimeError("unknown WARDEN_TEST_TARGET %r (want warden or zookeeper)" % TARGET)

    def start(self):
        self.launch()
        return self.wait_ready()

    def launch(self):
        if self.myid is not None:
            # Written once, before the process starts: rewriting it while a
            # member reads it at startup could show it an empty file.
            myid = os.path.join(self.data_dir, "myid")
            if not os.path.exists(myid):
                with open(myid + ".tmp", "w") as f:
                    f.write("%d\n" % self.myid)
                os.rename(myid + ".tmp", myid)
        cmd = self.command()
        if TARGET == "warden" and not os.path.exists(cmd[0]):
            raise RuntimeError("warden binary not found at %s (set WARDEN_BIN)" % cmd[0])
        self._cmd = cmd
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.tmpdir,
        )

    def wait_ready(self):
        # The command launch() ran; building it again would rewrite the
        # config files the starting process may be reading.
        cmd = self._cmd
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if ruok(self.hostport) and handshake_ok(self.hostport):
                return self
            time.sleep(0.1)
        rc = self.proc.poll()
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(
            "server did not answer ruok (exit code %r)\ncommand: %s\n--- log tail ---\n%s"
            % (rc, " ".join(cmd), tail)
        )

    def log_tail(self, lines=60):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def kill(self, sig=signal.SIGKILL):
        """Stop the process abruptly (a crash), keeping its data for restart()."""
        if self.alive():
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self):
        """Start again on the same port and data dir."""
        self.kill(signal.SIGTERM)
        return self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class Ensemble:
    """N members of the selected target on loopback, with Server's interface:
    clients use member 1; kill/restart/stop act on every member."""

    def __init__(self, settings=None, size=ENSEMBLE):
        self.members = [Server(settings) for _ in range(size)]
        quorum = {}
        for i, m in enumerate(self.members, 1):
            quorum["server.%d" % i] = "127.0.0.1:%d:%d" % (free_port(), free_port())
        for i, m in enumerate(self.members, 1):
            m.myid = i
            m.settings.setdefault("initLimit", "10")
            m.settings.setdefault("syncLimit", "5")
            m.settings.update(quorum)
        first = self.members[0]
        self.settings, self.host, self.port, self.hostport = first.settings, first.host, first.port, first.hostport
        self.data_dir, self.tmpdir = first.data_dir, first.tmpdir

    @property
    def tick_ms(self):
        return self.members[0].tick_ms

    @property
    def proc(self):
        return self.members[0].proc

    @property
    def all_hostports(self):
        return ",".join(m.hostport for m in self.members)

    def start(self):
        for m in self.members:
            m.launch()
        try:
            for m in self.members:
                m.wait_ready()
        except Exception:
            self.stop()
            raise
        return self

    def log_tail(self, lines=60):
        return "\n".join("--- member %d ---\n%s" % (m.myid, m.log_tail(lines)) for m in self.members)

    def kill(self, sig=signal.SIGKILL):
        for m in self.members:
            m.kill(sig)

    def restart(self):
        self.kill(signal.SIGTERM)
        return self.start()

    def alive(self):
        return all(m.alive() for m in self.members)

    def stop(self):
        for m in self.members:
            m.stop()


def start_server(settings=None):
    """Start a server (or, with WARDEN_TEST_ENSEMBLE, an ensemble) of the
    selected target with ``settings``; caller must stop() it."""
    if ENSEMBLE > 1:
        return Ensemble(settings).start()
    return Server(settings).start()


class TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _per_test_timeout(request):
    def on_alarm(signum, frame):
        raise TestTimeout("test exceeded %ds (WARDEN_TEST_TIMEOUT)" % TEST_TIMEOUT)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def server(request):
    srv = start_server(getattr(request.module, "SERVER_SETTINGS", {}))
    yield srv
    alive = srv.alive()
    tail = srv.log_tail() if not alive else ""
    srv.stop()
    if not alive:
        pytest.fail("server process died during the module\n" + tail)


@pytest.fixture
def hosts(server):
    return server.hostport


class ClientFactory:
    def __init__(self, hostport):
        self.hostport = hostport
        self.clients = []

    def __call__(self, start=True, hosts=None, **kwargs):
        kwargs.setdefault("timeout", 10.0)
        zk = KazooClient(hosts=hosts or self.hostport, **kwargs)
        self.clients.append(zk)
        if start:
            zk.start(timeout=15)
        return zk

    def close_all(self):
        for zk in self.clients:
            try:
                zk.stop()
                zk.close()
            except Exception:
                pass


@pytest.fixture
def make_client(server):
    factory = ClientFactory(server.hostport)
    yield factory
    factory.close_all()


@pytest.fixture
def zk(make_client):
    return make_client()


@pytest.fixture
def base(zk, request):
    """A fresh, unique persistent node for the test to work under."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:40]
    path = "/t-%s-%s" % (name, uuid.uuid4().hex[:8])
    zk.create(path)
    yield path
    try:
        if zk.connected:
            zk.delete(path, recursive=True)
    except Exception:
        pass

