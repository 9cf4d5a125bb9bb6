"""zoo.cfg as a drop-in, and Warden's log formats."""

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import single_node_only, TARGET, free_port
from rawzk import four_letter, wait_until

ZOO_SAMPLE = "/etc/zookeeper/conf_example/zoo.cfg"
# Admin ports, process flags and the binary itself are per node.
pytestmark = single_node_only

WARDEN_ONLY = pytest.mark.skipif(TARGET != "warden", reason="starts the warden binary with its own flags")


def answers(hostport, word, prefix):
    try:
        return four_letter(hostport, word).startswith(prefix)
    except OSError:
        return False


def run_warden(args, tmp):
    log = open(os.path.join(tmp, "server.log"), "wb")
    proc = subprocess.Popen([os.environ["WARDEN_BIN"], "server", *args], stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    return proc, log


def stop(proc, log):
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)
    log.close()


@WARDEN_ONLY
@pytest.mark.skipif(not os.path.exists(ZOO_SAMPLE), reason="Debian's zookeeper package (its sample zoo.cfg) is not installed")
def test_zookeepers_own_sample_config_runs_unchanged():
    tmp = tempfile.mkdtemp(prefix="warden-zoocfg-")
    port = free_port()
    proc, log = run_warden(["--config", ZOO_SAMPLE, "--set", "clientPort=%d" % port, "--set", "dataDir=" + os.path.join(tmp, "data"), "--set", "admin.enableServer=false"], tmp)
    try:
        hostport = "127.0.0.1:%d" % port
        wait_until(lambda: answers(hostport, "srvr", b"Zookeeper version"), 15, message="srvr")
        # The sample's tickTime and limits came through; srvr is whitelisted by default.
        conf = four_letter(hostport, "conf")
        assert conf.startswith(b"conf is not executed because it is not in the whitelist"), conf
    finally:
        stop(proc, log)
        shutil.rmtree(tmp, ignore_errors=True)


@WARDEN_ONLY
def test_sample_config_values_are_honoured():
    tmp = tempfile.mkdtemp(prefix="warden-zoocfg-")
    port = free_port()
    cfg = os.path.join(tmp, "zoo.cfg")
    with open(cfg, "w") as f:
        f.write("# ZooKeeper's own syntax\ntickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir=%s\nclientPort=%d\n"
                "4lw.commands.whitelist=conf, srvr, ruok\nmaxClientCnxns=7\nautopurge.snapRetainCount=3\n"
                "autopurge.purgeInterval=1\nadmin.enableServer=false\nserverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n"
                % (os.path.join(tmp, "data"), port))
    proc, log = run_warden(["--config", cfg], tmp)
    try:
        hostport = "127.0.0.1:%d" % port
        wait_until(lambda: answers(hostport, "ruok", b"imok"), 15, message="ruok")
        conf = dict(l.split("=", 1) for l in four_letter(hostport, "conf").decode().splitlines() if "=" in l)
        assert conf["tickTime"] == "500"
        assert conf["maxClientCnxns"] == "7"
        assert conf["minSessionTimeout"] == "1000" and conf["maxSessionTimeout"] == "10000"
        assert four_letter(hostport, "mntr").startswith(b"mntr is not executed")
    finally:
        stop(proc, log)
    text = open(os.path.join(tmp, "server.log")).read()
    shutil.rmtree(tmp, ignore_errors=True)
    assert "serverCnxnFactory" in text, "JVM-only keys are logged as ignored"


def io_threads(pid):
    names = []
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, task)) as f:
            names.append(f.read().strip())
    return sorted(n for n in names if n.startswith("w-io-"))


@WARDEN_ONLY
@pytest.mark.parametrize("setting, expected", [(None, len(os.sched_getaffinity(0))), ("3", 3)])
def test_io_threads_are_one_per_core_unless_warden_io_threads_says(setting, expected):
    tmp = tempfile.mkdtemp(prefix="warden-iothreads-")
    port = free_port()
    args = ["--set", "clientPort=%d" % port, "--set", "dataDir=" + os.path.join(tmp, "data"), "--set", "admin.enableServer=false"]
    if setting:
        args += ["--set", "warden.ioThreads=" + setting]
    proc, log = run_warden(args, tmp)
    try:
        wait_until(lambda: answers("127.0.0.1:%d" % port, "srvr", b"Zookeeper version"), 15, message="srvr")
        assert io_threads(proc.pid) == ["w-io-%d" % i for i in range(expected)]
    finally:
        stop(proc, log)
        shutil.rmtree(tmp, ignore_errors=True)


@WARDEN_ONLY
def test_json_logs():
    tmp = tempfile.mkdtemp(prefix="warden-json-")
    port = free_port()
    proc, log = run_warden(["--set", "clientPort=%d" % port, "--set", "dataDir=" + os.path.join(tmp, "data"), "--set", "warden.logFormat=json", "--set", "admin.enableServer=false"], tmp)
    try:
        wait_until(lambda: answers("127.0.0.1:%d" % port, "srvr", b"Zookeeper"), 15, message="srvr")
    finally:
        stop(proc, log)
    lines = [l for l in open(os.path.join(tmp, "server.log")).read().splitlines() if l.strip()]
    shutil.rmtree(tmp, ignore_errors=True)
    records = [json.loads(l) for l in lines]
    assert any(r["msg"] == "Warden serving ZooKeeper clients" and r["level"] == "INFO" for r in records)
