"""Watches: one-shot data/exist/child watches, ordering, persistent and
persistent-recursive watches, checkWatches/removeWatches, SetWatches."""

import threading
import uuid

import pytest
from kazoo.exceptions import NoNodeError, NoWatcherError
from kazoo.protocol.states import EventType, KeeperState

import rawzk
import zkext
from rawzk import (
    ADD_WATCH_PERSISTENT,
    ADD_WATCH_PERSISTENT_RECURSIVE,
    EVENT_NODE_CHILDREN_CHANGED,
    EVENT_NODE_CREATED,
    EVENT_NODE_DATA_CHANGED,
    EVENT_NODE_DELETED,
    RawClient,
    WatchEvent,
)

SYNC_CONNECTED = 3


class Recorder:
    """A kazoo watcher that records events."""

    def __init__(self):
        self.events = []
        self.cond = threading.Condition()

    def __call__(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, count, timeout=10.0):
        with self.cond:
            self.cond.wait_for(lambda: len(self.events) >= count, timeout)
            return list(self.events)

    def simple(self):
        with self.cond:
            return [(e.type, e.path) for e in self.events]


def barrier(zk, base):
    """Return once every watch event already queued for ``zk`` was dispatched.

    The server delivers a client's notifications in order, and kazoo runs all
    watch callbacks on one FIFO worker, so when a fresh exists-watch that we
    trigger ourselves has fired, everything queued before it has run too.
    """
    path = "%s/barrier-%s" % (base, uuid.uuid4().hex[:8])
    fired = threading.Event()
    assert zk.exists(path, watch=lambda e: fired.set()) is None
    zk.create(path)
    assert fired.wait(10), "barrier watch did not fire"
    zk.delete(path)


def raw_barrier(raw):
    """A round trip on a raw connection: events queued before it arrive first."""
    assert raw.ping().err == 0


def ev(type_, path):
    return WatchEvent(type_, SYNC_CONNECTED, path)


# ------------------------------------------------------------ one-shot, kazoo


def test_data_watch_fires_once(zk, make_client, base):
    path = zk.create(base + "/d", b"0")
    other = make_client()
    rec = Recorder()
    assert zk.get(path, watch=rec)[0] == b"0"
    other.set(path, b"1")
    other.set(path, b"2")
    events = rec.wait(1)
    barrier(zk, base)
    events = rec.events
    assert len(events) == 1, events
    assert events[0].type == EventType.CHANGED
    assert events[0].path == path
    assert events[0].state == KeeperState.CONNECTED


def test_own_write_triggers_own_watch(zk, base):
    path = zk.create(base + "/d", b"0")
    rec = Recorder()
    zk.get(path, watch=rec)
    zk.set(path, b"1")
    assert [(e.type, e.path) for e in rec.wait(1)] == [(EventType.CHANGED, path)]


def test_exists_watch_on_missing_node_fires_created(zk, make_client, base):
    path = base + "/later"
    rec = Recorder()
    assert zk.exists(path, watch=rec) is None
    make_client().create(path, b"x")
    assert [(e.type, e.path) for e in rec.wait(1)] == [(EventType.CREATED, path)]
    barrier(zk, base)
    assert len(rec.events) == 1


def test_exists_watch_on_existing_node(zk, make_client, base):
    path = zk.create(base + "/x")
    other = make_client()
    rec = Recorder()
    assert zk.exists(path, watch=rec) is not None
    other.set(path, b"1")
    assert [(e.type, e.path) for e in rec.wait(1)] == [(EventType.CHANGED, path)]
    rec2 = Recorder()
    zk.exists(path, watch=rec2)
    other.delete(path)
    assert [(e.type, e.path) for e in rec2.wait(1)] == [(EventType.DELETED, path)]


def test_get_watch_on_missing_node_is_not_registered(zk, make_client, base):
    path = base + "/missing"
    rec = Recorder()
    with pytest.raises(NoNodeError):
        zk.get(path, watch=rec)
    make_client().create(path)
    barrier(zk, base)
    assert rec.events == []


def test_child_watch_create_and_delete(zk, make_client, base):
    other = make_client()
    rec = Recorder()
    assert zk.get_children(base, watch=rec) == []
    other.create(base + "/c1")
    assert [(e.type, e.path) for e in rec.wait(1)] == [(EventType.CHILD, base)]
    # one-shot: a second child create does not fire again
    other.create(base + "/c2")
    rec2 = Recorder()
    assert sorted(zk.get_children(base, watch=rec2)) == ["c1", "c2"]
    # data changes on parent or child are not child events
    other.set(base, b"parent data")
    other.set(base + "/c1", b"child data")
    other.delete(base + "/c1")
    assert [(e.type, e.path) for e in rec2.wait(1)] == [(EventType.CHILD, base)]
    # (the barrier itself creates a child of base, so check before it)
    assert len(rec.events) == 1


