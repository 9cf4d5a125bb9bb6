//! ZooKeeper's client wire records (zookeeper.jute, module `proto` and `data`)
//! and opcodes (`ZooDefs.OpCode`), decoded into one `Request` enum.

use crate::jute::{DecodeError, DecodeResult, Reader, Writer};

pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SASL: i32 = 102;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// Reserved xids (`ClientCnxn`).
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}

pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const CREATE: i32 = 4;
    pub const DELETE: i32 = 8;
    pub const ADMIN: i32 = 16;
    pub const ALL: i32 = 31;
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Id {
    pub scheme: String,
    pub id: String,
}

impl Id {
    pub fn new(scheme: &str, id: &str) -> Id {
        Id { scheme: scheme.to_owned(), id: id.to_owned() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Acl {
    pub perms: i32,
    pub id: Id,
}

impl Acl {
    pub fn world_all() -> Acl {
        Acl { perms: perms::ALL, id: Id::new("world", "anyone") }
    }
}

/// The client-visible node metadata, every field as ZooKeeper keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

pub fn write_acls(w: &mut Vec<u8>, acls: &[Acl]) {
    w.put_i32(acls.len() as i32);
    for a in acls {
        w.put_i32(a.perms);
        w.put_string(&a.id.scheme);
        w.put_string(&a.id.id);
    }
}

pub fn read_acls(r: &mut Reader) -> DecodeResult<Vec<Acl>> {
    r.vec(12, |r| Ok(Acl { perms: r.i32()?, id: Id { scheme: r.string()?, id: r.string()? } }))
}

pub fn write_stat(w: &mut Vec<u8>, s: &Stat) {
    w.put_i64(s.czxid);
    w.put_i64(s.mzxid);
    w.put_i64(s.ctime);
    w.put_i64(s.mtime);
    w.put_i32(s.version);
    w.put_i32(s.cversion);
    w.put_i32(s.aversion);
    w.put_i64(s.ephemeral_owner);
    w.put_i32(s.data_length);
    w.put_i32(s.num_children);
    w.put_i64(s.pzxid);
}

pub fn read_stat(r: &mut Reader) -> DecodeResult<Stat> {
    Ok(Stat {
        czxid: r.i64()?,
        mzxid: r.i64()?,
        ctime: r.i64()?,
        mtime: r.i64()?,
        version: r.i32()?,
        cversion: r.i32()?,
        aversion: r.i32()?,
        ephemeral_owner: r.i64()?,
        data_length: r.i32()?,
        num_children: r.i32()?,
        pzxid: r.i64()?,
    })
}

/// The first frame of a connection. `read_only` is absent from pre-3.4 clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: Option<bool>,
}

impl ConnectRequest {
    pub fn decode(frame: &[u8]) -> DecodeResult<ConnectRequest> {
        let mut r = Reader::new(frame);
        let req = ConnectRequest {
            protocol_version: r.i32()?,
            last_zxid_seen: r.i64()?,
            timeout_ms: r.i32()?,
            session_id: r.i64()?,
            passwd: r.buffer()?.unwrap_or_default(),
            read_only: if r.is_empty() { None } else { Some(r.bool()?) },
        };
        r.finish()?;
        Ok(req)
    }

    pub fn encode(&self, w: &mut Vec<u8>) {
        w.put_i32(self.protocol_version);
        w.put_i64(self.last_zxid_seen);
        w.put_i32(self.timeout_ms);
        w.put_i64(self.session_id);
        w.put_buffer(Some(&self.passwd));
        if let Some(ro) = self.read_only {
            w.put_bool(ro);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: bool,
}

impl ConnectResponse {
    /// The reply that tells a client its session is gone (ZooKeeper's invalid-session answer).
    pub fn expired() -> ConnectResponse {
        ConnectResponse { timeout_ms: 0, session_id: 0, passwd: vec![0; 16], read_only: false }
    }

    /// Always sends the readOnly byte: older clients ignore it, some newer ones require it.
    pub fn encode(&self, w: &mut Vec<u8>) {
        w.put_i32(0);
        w.put_i32(self.timeout_ms);
        w.put_i64(self.session_id);
        w.put_buffer(Some(&self.passwd));
        w.put_bool(self.read_only);
    }
}

/// Which create opcode was used: it decides the reply record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CreateOp {
    Create,
    Create2,
    Container,
    Ttl,
}

impl CreateOp {
    pub fn opcode(self) -> i32 {
        match self {
            CreateOp::Create => op::CREATE,
            CreateOp::Create2 => op::CREATE2,
            CreateOp::Container => op::CREATE_CONTAINER,
            CreateOp::Ttl => op::CREATE_TTL,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreateRequest {
    pub op: CreateOp,
    pub path: String,
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub flags: i32,
    pub ttl_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SetWatchesRequest {
    pub relative_zxid: i64,
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub persistent_recursive: Vec<String>,
}

/// exists, getData or getChildren as read from its frame, the path borrowed:
/// a read answered from the tree needs no owned request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainRead<'a> {
    pub op: ReadOp,
    pub path: &'a str,
    pub watch: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOp {
    Exists,
    GetData,
    GetChildren { with_stat: bool },
}

impl<'a> PlainRead<'a> {
    /// The body of a read of type `opcode`; None for any other opcode.
    pub fn decode(opcode: i32, r: &mut Reader<'a>) -> Option<DecodeResult<PlainRead<'a>>> {
        let op = match opcode {
            op::EXISTS => ReadOp::Exists,
            op::GET_DATA => ReadOp::GetData,
            op::GET_CHILDREN | op::GET_CHILDREN2 => ReadOp::GetChildren { with_stat: opcode == op::GET_CHILDREN2 },
            _ => return None,
        };
        let body = |r: &mut Reader<'a>| Ok(PlainRead { op, path: r.str()?, watch: r.bool()? });
        Some(body(r))
    }

    pub fn to_request(self) -> Request {
        let (path, watch) = (self.path.to_owned(), self.watch);
        match self.op {
            ReadOp::Exists => Request::Exists { path, watch },
            ReadOp::GetData => Request::GetData { path, watch },
            ReadOp::GetChildren { with_stat } => Request::GetChildren { path, watch, with_stat },
        }
    }

    /// ZooKeeper's name for the operation, as [`Request::name`].
    pub fn name(&self) -> &'static str {
        match self.op {
            ReadOp::Exists => "exists",
            ReadOp::GetData => "getData",
            ReadOp::GetChildren { with_stat: false } => "getChildren",
            ReadOp::GetChildren { with_stat: true } => "getChildren2",
        }
    }
}

/// One decoded client request body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Request {
    Create(CreateRequest),
    Delete {
        path: String,
        version: i32,
    },
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    GetChildren {
        path: String,
        watch: bool,
        with_stat: bool,
    },
    Sync {
        path: String,
    },
    Ping,
    Check {
        path: String,
        version: i32,
    },
    Multi(Vec<Request>),
    MultiRead(Vec<Request>),
    /// ReconfigRequest: incremental (joining/leaving) or, with `new_members`, not.
    Reconfig {
        joining: Option<String>,
        leaving: Option<String>,
        new_members: Option<String>,
        cur_config_id: i64,
    },
    CheckWatches {
        path: String,
        watcher_type: i32,
    },
    RemoveWatches {
        path: String,
        watcher_type: i32,
    },
    Auth {
        scheme: String,
        auth: Vec<u8>,
    },
    SetWatches(SetWatchesRequest),
    Sasl,
    GetEphemerals {
        prefix: String,
    },
    GetAllChildrenNumber {
        path: String,
    },
    AddWatch {
        path: String,
        mode: i32,
    },
    WhoAmI,
    CloseSession,
    /// An opcode ZooKeeper does not define (or one only servers send).
    Unknown(i32),
}

impl Request {
    /// Decodes the body that follows a RequestHeader of type `opcode`.
    pub fn decode(opcode: i32, r: &mut Reader) -> DecodeResult<Request> {
        let req = match opcode {
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                let create_op = match opcode {
                    op::CREATE => CreateOp::Create,
                    op::CREATE2 => CreateOp::Create2,
                    op::CREATE_CONTAINER => CreateOp::Container,
                    _ => CreateOp::Ttl,
                };
                let path = r.string()?;
                let data = r.buffer()?;
                let acl = read_acls(r)?;
                let flags = r.i32()?;
                let ttl_ms = if create_op == CreateOp::Ttl { r.i64()? } else { -1 };
                Request::Create(CreateRequest { op: create_op, path, data, acl, flags, ttl_ms })
            }
            op::DELETE => Request::Delete { path: r.string()?, version: r.i32()? },
            op::EXISTS | op::GET_DATA | op::GET_CHILDREN | op::GET_CHILDREN2 => {
                return PlainRead::decode(opcode, r).expect("a read's opcode").map(|read| read.to_request());
            }
            op::SET_DATA => Request::SetData { path: r.string()?, data: r.buffer()?, version: r.i32()? },
            op::GET_ACL => Request::GetAcl { path: r.string()? },
            op::SET_ACL => Request::SetAcl { path: r.string()?, acl: read_acls(r)?, version: r.i32()? },
            op::SYNC => Request::Sync { path: r.string()? },
            op::PING => Request::Ping,
            op::CHECK => Request::Check { path: r.string()?, version: r.i32()? },
            op::MULTI => Request::Multi(decode_multi(r, false)?),
            op::MULTI_READ => Request::MultiRead(decode_multi(r, true)?),
            op::RECONFIG => {
                let mut ustring =
                    || -> DecodeResult<Option<String>> { r.buffer()?.map(|b| String::from_utf8(b).map_err(|_| DecodeError::BadUtf8)).transpose() };
                let (joining, leaving, new_members) = (ustring()?, ustring()?, ustring()?);
                Request::Reconfig { joining, leaving, new_members, cur_config_id: r.i64()? }
            }
            op::CHECK_WATCHES => Request::CheckWatches { path: r.string()?, watcher_type: r.i32()? },
            op::REMOVE_WATCHES => Request::RemoveWatches { path: r.string()?, watcher_type: r.i32()? },
            op::AUTH => {
                let _type = r.i32()?;
                Request::Auth { scheme: r.string()?, auth: r.buffer()?.unwrap_or_default() }
            }
            op::SET_WATCHES | op::SET_WATCHES2 => {
                let mut sw = SetWatchesRequest { relative_zxid: r.i64()?, data: r.strings()?, exist: r.strings()?, child: r.strings()?, ..Default::default() };
                if opcode == op::SET_WATCHES2 {
                    sw.persistent = r.strings()?;
                    sw.persistent_recursive = r.strings()?;
                }
                Request::SetWatches(sw)
            }
            op::SASL => {
                r.buffer()?;
                Request::Sasl
            }
            op::GET_EPHEMERALS => Request::GetEphemerals { prefix: r.string()? },
            op::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber { path: r.string()? },
            op::ADD_WATCH => Request::AddWatch { path: r.string()?, mode: r.i32()? },
            op::WHO_AM_I => Request::WhoAmI,
            op::CLOSE_SESSION => Request::CloseSession,
            other => {
                // Unknown ops carry a body we cannot parse; ZooKeeper answers them, so we do.
                while !r.is_empty() {
                    r.bool()?;
                }
                return Ok(Request::Unknown(other));
            }
        };
        Ok(req)
    }

    /// True for requests that change state and so need a zxid.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Create(_)
                | Request::Delete { .. }
                | Request::SetData { .. }
                | Request::SetAcl { .. }
                | Request::Multi(_)
                | Request::CloseSession
                | Request::Check { .. }
                | Request::Reconfig { .. }
        )
    }

    /// exists, getData or getChildren (with or without a watch), borrowed.
    pub fn as_read(&self) -> Option<PlainRead<'_>> {
        let (op, path, watch) = match self {
            Request::Exists { path, watch } => (ReadOp::Exists, path, watch),
            Request::GetData { path, watch } => (ReadOp::GetData, path, watch),
            Request::GetChildren { path, watch, with_stat } => (ReadOp::GetChildren { with_stat: *with_stat }, path, watch),
            _ => return None,
        };
        Some(PlainRead { op, path, watch: *watch })
    }

    /// ZooKeeper's name for the operation, for per-op metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Create(_) => "create",
            Request::Delete { .. } => "delete",
            Request::Exists { .. } => "exists",
            Request::GetData { .. } => "getData",
            Request::SetData { .. } => "setData",
            Request::GetAcl { .. } => "getACL",
            Request::SetAcl { .. } => "setACL",
            Request::GetChildren { with_stat: false, .. } => "getChildren",
            Request::GetChildren { with_stat: true, .. } => "getChildren2",
            Request::Sync { .. } => "sync",
            Request::Ping => "ping",
            Request::Check { .. } => "check",
            Request::Multi(_) => "multi",
            Request::MultiRead(_) => "multiRead",
            Request::Reconfig { .. } => "reconfig",
            Request::CheckWatches { .. } => "checkWatches",
            Request::RemoveWatches { .. } => "removeWatches",
            Request::Auth { .. } => "auth",
            Request::SetWatches(_) => "setWatches",
            Request::Sasl => "sasl",
            Request::GetEphemerals { .. } => "getEphemerals",
            Request::GetAllChildrenNumber { .. } => "getAllChildrenNumber",
            Request::AddWatch { .. } => "addWatch",
            Request::WhoAmI => "whoAmI",
            Request::CloseSession => "closeSession",
            Request::Unknown(_) => "unknown",
        }
    }

