"""Operator four-letter words beyond the basics: cons, dump, dirs, wchs/wchc/wchp,
crst, srst — checked for the parts ZooKeeper 3.8 and Warden print alike."""

import re

from rawzk import four_letter


def word(server, cmd):
    return four_letter(server.hostport, cmd).decode()


def test_cons_lists_each_connection_with_its_session(server, zk):
    sid = zk.client_id[0]
    out = word(server, "cons")
    assert re.search(r"^ /127\.0\.0\.1:\d+\[\d\]\(queued=\d+,recved=\d+,sent=\d+,sid=0x%x," % sid, out, re.M), out


def test_dump_shows_sessions_with_ephemerals(server, zk, base):
    zk.ensure_path(base)
    path = zk.create(base + "/e", ephemeral=True)
    out = word(server, "dump")
    assert out.startswith("SessionTracker dump:\n"), out
    m = re.search(r"Sessions with Ephemerals \((\d+)\):\n", out)
    assert m and int(m.group(1)) >= 1, out
    assert "0x%x:\n\t%s\n" % (zk.client_id[0], path) in out, out


def test_dirs_reports_sizes(server, zk):
    out = word(server, "dirs")
    m = re.fullmatch(r"datadir_size: (\d+)\nlogdir_size: (\d+)\n", out)
    assert m, out
    assert int(m.group(2)) > 0, "the transaction log holds the session's creation"


def test_watch_words(server, zk, base):
    zk.ensure_path(base)
    zk.get(base, watch=lambda e: None)
    zk.exists(base + "/missing", watch=lambda e: None)
    sid = "0x%x" % zk.client_id[0]
    wchs = word(server, "wchs")
    m = re.fullmatch(r"(\d+) connections watching (\d+) paths\nTotal watches:(\d+)\n", wchs)
    assert m and int(m.group(3)) >= 2, wchs
    wchc = word(server, "wchc")
    assert "%s\n" % sid in wchc and "\t%s\n" % base in wchc and "\t%s/missing\n" % base in wchc, wchc
    wchp = word(server, "wchp")
    assert "%s\n\t%s\n" % (base, sid) in wchp, wchp


def test_srst_and_crst_reset_counters(server, zk):
    zk.get("/")
    assert word(server, "srst") == "Server stats reset.\n"
    srvr = word(server, "srvr")
    received = int(re.search(r"^Received: (\d+)$", srvr, re.M).group(1))
    assert received < 5, srvr
    assert word(server, "crst") == "Connection stats reset.\n"
    cons = word(server, "cons")
    sid = zk.client_id[0]
    line = [l for l in cons.splitlines() if "sid=0x%x," % sid in l][0]
    assert re.search(r"recved=[0-2],", line), line