def test_child_watch_ignores_data_changes(zk, make_client, base):
    zk.create(base + "/sub/c", makepath=True)
    rec = Recorder()
    zk.get_children(base + "/sub", watch=rec)
    other = make_client()
    other.set(base + "/sub", b"x")
    other.set(base + "/sub/c", b"y")
    barrier(zk, base)
    assert rec.events == []


def test_delete_fires_deleted_for_all_watch_kinds(zk, make_client, base):
    path = zk.create(base + "/victim/child", makepath=True).rsplit("/", 1)[0]
    zk.delete(path + "/child")
    a, b, c = make_client(), make_client(), make_client()
    data_rec, child_rec, exists_rec, parent_rec = Recorder(), Recorder(), Recorder(), Recorder()
    a.get(path, watch=data_rec)
    b.get_children(path, watch=child_rec)
    c.exists(path, watch=exists_rec)
    c.get_children(base, watch=parent_rec)
    zk.delete(path)
    assert [(e.type, e.path) for e in data_rec.wait(1)] == [(EventType.DELETED, path)]
    assert [(e.type, e.path) for e in child_rec.wait(1)] == [(EventType.DELETED, path)]
    assert [(e.type, e.path) for e in exists_rec.wait(1)] == [(EventType.DELETED, path)]
    assert [(e.type, e.path) for e in parent_rec.wait(1)] == [(EventType.CHILD, base)]


def test_watch_event_precedes_later_read_kazoo(zk, make_client, base):
    """On one connection, the notification is received before the reply of a
    later read that observes the change (checked at kazoo's reader thread)."""
    path = zk.create(base + "/w", b"old")
    other = make_client()
    order = []
    lock = threading.Lock()
    conn = zk._connection
    orig_event = conn._read_watch_event
    orig_response = conn._read_response

    def spy_event(buffer, offset):
        with lock:
            order.append("event")
        return orig_event(buffer, offset)

    def spy_response(header, buffer, offset):
        request = zk._pending[0][0] if zk._pending else None
        result = orig_response(header, buffer, offset)
        if request is not None and getattr(request, "path", None) == path and request.type == 4:
            data = request.deserialize(buffer, offset)[0] if header.err == 0 else None
            with lock:
                order.append("get:%s" % (data.decode() if data else None))
        return result

    conn._read_watch_event = spy_event
    conn._read_response = spy_response
    try:
        rec = Recorder()
        zk.get(path, watch=rec)
        other.set(path, b"new")
        for _ in range(200):
            if zk.get(path)[0] == b"new":
                break
        with lock:
            snapshot = list(order)
    finally:
        conn._read_watch_event = orig_event
        conn._read_response = orig_response
    first_new = snapshot.index("get:new")
    assert "event" in snapshot[:first_new], snapshot
    assert [(e.type, e.path) for e in rec.wait(1)] == [(EventType.CHANGED, path)]


# ------------------------------------------------------------ raw watches


@pytest.fixture
def raw(server):
    c = RawClient(server.hostport, timeout_ms=30000)
    yield c
    c.close()


def test_watch_event_precedes_later_read_raw(raw, zk, base):
    path = zk.create(base + "/w", b"old")
    assert raw.get_data(path, watch=True).err == 0
    zk.set(path, b"new")
    # the next read on the watching connection must see the event first
    rep = raw.get_data(path)
    assert rawzk.Reader(rep.body).buffer() == b"new"
    assert raw.events == [ev(EVENT_NODE_DATA_CHANGED, path)]


def test_watch_event_precedes_a_read_racing_the_write_raw(server, raw, zk, base):
    # A read answered while the write's notification is still on its way
    # must not overtake it (Warden may reply straight from the processor
    # only when nothing for the dispatcher is in transit).
    path = zk.create(base + "/race", b"0")
    writer = RawClient(server.hostport, timeout_ms=30000)
    try:
        for i in range(1, 201):
            assert raw.get_data(path, watch=True).err == 0
            value = str(i).encode()
            writer.send(rawzk.OP_SET_DATA, rawzk.set_data_body(path, value))
            while True:
                rep = raw.get_data(path)
                if rawzk.Reader(rep.body).buffer() == value:
                    break
            assert len(raw.events) == i, "round %d: a read saw the change before its watch event" % i
            assert writer.read_reply().err == 0
    finally:
        writer.close()
    assert raw.events == [ev(EVENT_NODE_DATA_CHANGED, path)] * 200