    /// The path a request names, for logs and per-path stats.
    pub fn path(&self) -> Option<&str> {
        match self {
            Request::Create(c) => Some(&c.path),
            Request::Delete { path, .. }
            | Request::Exists { path, .. }
            | Request::GetData { path, .. }
            | Request::SetData { path, .. }
            | Request::GetAcl { path }
            | Request::SetAcl { path, .. }
            | Request::GetChildren { path, .. }
            | Request::Sync { path }
            | Request::Check { path, .. }
            | Request::CheckWatches { path, .. }
            | Request::RemoveWatches { path, .. }
            | Request::GetAllChildrenNumber { path }
            | Request::AddWatch { path, .. } => Some(path),
            _ => None,
        }
    }
}

fn decode_multi(r: &mut Reader, read_only: bool) -> DecodeResult<Vec<Request>> {
    let mut ops = Vec::new();
    loop {
        let op_type = r.i32()?;
        let done = r.bool()?;
        let _err = r.i32()?;
        if done {
            return Ok(ops);
        }
        let allowed: &[i32] = if read_only {
            &[op::GET_CHILDREN, op::GET_DATA]
        } else {
            &[op::CREATE, op::CREATE2, op::CREATE_CONTAINER, op::CREATE_TTL, op::DELETE, op::SET_DATA, op::CHECK]
        };
        if !allowed.contains(&op_type) {
            return Err(DecodeError::BadValue("multi op type", op_type as i64));
        }
        let mut req = Request::decode(op_type, r)?;
        if let Request::Create(c) = &mut req {
            // Inside a multi ZooKeeper 3.8 derives the op from the create mode:
            // create2 answers like create, container/TTL flags select those ops.
            c.op = match (c.flags, c.op) {
                (4, _) => CreateOp::Container,
                (5 | 6, _) | (_, CreateOp::Ttl) => CreateOp::Ttl,
                _ => CreateOp::Create,
            };
        }
        ops.push(req);
    }
}

