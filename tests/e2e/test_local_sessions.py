"""Local sessions (localSessionsEnabled): a session lives only on the member
it was created on, is not written to the log, and cannot own ephemerals —
unless localSessionsUpgradingEnabled, when its first ephemeral create turns
it into a global session first. Runs a 3-member ensemble of the selected
target (Warden or ZooKeeper)."""

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import EphemeralOnLocalSessionError

from conftest import Ensemble
from rawzk import four_letter, wait_until


def mntr(member):
    text = four_letter(member.hostport, b"mntr").decode()
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


def start(settings):
    return Ensemble(dict(settings, tickTime="500"), size=3).start()


def client(member):
    zk = KazooClient(hosts=member.hostport, timeout=10)
    zk.start(timeout=15)
    return zk


def test_a_local_session_reads_and_writes_but_owns_no_ephemerals():
    e = start({"localSessionsEnabled": "true"})
    try:
        zk = client(e.members[0])
        zk.create("/ls", b"x")
        assert zk.get("/ls")[0] == b"x"
        with pytest.raises(EphemeralOnLocalSessionError):
            zk.create("/ls-eph", b"", ephemeral=True)
        assert int(mntr(e.members[0])["zk_local_sessions"]) >= 1
        other = client(e.members[2])
        other.sync("/")
        assert other.get("/ls")[0] == b"x", "its writes are replicated"
        assert other.exists("/ls-eph") is None
        zk.stop()
        zk.close()
        other.stop()
        other.close()
    finally:
        e.stop()


def test_upgrading_turns_the_session_global_on_its_first_ephemeral():
    e = start({"localSessionsEnabled": "true", "localSessionsUpgradingEnabled": "true"})
    try:
        zk = client(e.members[0])
        zk.create("/up-eph", b"", ephemeral=True)
        sid = zk.client_id[0]
        other = client(e.members[2])
        other.sync("/")
        stat = other.exists("/up-eph")
        assert stat is not None and stat.ephemeralOwner == sid
        zk.stop()
        zk.close()
        wait_until(lambda: other.exists("/up-eph") is None, timeout=15, message="the ephemeral goes with the session")
        other.stop()
        other.close()
    finally:
        e.stop()