def test_one_notification_per_connection_for_duplicate_watches(raw, zk, base):
    path = zk.create(base + "/dup", b"0")
    assert raw.get_data(path, watch=True).err == 0
    assert raw.exists(path, watch=True).err == 0
    assert raw.get_data(path, watch=True).err == 0
    zk.set(path, b"1")
    raw_barrier(raw)
    assert raw.events == [ev(EVENT_NODE_DATA_CHANGED, path)]


def test_persistent_watch(raw, zk, base):
    path = zk.create(base + "/p", b"0")
    assert raw.add_watch(path, ADD_WATCH_PERSISTENT).err == 0
    zk.set(path, b"1")
    zk.set(path, b"2")
    zk.create(path + "/c")
    zk.create(path + "/c/grandchild")  # not a direct child: no event
    zk.set(path + "/c", b"x")  # child data: no event
    zk.delete(path + "/c/grandchild")
    zk.delete(path + "/c")
    zk.delete(path)
    zk.create(path)  # the persistent watch survives the delete
    raw_barrier(raw)
    assert raw.events == [
        ev(EVENT_NODE_DATA_CHANGED, path),
        ev(EVENT_NODE_DATA_CHANGED, path),
        ev(EVENT_NODE_CHILDREN_CHANGED, path),
        ev(EVENT_NODE_CHILDREN_CHANGED, path),
        ev(EVENT_NODE_DELETED, path),
        ev(EVENT_NODE_CREATED, path),
    ]


def test_persistent_recursive_watch(raw, zk, base):
    path = base + "/r"
    assert raw.add_watch(path, ADD_WATCH_PERSISTENT_RECURSIVE).err == 0  # node not there yet
    zk.create(path)
    zk.create(path + "/a")
    zk.create(path + "/a/b", b"0")
    zk.set(path + "/a/b", b"1")
    zk.set(path, b"top")
    zk.create(base + "/r-sibling")  # shares the prefix but is not below path
    zk.delete(path + "/a/b")
    raw_barrier(raw)
    assert raw.events == [
        ev(EVENT_NODE_CREATED, path),
        ev(EVENT_NODE_CREATED, path + "/a"),
        ev(EVENT_NODE_CREATED, path + "/a/b"),
        ev(EVENT_NODE_DATA_CHANGED, path + "/a/b"),
        ev(EVENT_NODE_DATA_CHANGED, path),
        ev(EVENT_NODE_DELETED, path + "/a/b"),
    ]


def test_check_and_remove_persistent_watch(raw, zk, base):
    path = zk.create(base + "/p")
    assert raw.check_watches(path, rawzk.WATCHER_ANY).err == rawzk.ERR_NO_WATCHER
    assert raw.add_watch(path, ADD_WATCH_PERSISTENT).err == 0
    assert raw.check_watches(path, rawzk.WATCHER_ANY).err == 0
    assert raw.remove_watches(path, rawzk.WATCHER_ANY).err == 0
    assert raw.check_watches(path, rawzk.WATCHER_ANY).err == rawzk.ERR_NO_WATCHER
    zk.set(path, b"1")
    zk.create(path + "/c")
    raw_barrier(raw)
    assert raw.events == []


def test_remove_data_watch(zk, make_client, base):
    path = zk.create(base + "/d")
    rec = Recorder()
    zk.get(path, watch=rec)
    assert zkext.check_watches(zk, path, rawzk.WATCHER_DATA) is True
    with pytest.raises(NoWatcherError):
        zkext.check_watches(zk, path, rawzk.WATCHER_CHILDREN)
    with pytest.raises(NoWatcherError):
        zkext.remove_watches(zk, path, rawzk.WATCHER_CHILDREN)
    assert zkext.remove_watches(zk, path, rawzk.WATCHER_DATA) is True
    with pytest.raises(NoWatcherError):
        zkext.check_watches(zk, path, rawzk.WATCHER_DATA)
    make_client().set(path, b"changed")
    barrier(zk, base)
    assert rec.events == []