/// Appends a MultiHeader.
pub fn write_multi_header(w: &mut Vec<u8>, op_type: i32, done: bool, err: i32) {
    w.put_i32(op_type);
    w.put_bool(done);
    w.put_i32(err);
}

/// Appends a ReplyHeader.
pub fn write_reply_header(w: &mut Vec<u8>, xid: i32, zxid: i64, err: i32) {
    w.put_i32(xid);
    w.put_i64(zxid);
    w.put_i32(err);
}

/// A watch notification's body (WatcherEvent).
pub fn write_watcher_event(w: &mut Vec<u8>, event_type: i32, state: i32, path: &str) {
    w.put_i32(event_type);
    w.put_i32(state);
    w.put_string(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_create(w: &mut Vec<u8>, path: &str, data: Option<&[u8]>, flags: i32) {
        w.put_string(path);
        w.put_buffer(data);
        write_acls(w, &[Acl::world_all()]);
        w.put_i32(flags);
    }

    #[test]
    fn connect_request_with_and_without_read_only_byte() {
        let mut req = ConnectRequest { protocol_version: 0, last_zxid_seen: 5, timeout_ms: 30000, session_id: 0, passwd: vec![0; 16], read_only: Some(false) };
        let mut w = Vec::new();
        req.encode(&mut w);
        assert_eq!(w.len(), 45);
        assert_eq!(ConnectRequest::decode(&w).unwrap(), req);
        req.read_only = None;
        let mut w = Vec::new();
        req.encode(&mut w);
        assert_eq!(w.len(), 44);
        assert_eq!(ConnectRequest::decode(&w).unwrap(), req);
    }

    #[test]
    fn connect_request_with_null_password_as_kazoo_sends() {
        let mut w = Vec::new();
        w.put_i32(0);
        w.put_i64(0);
        w.put_i32(10000);
        w.put_i64(0);
        w.put_buffer(None);
        w.put_bool(false);
        let req = ConnectRequest::decode(&w).unwrap();
        assert!(req.passwd.is_empty());
        assert_eq!(req.read_only, Some(false));
    }

    #[test]
    fn a_read_decoded_in_place_is_the_request_decoded() {
        for (opcode, watch) in [(op::EXISTS, false), (op::GET_DATA, true), (op::GET_CHILDREN, false), (op::GET_CHILDREN2, true)] {
            let mut w = Vec::new();
            w.put_string("/a/b");
            w.put_bool(watch);
            let read = PlainRead::decode(opcode, &mut Reader::new(&w)).expect("a read's opcode").unwrap();
            let req = Request::decode(opcode, &mut Reader::new(&w)).unwrap();
            assert_eq!((Some(read), read.name(), read.to_request()), (req.as_read(), req.name(), req.clone()));
            assert_eq!((read.path, read.watch), ("/a/b", watch));
            let cut = &w[..w.len() - 1];
            assert!(matches!(PlainRead::decode(opcode, &mut Reader::new(cut)), Some(Err(_))), "a body without its watch flag");
            assert!(Request::decode(opcode, &mut Reader::new(cut)).is_err());
        }
        let mut w = Vec::new();
        w.put_string("/a");
        w.put_i32(-1);
        assert!(PlainRead::decode(op::DELETE, &mut Reader::new(&w)).is_none());
        assert!(Request::decode(op::DELETE, &mut Reader::new(&w)).unwrap().as_read().is_none());
    }

    #[test]
    fn connect_response_is_37_bytes() {
        let mut w = Vec::new();
        ConnectResponse::expired().encode(&mut w);
        assert_eq!(w.len(), 37);
    }

    #[test]
    fn stat_and_acl_round_trip() {
        let stat = Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        let mut w = Vec::new();
        write_stat(&mut w, &stat);
        assert_eq!(w.len(), 68);
        assert_eq!(read_stat(&mut Reader::new(&w)).unwrap(), stat);
        let acls = vec![Acl::world_all(), Acl { perms: perms::READ, id: Id::new("digest", "u:h") }];
        let mut w = Vec::new();
        write_acls(&mut w, &acls);
        assert_eq!(read_acls(&mut Reader::new(&w)).unwrap(), acls);
    }

    #[test]
    fn decodes_every_create_flavour() {
        for (opcode, op) in [(1, CreateOp::Create), (15, CreateOp::Create2), (19, CreateOp::Container), (21, CreateOp::Ttl)] {
            let mut w = Vec::new();
            encode_create(&mut w, "/a", Some(b"x"), 0);
            if op == CreateOp::Ttl {
                w.put_i64(1000);
            }
            let mut r = Reader::new(&w);
            match Request::decode(opcode, &mut r).unwrap() {
                Request::Create(c) => {
                    assert_eq!(c.op, op);
                    assert_eq!(c.path, "/a");
                    assert_eq!(c.data.as_deref(), Some(&b"x"[..]));
                    assert_eq!(c.ttl_ms, if op == CreateOp::Ttl { 1000 } else { -1 });
                }
                other => panic!("{other:?}"),
            }
            r.finish().unwrap();
        }
    }

    #[test]
    fn decodes_multi_and_rejects_foreign_ops_inside() {
        let mut w = Vec::new();
        write_multi_header(&mut w, op::CREATE, false, -1);
        encode_create(&mut w, "/m", None, 0);
        write_multi_header(&mut w, op::CHECK, false, -1);
        w.put_string("/m");
        w.put_i32(0);
        write_multi_header(&mut w, -1, true, -1);
        let req = Request::decode(op::MULTI, &mut Reader::new(&w)).unwrap();
        match req {
            Request::Multi(ops) => {
                assert_eq!(ops.len(), 2);
                assert_eq!(ops[1], Request::Check { path: "/m".into(), version: 0 });
            }
            other => panic!("{other:?}"),
        }
        let mut w = Vec::new();
        write_multi_header(&mut w, op::GET_DATA, false, -1);
        w.put_string("/m");
        w.put_bool(false);
        write_multi_header(&mut w, -1, true, -1);
        assert!(Request::decode(op::MULTI, &mut Reader::new(&w)).is_err());
        assert!(Request::decode(op::MULTI_READ, &mut Reader::new(&w)).is_ok());
    }

    #[test]
    fn decodes_set_watches2_and_auth() {
        let mut w = Vec::new();
        w.put_i64(9);
        for list in [&["/d"][..], &[], &["/c"], &["/p"], &["/r"]] {
            w.put_strings(list);
        }
        match Request::decode(op::SET_WATCHES2, &mut Reader::new(&w)).unwrap() {
            Request::SetWatches(sw) => {
                assert_eq!(sw.relative_zxid, 9);
                assert_eq!(sw.persistent_recursive, vec!["/r".to_string()]);
                assert_eq!(sw.child, vec!["/c".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        let mut w = Vec::new();
        w.put_i32(0);
        w.put_string("digest");
        w.put_buffer(Some(b"u:p"));
        assert_eq!(Request::decode(op::AUTH, &mut Reader::new(&w)).unwrap(), Request::Auth { scheme: "digest".into(), auth: b"u:p".to_vec() });
    }

    #[test]
    fn unknown_opcode_is_a_request_not_an_error() {
        assert_eq!(Request::decode(77, &mut Reader::new(&[1, 2])).unwrap(), Request::Unknown(77));
    }
}
