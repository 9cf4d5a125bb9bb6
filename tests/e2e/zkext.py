"""Extra request types sent through a live kazoo client.

kazoo (2.11) has no API for containers, TTL nodes, getEphemerals,
getAllChildrenNumber, addWatch, checkWatches/removeWatches or whoAmI.  kazoo's
connection serialises any object with a ``type`` opcode and a ``serialize()``
method and decodes the reply with ``deserialize(bytes, offset)``, so these
requests run on the same session as the rest of a test.

``raw_create`` also bypasses kazoo's client-side handling so the *server's*
validation of paths is what gets tested.
"""

from collections import namedtuple

from kazoo.protocol.serialization import int_struct, long_struct, stat_struct, read_string, write_string
from kazoo.protocol.states import ZnodeStat
from kazoo.security import OPEN_ACL_UNSAFE

from rawzk import (
    FLAG_CONTAINER,
    FLAG_PERSISTENT_WITH_TTL,
    OP_CHECK_WATCHES,
    OP_CREATE,
    OP_CREATE_CONTAINER,
    OP_CREATE_TTL,
    OP_DELETE,
    OP_EXISTS,
    OP_GET_ALL_CHILDREN_NUMBER,
    OP_GET_DATA,
    OP_GET_EPHEMERALS,
    OP_REMOVE_WATCHES,
    OP_SET_DATA,
    OP_WHO_AM_I,
)


def _acl_bytes(acl):
    b = bytearray(int_struct.pack(len(acl)))
    for a in acl:
        b.extend(int_struct.pack(a.perms) + write_string(a.id.scheme) + write_string(a.id.id))
    return b


def _raw_path(path):
    # write_string maps "" to a null string; keep "" as an empty string.
    if path == "":
        return int_struct.pack(0)
    return write_string(path)


def _buffer(data):
    if data is None:
        return int_struct.pack(-1)
    return int_struct.pack(len(data)) + data


def _create2_response(bytes_, offset):
    path, offset = read_string(bytes_, offset)
    stat = ZnodeStat._make(stat_struct.unpack_from(bytes_, offset))
    return path, stat


class RawCreate(namedtuple("RawCreate", "path data acl flags")):
    """Plain Create (opcode 1) without any client-side path mangling."""

    type = OP_CREATE

    def serialize(self):
        return _raw_path(self.path) + _buffer(self.data) + _acl_bytes(self.acl) + int_struct.pack(self.flags)

    @classmethod
    def deserialize(cls, bytes_, offset):
        return read_string(bytes_, offset)[0]


class RawPathOp(namedtuple("RawPathOp", "type path tail")):
    """Any request whose body is path + fixed tail bytes (getData, exists, delete...)."""

    def serialize(self):
        return _raw_path(self.path) + self.tail

    @classmethod
    def deserialize(cls, bytes_, offset):
        return bytes_[offset:]


class CreateContainer(namedtuple("CreateContainer", "path data acl")):
    type = OP_CREATE_CONTAINER

    def serialize(self):
        return write_string(self.path) + _buffer(self.data) + _acl_bytes(self.acl) + int_struct.pack(FLAG_CONTAINER)

    deserialize = staticmethod(_create2_response)


class CreateTTL(namedtuple("CreateTTL", "path data acl flags ttl")):
    type = OP_CREATE_TTL

    def serialize(self):
        return (
            write_string(self.path)
            + _buffer(self.data)
            + _acl_bytes(self.acl)
            + int_struct.pack(self.flags)
            + long_struct.pack(self.ttl)
        )

    deserialize = staticmethod(_create2_response)


class GetEphemerals(namedtuple("GetEphemerals", "prefix")):
    type = OP_GET_EPHEMERALS

    def serialize(self):
        return _raw_path(self.prefix)

    @classmethod
    def deserialize(cls, bytes_, offset):
        (n,) = int_struct.unpack_from(bytes_, offset)
        offset += 4
        out = []
        for _ in range(n):
            s, offset = read_string(bytes_, offset)
            out.append(s)
        return out


class GetAllChildrenNumber(namedtuple("GetAllChildrenNumber", "path")):
    type = OP_GET_ALL_CHILDREN_NUMBER

    def serialize(self):
        return write_string(self.path)

    @classmethod
    def deserialize(cls, bytes_, offset):
        return int_struct.unpack_from(bytes_, offset)[0]


class WatchesOp(namedtuple("WatchesOp", "type path watcher_type")):
    """checkWatches (17) / removeWatches (18)."""

    def serialize(self):
        return write_string(self.path) + int_struct.pack(self.watcher_type)

    @classmethod
    def deserialize(cls, bytes_, offset):
        return True


class WhoAmI(namedtuple("WhoAmI", "")):
    type = OP_WHO_AM_I

    def __bool__(self):  # kazoo skips decoding for falsy (empty) requests
        return True

    def serialize(self):
        return b""

    @classmethod
    def deserialize(cls, bytes_, offset):
        (n,) = int_struct.unpack_from(bytes_, offset)
        offset += 4
        out = []
        for _ in range(n):
            scheme, offset = read_string(bytes_, offset)
            user, offset = read_string(bytes_, offset)
            out.append((scheme, user))
        return out


def call(zk, request, timeout=10):
    """Send ``request`` on kazoo client ``zk``; return the decoded reply or raise."""
    async_result = zk.handler.async_result()
    zk._call(request, async_result)
    return async_result.get(timeout=timeout)


def create_container(zk, path, data=b"", acl=None):
    return call(zk, CreateContainer(path, data, acl or OPEN_ACL_UNSAFE))


def create_ttl(zk, path, ttl, data=b"", flags=FLAG_PERSISTENT_WITH_TTL, acl=None):
    return call(zk, CreateTTL(path, data, acl or OPEN_ACL_UNSAFE, flags, ttl))


def get_ephemerals(zk, prefix="/"):
    return call(zk, GetEphemerals(prefix))


def get_all_children_number(zk, path):
    return call(zk, GetAllChildrenNumber(path))


def check_watches(zk, path, watcher_type):
    return call(zk, WatchesOp(OP_CHECK_WATCHES, path, watcher_type))


def remove_watches(zk, path, watcher_type):
    return call(zk, WatchesOp(OP_REMOVE_WATCHES, path, watcher_type))


def who_am_i(zk):
    return call(zk, WhoAmI())


def raw_create(zk, path, data=b"", flags=0, acl=None):
    return call(zk, RawCreate(path, data, acl or OPEN_ACL_UNSAFE, flags))


def raw_get_data(zk, path):
    return call(zk, RawPathOp(OP_GET_DATA, path, b"\x00"))


def raw_exists(zk, path):
    return call(zk, RawPathOp(OP_EXISTS, path, b"\x00"))


def raw_delete(zk, path, version=-1):
    return call(zk, RawPathOp(OP_DELETE, path, int_struct.pack(version)))


def raw_set_data(zk, path, data, version=-1):
    return call(zk, RawPathOp(OP_SET_DATA, path, _buffer(data) + int_struct.pack(version)))