def test_remove_child_watch_keeps_data_watch(raw, zk, base):
    path = zk.create(base + "/d")
    assert raw.get_data(path, watch=True).err == 0
    assert raw.get_children(path, watch=True).err == 0
    assert raw.check_watches(path, rawzk.WATCHER_CHILDREN).err == 0
    assert raw.remove_watches(path, rawzk.WATCHER_CHILDREN).err == 0
    assert raw.check_watches(path, rawzk.WATCHER_CHILDREN).err == rawzk.ERR_NO_WATCHER
    assert raw.check_watches(path, rawzk.WATCHER_DATA).err == 0
    zk.create(path + "/c")
    zk.set(path, b"x")
    raw_barrier(raw)
    assert raw.events == [ev(EVENT_NODE_DATA_CHANGED, path)]


def test_fired_watch_is_gone_for_check_watches(raw, zk, base):
    path = zk.create(base + "/d")
    assert raw.get_data(path, watch=True).err == 0
    zk.set(path, b"1")
    raw_barrier(raw)
    assert raw.events == [ev(EVENT_NODE_DATA_CHANGED, path)]
    assert raw.check_watches(path, rawzk.WATCHER_DATA).err == rawzk.ERR_NO_WATCHER


def set_watches_body(relative_zxid, data=(), exist=(), child=()):
    body = rawzk.p_long(relative_zxid)
    for paths in (data, exist, child):
        body += rawzk.p_int(len(paths))
        for p in paths:
            body += rawzk.p_string(p)
    return body


def test_set_watches_after_reconnect(server, zk, base):
    """Watches re-registered with SetWatches fire for changes missed while away."""
    changed = zk.create(base + "/changed", b"0")
    deleted = zk.create(base + "/deleted", b"0")
    created = base + "/created"
    parent = zk.create(base + "/parent")
    untouched = zk.create(base + "/untouched")

    first = RawClient(server.hostport, timeout_ms=30000)
    sid, passwd = first.session_id, first.passwd
    rep = first.get_data(untouched)
    seen_zxid = rep.zxid
    first.close()  # drop the connection, keep the session

    zk.set(changed, b"1")
    zk.delete(deleted)
    zk.create(created)
    zk.create(parent + "/kid")

    second = RawClient(server.hostport, timeout_ms=30000, session_id=sid, passwd=passwd,
                       last_zxid=seen_zxid)
    try:
        assert second.session_id == sid
        rep = second.request(
            rawzk.OP_SET_WATCHES,
            set_watches_body(seen_zxid, data=[changed, deleted, untouched],
                             exist=[created], child=[parent]),
            xid=rawzk.XID_SET_WATCHES,
        )
        assert rep.err == 0
        raw_barrier(second)
        got = sorted(second.events)
        assert got == sorted([
            ev(EVENT_NODE_DATA_CHANGED, changed),
            ev(EVENT_NODE_DELETED, deleted),
            ev(EVENT_NODE_CREATED, created),
            ev(EVENT_NODE_CHILDREN_CHANGED, parent),
        ])
        # the untouched data watch is now registered and fires on change
        zk.set(untouched, b"now")
        raw_barrier(second)
        assert second.events[-1] == ev(EVENT_NODE_DATA_CHANGED, untouched)
        assert len(second.events) == 5
    finally:
        second.close()


def test_set_watches2_rearms_persistent_recursive_watch(server, zk, base):
    """A persistent recursive watch re-registered with SetWatches2 after a
    reconnect delivers the changes that follow (ZooKeeper does not replay
    the ones missed meanwhile: ZOOKEEPER-4698)."""
    path = zk.create(base + "/pr")
    first = RawClient(server.hostport, timeout_ms=30000)
    sid, passwd = first.session_id, first.passwd
    assert first.add_watch(path, ADD_WATCH_PERSISTENT_RECURSIVE).err == 0
    seen_zxid = first.get_data(path).zxid
    first.close()  # drop the connection, keep the session

    zk.create(path + "/missed")
    second = RawClient(server.hostport, timeout_ms=30000, session_id=sid, passwd=passwd, last_zxid=seen_zxid)
    try:
        assert second.session_id == sid
        body = set_watches_body(seen_zxid) + rawzk.p_int(0) + rawzk.p_int(1) + rawzk.p_string(path)
        assert second.request(rawzk.OP_SET_WATCHES2, body, xid=rawzk.XID_SET_WATCHES).err == 0
        zk.create(path + "/after")
        zk.create(path + "/after/deep")
        raw_barrier(second)
        assert second.events == [ev(EVENT_NODE_CREATED, path + "/after"), ev(EVENT_NODE_CREATED, path + "/after/deep")]
    finally:
        second.close()
