"""packaging/, checked offline against the real binary: the systemd unit
(systemd-analyze, sd_notify readiness), the container recipe (a structural
lint and its configuration and HEALTHCHECK run for real), the Kubernetes
manifest (invariants, the start script, its probes on an ensemble started from
its own zoo.cfg) and the Grafana dashboard (every query names a metric Warden
exports). Nothing here builds an image or talks to a cluster."""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import ENSEMBLE, REPO, TARGET, WARDEN_BIN, free_port, ruok
from rawzk import four_letter

pytestmark = pytest.mark.skipif(
    TARGET != "warden" or ENSEMBLE > 1, reason="Warden's own packaging, checked once against single Warden processes"
)

PACKAGING = REPO / "packaging"
UNIT = PACKAGING / "systemd" / "warden.service"
CONTAINERFILE = PACKAGING / "container" / "Containerfile"
MANIFEST = PACKAGING / "kubernetes" / "warden.yaml"
DASHBOARD = PACKAGING / "grafana" / "warden-dashboard.json"
INSTALLED_BIN = "/usr/local/bin/warden"


class Node:
    """`warden server --config FILE --set ...` in a temp dir, stopped by pid."""

    def __init__(self, config_file, sets, env=None):
        self.tmp = tempfile.mkdtemp(prefix="warden-pkg-")
        self.data = os.path.join(self.tmp, "data")
        os.makedirs(self.data)
        self.port, self.admin_port = free_port(), free_port()
        base = {"dataDir": self.data, "clientPort": self.port, "clientPortAddress": "127.0.0.1", "admin.serverAddress": "127.0.0.1",
                "admin.serverPort": self.admin_port}
        base.update(sets)
        self.cmd = [WARDEN_BIN, "server", "--config", str(config_file)]
        for k, v in base.items():
            self.cmd += ["--set", "%s=%s" % (k, v)]
        self.hostport = "127.0.0.1:%d" % self.port
        self.log_path = os.path.join(self.tmp, "server.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.tmp,
                                         env=env or os.environ.copy())

    def wait_ruok(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "warden exited %s:\n%s" % (self.proc.returncode, self.log())
            if ruok(self.hostport):
                return
            time.sleep(0.1)
        raise AssertionError("no imok within %ss:\n%s" % (timeout, self.log()))

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_probe(argv, hostport):
    """A probe or HEALTHCHECK command as packaged, run with the binary under test against `hostport`."""
    assert argv[0] == INSTALLED_BIN, argv
    return subprocess.run([WARDEN_BIN, *argv[1:], "--server", hostport], capture_output=True, text=True, timeout=30)


def zoo_cfg(text):
    return dict(line.split("=", 1) for line in (l.strip() for l in text.splitlines()) if line and not line.startswith("#"))


# ------------------------------------------------------------------ systemd


def unit_settings():
    out = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


@pytest.fixture
def unit_here(tmp_path):
    """The unit with ExecStart pointing at the binary under test (verify checks the file exists)."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (Debian package systemd; .ci/run installs it)")
    path = tmp_path / "warden.service"
    path.write_text(UNIT.read_text().replace(INSTALLED_BIN, WARDEN_BIN))
    return path


def test_systemd_unit_verifies_without_warnings(unit_here):
    r = subprocess.run(["systemd-analyze", "verify", str(unit_here)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    # verify only warns about unknown keys and bad values: prove it would have.
    bad = unit_here.with_name("bad.service")
    bad.write_text(unit_here.read_text().replace("LimitNOFILE=65536", "LimitNOFILE=lots"))
    r = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "lots" in r.stderr


def test_systemd_unit_hardening_exposure_is_low(unit_here):
    # systemd's own score, 0 (locked down) to 10; 2.0 and below is "OK".
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(unit_here)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr


def test_systemd_unit_runs_warden_as_operators_expect():
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecStart"] == [INSTALLED_BIN + " server --config /etc/warden/zoo.cfg"]
    assert s["User"] == ["warden"] and s["StateDirectory"] == ["warden"]
    assert s["Restart"] == ["on-failure"] and s["RestartPreventExitStatus"] == ["3"]
    assert int(s["LimitNOFILE"][0]) >= 65536
    assert s["NoNewPrivileges"] == ["yes"] and s["ProtectSystem"] == ["strict"]
    # sd_notify needs AF_UNIX; clients and peers need IP.
    assert set(s["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    sysusers = (PACKAGING / "systemd" / "warden.sysusers").read_text()
    assert re.search(r"^u warden - .* /var/lib/warden ", sysusers, re.M)
    assert zoo_cfg((PACKAGING / "systemd" / "zoo.cfg").read_text())["dataDir"] == "/var/lib/warden"


def test_ready_is_notified_once_the_client_port_answers(tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(30)
    node = Node(PACKAGING / "systemd" / "zoo.cfg", {}, env=dict(os.environ, NOTIFY_SOCKET=sock_path))
    try:
        assert sock.recv(256) == b"READY=1"
        # Ready means ready: the client port answers at once.
        assert four_letter(node.hostport, b"ruok") == b"imok"
    finally:
        node.stop()
        sock.close()


# ------------------------------------------------------------------ container


def containerfile_stages():
    """[(base image, [(INSTRUCTION, args)])] per stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        assert instr in {"FROM", "RUN", "COPY", "ENV", "WORKDIR", "USER", "VOLUME", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL", "ENTRYPOINT", "CMD", "ARG",
                         "LABEL"}, line
        if instr == "FROM":
            stages.append((args.split()[0], []))
        else:
            assert stages, "instruction before FROM: " + line
            stages[-1][1].append((instr, args.strip()))
    return stages


def test_containerfile_is_multi_stage_non_root_with_zookeeper_ports():
    stages = containerfile_stages()
    assert len(stages) >= 2
    build_image, runtime_image = stages[0][0], stages[-1][0]
    assert "rust" in build_image and "rust" not in runtime_image
    runtime = stages[-1][1]
    last = {}
    for instr, args in runtime:
        last[instr] = args
    assert last["USER"].split(":")[0] not in ("0", "root")
    assert any(i == "COPY" and a.startswith("--from=") and a.split()[-1] == INSTALLED_BIN for i, a in runtime)
    cfg_copy = [a.split() for i, a in runtime if i == "COPY" and a.split()[-1] == "/etc/warden/zoo.cfg"]
    assert len(cfg_copy) == 1
    cfg = zoo_cfg((REPO / cfg_copy[0][-2]).read_text())
    assert json.loads(last["VOLUME"]) == [cfg["dataDir"]]
    exposed = {int(p) for p in last["EXPOSE"].split()}
    assert {int(cfg["clientPort"]), 2888, 3888, int(cfg["admin.serverPort"])} <= exposed
    assert cfg["clientPortAddress"] == "0.0.0.0"
    assert json.loads(last["ENTRYPOINT"]) == [INSTALLED_BIN]
    assert json.loads(last["CMD"]) == ["server", "--config", "/etc/warden/zoo.cfg"]
    assert "--locked" in " ".join(a for i, a in stages[0][1] if i == "RUN")
    for ignored in ("target", ".venv", ".git"):
        assert ignored in (REPO / ".dockerignore").read_text().split()


def healthcheck_argv():
    args = dict(containerfile_stages()[-1][1])["HEALTHCHECK"]
    return json.loads(args[args.index("CMD ") + 4:])


@pytest.mark.parametrize("config", ["systemd/zoo.cfg", "container/zoo.cfg"])
def test_shipped_zoo_cfg_starts_warden_without_warnings(config):
    node = Node(PACKAGING / config, {})
    try:
        node.wait_ruok()
        # Every key is one Warden knows (an unknown or JVM-only key is logged as "config: ...").
        assert "config:" not in node.log(), node.log()
        assert four_letter(node.hostport, b"isro") == b"rw"
        if config.startswith("container"):
            r = run_probe(healthcheck_argv(), node.hostport)
            assert r.returncode == 0 and r.stdout.strip() == "imok", r
    finally:
        node.stop()


def test_healthcheck_fails_when_nothing_listens():
    r = run_probe(healthcheck_argv(), "127.0.0.1:%d" % free_port())
    assert r.returncode == 1 and "cannot connect" in r.stderr


# ------------------------------------------------------------------ kubernetes


@pytest.fixture(scope="module")
def manifest():
    try:
        import yaml
    except ImportError:
        pytest.fail("pyyaml is missing: pip install -r tests/requirements.txt (tests/run.sh does)")
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def statefulset(manifest):
    (sts,) = [d for (kind, _), d in manifest.items() if kind == "StatefulSet"]
    return sts


def k8s_zoo_cfg(manifest):
    sts = statefulset(manifest)
    (cm_volume,) = [v for v in sts["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    return manifest[("ConfigMap", cm_volume["configMap"]["name"])]["data"]["zoo.cfg"]


def container(manifest):
    (c,) = statefulset(manifest)["spec"]["template"]["spec"]["containers"]
    return c


def test_kubernetes_selectors_ports_and_budget_agree(manifest):
    sts = statefulset(manifest)
    spec, pod = sts["spec"], sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    services = {name: d for (kind, name), d in manifest.items() if kind == "Service"}
    assert len(services) == 2
    for svc in services.values():
        assert svc["spec"]["selector"].items() <= labels.items()
    headless = services[spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    (pdb,) = [d for (kind, _), d in manifest.items() if kind == "PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    cfg = zoo_cfg(k8s_zoo_cfg(manifest))
    c = container(manifest)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["client"] == int(cfg["clientPort"]) and ports["admin"] == int(cfg["admin.serverPort"])
    # server.N for N = ordinal + 1, at the pod's stable name, on the container's ports.
    servers = {k: v for k, v in cfg.items() if k.startswith("server.")}
    assert sorted(servers) == ["server.%d" % n for n in range(1, spec["replicas"] + 1)]
    for key, value in servers.items():
        n = int(key.split(".")[1])
        assert value == "%s-%d.%s:%d:%d" % (sts["metadata"]["name"], n - 1, spec["serviceName"], ports["quorum"], ports["election"])
    for svc in services.values():
        for p in svc["spec"]["ports"]:
            assert ports[p["targetPort"]] == p["port"], p
    assert {p["name"] for p in headless["spec"]["ports"]} >= {"quorum", "election"}

    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    (claim,) = spec["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == cfg["dataDir"]
    assert "--config /etc/warden/zoo.cfg" in c["command"][-1] and mounts["config"] == "/etc/warden"


def test_kubernetes_pods_run_as_the_image_user_without_privileges(manifest):
    pod = statefulset(manifest)["spec"]["template"]["spec"]
    c = container(manifest)
    user = dict(containerfile_stages()[-1][1])["USER"].split(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == user and str(pod["securityContext"]["fsGroup"]) == user
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["readinessProbe"]["exec"]["command"][1:3] == ["fourlw", "isro"]
    assert c["livenessProbe"]["exec"]["command"][1:3] == ["fourlw", "ruok"]


def run_start_script(manifest, tmp_path, hostname, token=None):
    """The container's start command with getent and warden replaced by stubs that print what they got."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    (stubs / "getent").write_text("#!/bin/sh\necho \"getent $*\" >&2\n")
    (stubs / "warden").write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
    for f in stubs.iterdir():
        f.chmod(0o755)
    c = container(manifest)
    script = c["command"][-1].replace(INSTALLED_BIN, str(stubs / "warden"))
    env = {"PATH": "%s:/usr/bin:/bin" % stubs, "HOSTNAME": hostname}
    if token:
        env["WARDEN_ADMIN_TOKEN"] = token
    r = subprocess.run([*c["command"][:-1], script], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines(), r.stderr


def test_kubernetes_start_script_takes_myid_from_the_ordinal(manifest, tmp_path):
    args, stderr = run_start_script(manifest, tmp_path, "warden-2")
    assert args == ["server", "--config", "/etc/warden/zoo.cfg", "--set", "warden.myid=3"]
    assert "getent hosts warden-2.warden-headless" in stderr
    args, _ = run_start_script(manifest, tmp_path, "warden-0", token="s3cret")
    assert args[:5] == ["server", "--config", "/etc/warden/zoo.cfg", "--set", "warden.myid=1"]
    assert "admin.serverAddress=0.0.0.0" in args and "warden.adminToken=s3cret" in args


@pytest.fixture(scope="module")
def k8s_ensemble(manifest, tmp_path_factory):
    """Three members from the manifest's own zoo.cfg, with its pod names swapped for loopback ports."""
    cfg_file = tmp_path_factory.mktemp("k8s") / "zoo.cfg"
    cfg_file.write_text(k8s_zoo_cfg(manifest))
    quorum = {"server.%d" % n: "127.0.0.1:%d:%d" % (free_port(), free_port()) for n in (1, 2, 3)}
    members = []
    try:
        for n in (1, 2, 3):
            members.append(Node(cfg_file, dict(quorum, **{"warden.myid": n, "tickTime": 500})))
        for m in members:
            m.wait_ruok()
            assert "config:" not in m.log(), m.log()
        yield members
    finally:
        for m in members:
            m.stop()


def test_kubernetes_probes_track_the_quorum(manifest, k8s_ensemble):
    c = container(manifest)
    deadline = time.monotonic() + 30
    while any(run_probe(c["readinessProbe"]["exec"]["command"], m.hostport).returncode for m in k8s_ensemble):
        assert time.monotonic() < deadline, "readiness (isro rw) never passed on all members"
        time.sleep(0.2)
    for m in k8s_ensemble:
        assert run_probe(c["livenessProbe"]["exec"]["command"], m.hostport).returncode == 0
        assert run_probe(c["startupProbe"]["exec"]["command"], m.hostport).returncode == 0


def test_kubernetes_member_without_a_quorum_is_live_but_not_ready(manifest, tmp_path):
    c = container(manifest)
    cfg_file = tmp_path / "zoo.cfg"
    cfg_file.write_text(k8s_zoo_cfg(manifest))
    # Its two peers never start.
    quorum = {"server.%d" % n: "127.0.0.1:%d:%d" % (free_port(), free_port()) for n in (1, 2, 3)}
    lone = Node(cfg_file, dict(quorum, **{"warden.myid": 1, "tickTime": 500}))
    try:
        lone.wait_ruok()
        assert run_probe(c["livenessProbe"]["exec"]["command"], lone.hostport).returncode == 0
        r = run_probe(c["readinessProbe"]["exec"]["command"], lone.hostport)
        assert r.returncode == 1 and r.stdout.strip() == "null", r
    finally:
        lone.stop()


# ------------------------------------------------------------------ grafana

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def exported_metrics(text):
    """{sample name: label names seen} from Prometheus or OpenMetrics text; families without samples count too."""
    names = {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            name, kind = m.groups()
            suffixes = {"histogram": ["_bucket", "_sum", "_count"], "summary": ["", "_sum", "_count"],
                        "counter": [""] if name.endswith("_total") else ["_total"]}.get(kind, [""])
            for s in suffixes:
                names.setdefault(name + s, set())
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s", line)
            names.setdefault(m.group(1), set()).update(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(2) or ""))
    return names


def dashboard_queries():
    d = json.loads(DASHBOARD.read_text())
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"], t.get("legendFormat", "")))
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            out.append(("variable " + v["name"], v["query"]["query"] if isinstance(v["query"], dict) else v["query"], ""))
    return out


@pytest.fixture(scope="module")
def scraped(k8s_ensemble):
    """Every member's /metrics after some client traffic (so per-operation series exist)."""
    from kazoo.client import KazooClient

    zk = KazooClient(hosts=k8s_ensemble[0].hostport, timeout=10)
    zk.start(timeout=15)
    try:
        zk.create("/pkg-metrics", b"x")
        zk.get("/pkg-metrics", watch=lambda e: None)
        zk.set("/pkg-metrics", b"y")
        zk.get_children("/")
    finally:
        zk.stop()
        zk.close()
    names = {}
    for m in k8s_ensemble:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % m.admin_port, timeout=10).read().decode()
        for name, labels in exported_metrics(text).items():
            names.setdefault(name, set()).update(labels)
    return names


def test_every_dashboard_query_names_an_exported_metric(scraped):
    queries = dashboard_queries()
    assert len(queries) >= 20
    for title, expr, legend in queries:
        used = set(re.findall(r"\bwarden_[a-zA-Z0-9_:]*", expr))
        assert used, "%s: %r queries no Warden metric" % (title, expr)
        missing = used - scraped.keys()
        assert not missing, "%s: %r names metrics Warden does not export: %s" % (title, expr, sorted(missing))
        # Any other bare selector would be a metric too: there must be none.
        for sel in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr):
            assert sel.startswith("warden_"), (title, sel)
        # Labels: Prometheus adds instance (the target) and job; le belongs to histogram buckets.
        labels = set()
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            labels.update(x.strip() for x in group.split(",") if x.strip())
        labels.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!=|!~|=)\s*\"", expr))
        labels.update(re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", legend))
        have = set().union(*(scraped[n] for n in used)) | {"instance", "job"}
        assert labels - PROMQL_WORDS <= have, "%s: labels %s not on %s" % (title, sorted(labels - have - PROMQL_WORDS), sorted(used))


def test_dashboard_covers_what_operators_watch(scraped):
    exprs = " ".join(e for _, e, _ in dashboard_queries())
    for metric in ["warden_request_latency_seconds_bucket", "warden_request_latency_seconds_count", "warden_outstanding_requests",
                   "warden_znode_count", "warden_watch_count", "warden_sessions", "warden_actor_mailbox_depth",
                   "warden_fsync_latency_seconds_bucket", "warden_server_state", "warden_learner_lag_txns"]:
        assert metric in exprs, metric
    # And the scrape really had the per-operation, per-actor and per-learner series the panels group by.
    assert {"op", "le"} <= scraped["warden_request_latency_seconds_bucket"]
    assert {"kind", "actor_instance"} <= scraped["warden_actor_mailbox_depth"]
    # Prometheus owns instance and job: a scraped one would be renamed exported_instance.
    assert not any(labels & {"instance", "job"} for labels in scraped.values()), scraped
    assert {"server_id"} <= scraped["warden_learner_lag_txns"]


def test_cargo_install_builds_the_warden_binary_from_the_crate_alone():
    """`cargo install --path actors` installs a bin named warden; nothing reads the source tree at run time."""
    meta = json.loads(subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"], cwd=REPO, capture_output=True,
                                     text=True, timeout=120, check=True).stdout)
    (pkg,) = [p for p in meta["packages"] if p["manifest_path"] == str(REPO / "actors" / "Cargo.toml")]
    bins = [t["name"] for t in pkg["targets"] if "bin" in t["kind"]]
    assert bins == ["warden"]
    sources = " ".join(p.read_text() for p in (REPO / "actors" / "src").rglob("*.rs"))
    for needle in ("CARGO_MANIFEST_DIR", "\"config/", "\"../"):
        assert needle not in sources, needle
    # The installed binary explains itself in ZooKeeper's words.
    help_text = subprocess.run([WARDEN_BIN, "--help"], capture_output=True, text=True, timeout=30, check=True).stdout
    for word in ("zoo.cfg", "four-letter", "myid", "dataDir", "clientPort", "zkCli.sh"):
        assert word in help_text, word
    for sub in ("server", "fourlw", "admin", "log", "snapshot", "ensemble", "cli"):
        r = subprocess.run([WARDEN_BIN, "help", sub], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "Usage: warden " + sub in r.stdout, (sub, r.stdout, r.stderr)
