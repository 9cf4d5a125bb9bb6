"""A client that stops reading its replies must not slow anyone else down."""

import socket
import time

import rawzk
from conftest import TARGET
from rawzk import RawClient, wait_closed


def test_stalled_reader_does_not_block_others(server, zk, base):
    big = base + "/big"
    zk.create(big, b"x" * 900_000, makepath=True)
    stalled = RawClient(server.hostport, timeout_ms=30000)
    try:
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # 60 pipelined reads of a 900 kB node: ~54 MB of replies nobody reads.
        # One write, so the server has them all before its replies pile up:
        # sent one by one, the later ones could meet the read gate (which
        # stops reading at 4 MiB unwritten) and never be read, and the
        # replies would then stop short of the 32 MiB cut-off.
        requests = []
        for xid in range(1, 61):
            header = rawzk.p_int(xid) + rawzk.p_int(rawzk.OP_GET_DATA)
            requests.append(rawzk.frame(header + rawzk.path_watch_body(big)))
        stalled.send_raw(b"".join(requests))
        started = time.monotonic()
        for _ in range(200):
            zk.create(base + "/other-", b"v", sequence=True)
        assert len(zk.get_children(base)) == 201
        # Generous bound: only a blocked server would take this long.
        assert time.monotonic() - started < 30
        if TARGET == "warden":
            # Warden cuts off a client whose unread replies pass 32 MiB.
            closed, _ = wait_closed(stalled.sock, 20)
            assert closed
    finally:
        stalled.close()
