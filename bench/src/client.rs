//! A minimal asynchronous, pipelined ZooKeeper client: length-framed jute
//! records over one TCP connection, replies in request order, pings when idle.
//! Encoding and decoding use warden-core's jute codec.

use std::fmt;
use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use warden_core::jute::{DecodeError, Reader, Writer};
use warden_core::proto::{self, op, xid, Acl, ConnectRequest};

/// Frames larger than this are treated as a protocol error.
pub const MAX_FRAME: usize = 64 << 20;

/// Create flags (`CreateMode`).
pub mod flags {
    pub const PERSISTENT: i32 = 0;
    pub const EPHEMERAL: i32 = 1;
    pub const PERSISTENT_SEQUENTIAL: i32 = 2;
}

/// WatchedEvent types (`Watcher.Event.EventType`).
pub mod event {
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
}

pub const NODE_EXISTS: i32 = -110;

/// ZooKeeper's name for an error code (`KeeperException.Code`).
pub fn error_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        -1 => "SYSTEMERROR",
        -2 => "RUNTIMEINCONSISTENCY",
        -3 => "DATAINCONSISTENCY",
        -4 => "CONNECTIONLOSS",
        -5 => "MARSHALLINGERROR",
        -6 => "UNIMPLEMENTED",
        -7 => "OPERATIONTIMEOUT",
        -8 => "BADARGUMENTS",
        -12 => "UNKNOWNSESSION",
        -13 => "NEWCONFIGNOQUORUM",
        -14 => "RECONFIGINPROGRESS",
        -100 => "APIERROR",
        -101 => "NONODE",
        -102 => "NOAUTH",
        -103 => "BADVERSION",
        -108 => "NOCHILDRENFOREPHEMERALS",
        -110 => "NODEEXISTS",
        -111 => "NOTEMPTY",
        -112 => "SESSIONEXPIRED",
        -113 => "INVALIDCALLBACK",
        -114 => "INVALIDACL",
        -115 => "AUTHFAILED",
        -118 => "SESSIONMOVED",
        -119 => "NOTREADONLY",
        -120 => "EPHEMERALONLOCALSESSION",
        -121 => "NOWATCHER",
        -122 => "REQUESTTIMEOUT",
        -123 => "RECONFIGDISABLED",
        -124 => "SESSIONCLOSEDREQUIRESASLAUTH",
        -125 => "QUOTAEXCEEDED",
        -127 => "THROTTLEDOP",
        _ => "UNKNOWN",
    }
}

/// Why a connection stopped being usable. The Display text is stable (no
/// addresses or counters) so failures can be grouped and counted.
#[derive(Debug)]
pub enum ClientError {
    Io(io::ErrorKind, String),
    /// The server closed the connection.
    Closed,
    Protocol(String),
    /// No answer in time; names what was awaited.
    Timeout(&'static str),
    /// The server answered the handshake with timeOut <= 0 (session refused/expired).
    SessionRejected,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(_, msg) => write!(f, "i/o error: {msg}"),
            ClientError::Closed => write!(f, "server closed the connection"),
            ClientError::Protocol(msg) => write!(f, "protocol error: {msg}"),
            ClientError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            ClientError::SessionRejected => write!(f, "server refused the session (timeOut <= 0)"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e.kind(), e.to_string())
    }
}

impl From<DecodeError> for ClientError {
    fn from(e: DecodeError) -> Self {
        ClientError::Protocol(e.to_string())
    }
}

/// One reply: its header fields and the record body that follows.
#[derive(Debug)]
pub struct Reply {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
    frame: Vec<u8>,
}

impl Reply {
    pub fn body(&self) -> &[u8] {
        &self.frame[16..]
    }
}

#[derive(Debug)]
pub struct WatchEvent {
    pub event_type: i32,
    pub state: i32,
    pub path: String,
}

#[derive(Debug)]
pub enum Incoming {
    Reply(Reply),
    Watch(WatchEvent),
}

/// Reads 4-byte big-endian length-prefixed frames; `fill` is cancel-safe, so a
/// read can be raced against a timer without losing bytes.
/// The length of the frame starting `avail`, once its 4-byte header is there.
pub fn frame_len(avail: &[u8]) -> Result<Option<usize>, ClientError> {
    let Some(header) = avail.get(..4) else { return Ok(None) };
    let len = i32::from_be_bytes(header.try_into().unwrap());
    if len < 0 || len as usize > MAX_FRAME {
        return Err(ClientError::Protocol(format!("bad frame length {len}")));
    }
    Ok(Some(len as usize))
}

struct FrameReader {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
    pos: usize,
}

impl FrameReader {
    fn parse(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        let avail = &self.buf[self.pos..];
        let Some(len) = frame_len(avail)? else { return Ok(None) };
        if avail.len() < 4 + len {
            return Ok(None);
        }
        let frame = avail[4..4 + len].to_vec();
        self.pos += 4 + len;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        Ok(Some(frame))
    }

    async fn fill(&mut self) -> Result<(), ClientError> {
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(64 * 1024);
        let n = self.rd.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }
}

/// Coalesces queued frames into one write; ends (shutting down the write side)
/// when every sender is gone.
async fn writer_task(mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(frame) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(&frame);
        while buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// Starts a frame: the length placeholder, to be patched by `finish_frame`.
fn start_frame(w: &mut Vec<u8>) {
    w.put_i32(0);
}

fn finish_frame(w: &mut [u8]) {
    let len = (w.len() - 4) as i32;
    w[..4].copy_from_slice(&len.to_be_bytes());
}

/// A whole ConnectRequest frame for a new session (length prefix included).
pub fn connect_frame(timeout_ms: i32) -> Vec<u8> {
    let mut frame = Vec::with_capacity(64);
    start_frame(&mut frame);
    ConnectRequest { protocol_version: 0, last_zxid_seen: 0, timeout_ms, session_id: 0, passwd: vec![0; 16], read_only: Some(false) }.encode(&mut frame);
    finish_frame(&mut frame);
    frame
}

/// Appends a whole request frame (length prefix, xid, opcode, body) to `w`.
pub fn append_request(w: &mut Vec<u8>, xid: i32, opcode: i32, body: impl FnOnce(&mut Vec<u8>)) {
    let start = w.len();
    w.put_i32(0);
    w.put_i32(xid);
    w.put_i32(opcode);
    body(w);
    let len = (w.len() - start - 4) as i32;
    w[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// The ConnectResponse fields a client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: bool,
}

impl ConnectResponse {
    pub fn decode(frame: &[u8]) -> Result<ConnectResponse, DecodeError> {
        let mut r = Reader::new(frame);
        Ok(ConnectResponse {
            protocol_version: r.i32()?,
            timeout_ms: r.i32()?,
            session_id: r.i64()?,
            passwd: r.buffer()?.unwrap_or_default(),
            read_only: if r.is_empty() { false } else { r.bool()? },
        })
    }
}

/// An established session on one connection.
pub struct Session {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    reader: FrameReader,
    pub session_id: i64,
    pub timeout_ms: i32,
    next_xid: i32,
    last_send: Instant,
    ping_interval: Duration,
}

impl Session {
    /// Connects and completes the handshake within `within`.
    pub async fn connect(addr: &str, timeout_ms: i32, within: Duration) -> Result<Session, ClientError> {
        let deadline = tokio::time::Instant::now() + within;
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await.map_err(|_| ClientError::Timeout("TCP connect"))??;
        stream.set_nodelay(true)?;
        let (rd, mut wr) = stream.into_split();
        let frame = connect_frame(timeout_ms);
        tokio::time::timeout_at(deadline, wr.write_all(&frame)).await.map_err(|_| ClientError::Timeout("handshake write"))??;
        let mut reader = FrameReader { rd, buf: Vec::new(), pos: 0 };
        let resp = tokio::time::timeout_at(deadline, reader.next()).await.map_err(|_| ClientError::Timeout("ConnectResponse"))??;
        let resp = ConnectResponse::decode(&resp)?;
        if resp.timeout_ms <= 0 {
            return Err(ClientError::SessionRejected);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer_task(wr, rx));
        Ok(Session {
            tx,
            reader,
            session_id: resp.session_id,
            timeout_ms: resp.timeout_ms,
            next_xid: 1,
            last_send: Instant::now(),
            ping_interval: Duration::from_millis((resp.timeout_ms as u64 / 3).max(1)),
        })
    }

    fn send_frame(&mut self, xid: i32, opcode: i32, body: impl FnOnce(&mut Vec<u8>)) -> Result<(), ClientError> {
        let mut w = Vec::with_capacity(96);
        append_request(&mut w, xid, opcode, body);
        self.tx.send(w).map_err(|_| ClientError::Closed)?;
        self.last_send = Instant::now();
        Ok(())
    }

    /// Queues a request; returns its xid. Replies come back in send order.
    pub fn send(&mut self, opcode: i32, body: impl FnOnce(&mut Vec<u8>)) -> Result<i32, ClientError> {
        let xid = self.next_xid;
        self.next_xid = if self.next_xid == i32::MAX { 1 } else { self.next_xid + 1 };
        self.send_frame(xid, opcode, body)?;
        Ok(xid)
    }

    fn ping(&mut self) -> Result<(), ClientError> {
        self.send_frame(xid::PING, op::PING, |_| {})
    }

    /// The next reply or notification. Ping replies are consumed here, and a
    /// ping is sent whenever nothing was sent for a third of the session
    /// timeout. Fails with `Timeout` once `deadline` passes.
    pub async fn recv(&mut self, deadline: Option<Instant>) -> Result<Incoming, ClientError> {
        loop {
            if let Some(frame) = self.reader.parse()? {
                let mut r = Reader::new(&frame);
                let xid = r.i32()?;
                let zxid = r.i64()?;
                let err = r.i32()?;
                match xid {
                    xid::PING => continue,
                    xid::NOTIFICATION => {
                        let ev = WatchEvent { event_type: r.i32()?, state: r.i32()?, path: r.string()? };
                        return Ok(Incoming::Watch(ev));
                    }
                    _ => return Ok(Incoming::Reply(Reply { xid, zxid, err, frame })),
                }
            }
            let ping_at = self.last_send + self.ping_interval;
            let wake = match deadline {
                Some(d) if d < ping_at => d,
                _ => ping_at,
            };
            match tokio::time::timeout_at(wake.into(), self.reader.fill()).await {
                Ok(res) => res?,
                Err(_) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(ClientError::Timeout("reply"));
                    }
                    if Instant::now() >= self.last_send + self.ping_interval {
                        self.ping()?;
                    }
                }
            }
        }
    }

    /// The reply to `xid`, skipping notifications; any other reply is a protocol error.
    pub async fn reply_to(&mut self, xid: i32, within: Duration) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + within;
        loop {
            match self.recv(Some(deadline)).await? {
                Incoming::Watch(_) => continue,
                Incoming::Reply(r) if r.xid == xid => return Ok(r),
                Incoming::Reply(r) => return Err(ClientError::Protocol(format!("reply xid {} while waiting for {xid}", r.xid))),
            }
        }
    }

    /// Sends one request and waits for its reply.
    pub async fn call(&mut self, opcode: i32, body: impl FnOnce(&mut Vec<u8>), within: Duration) -> Result<Reply, ClientError> {
        let xid = self.send(opcode, body)?;
        self.reply_to(xid, within).await
    }

    /// closeSession, waiting for its reply (the server then closes the socket).
    pub async fn close(mut self, within: Duration) -> Result<i32, ClientError> {
        let reply = self.call(op::CLOSE_SESSION, |_| {}, within).await?;
        Ok(reply.err)
    }
}

fn world_acl() -> &'static [u8] {
    static ACL: OnceLock<Vec<u8>> = OnceLock::new();
    ACL.get_or_init(|| {
        let mut w = Vec::new();
        proto::write_acls(&mut w, &[Acl::world_all()]);
        w
    })
}

/// Request bodies, jute-encoded.
pub mod body {
    use super::*;

    pub fn create(w: &mut Vec<u8>, path: &str, data: &[u8], flags: i32) {
        w.put_string(path);
        w.put_buffer(Some(data));
        w.put_bytes(world_acl());
        w.put_i32(flags);
    }

    pub fn delete(w: &mut Vec<u8>, path: &str, version: i32) {
        w.put_string(path);
        w.put_i32(version);
    }

    /// exists and getData.
    pub fn path_watch(w: &mut Vec<u8>, path: &str, watch: bool) {
        w.put_string(path);
        w.put_bool(watch);
    }

    pub fn set_data(w: &mut Vec<u8>, path: &str, data: &[u8], version: i32) {
        w.put_string(path);
        w.put_buffer(Some(data));
        w.put_i32(version);
    }

    /// A multi of create + setData + delete on one path: leaves the tree as it was.
    pub fn multi_create_set_delete(w: &mut Vec<u8>, path: &str, data: &[u8]) {
        proto::write_multi_header(w, op::CREATE, false, -1);
        create(w, path, data, flags::PERSISTENT);
        proto::write_multi_header(w, op::SET_DATA, false, -1);
        set_data(w, path, data, -1);
        proto::write_multi_header(w, op::DELETE, false, -1);
        delete(w, path, -1);
        proto::write_multi_header(w, -1, true, -1);
    }
}

/// The first real error inside a MultiResponse (0 if every op succeeded).
/// RUNTIMEINCONSISTENCY results only mark the ops rolled back with the failed one.
pub fn multi_error(body: &[u8]) -> Result<i32, DecodeError> {
    let mut r = Reader::new(body);
    let mut first = 0;
    loop {
        let op_type = r.i32()?;
        let done = r.bool()?;
        let _err = r.i32()?;
        if done {
            return Ok(first);
        }
        match op_type {
            op::CREATE => {
                r.string()?;
            }
            op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                r.string()?;
                proto::read_stat(&mut r)?;
            }
            op::SET_DATA => {
                proto::read_stat(&mut r)?;
            }
            op::DELETE | op::CHECK => {}
            op::ERROR => {
                let e = r.i32()?;
                if first == 0 && e != 0 && e != -2 {
                    first = e;
                }
            }
            other => return Err(DecodeError::BadValue("multi result type", other as i64)),
        }
    }
}

/// Milliseconds until a getData of `path` on `server` succeeded, trying a fresh
/// session every 20 ms (connection refused, NONODE, not yet serving: try again).
pub async fn wait_read(server: &str, path: &str, timeout: Duration) -> Result<u128, String> {
    let start = Instant::now();
    let mut last_err = String::new();
    while start.elapsed() < timeout {
        let attempt = async {
            let mut s = Session::connect(server, 30_000, Duration::from_secs(2)).await.map_err(|e| e.to_string())?;
            let r = s.call(op::GET_DATA, |w| body::path_watch(w, path, false), Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
            let _ = s.close(Duration::from_secs(2)).await;
            if r.err == 0 {
                Ok(())
            } else {
                Err(format!("getData {path} answered {}", error_name(r.err)))
            }
        };
        match attempt.await {
            Ok(()) => return Ok(start.elapsed().as_millis()),
            Err(e) => last_err = e,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("no successful read of {path} within {timeout:?}; last error: {last_err}"))
}

/// A four-letter word over a fresh connection; the whole reply as text.
pub async fn four_letter(addr: &str, word: &str, within: Duration) -> Result<String, ClientError> {
    let fut = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(word.as_bytes()).await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok::<_, ClientError>(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(within, fut).await.map_err(|_| ClientError::Timeout("four-letter reply"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_cover_common_codes() {
        assert_eq!(error_name(-101), "NONODE");
        assert_eq!(error_name(-110), "NODEEXISTS");
        assert_eq!(error_name(-112), "SESSIONEXPIRED");
        assert_eq!(error_name(-9999), "UNKNOWN");
    }

    #[test]
    fn connect_response_with_and_without_read_only() {
        let mut w = Vec::new();
        w.put_i32(0);
        w.put_i32(10000);
        w.put_i64(42);
        w.put_buffer(Some(&[7; 16]));
        let short = ConnectResponse::decode(&w).unwrap();
        assert_eq!(short.session_id, 42);
        assert!(!short.read_only);
        w.put_bool(true);
        assert!(ConnectResponse::decode(&w).unwrap().read_only);
    }

    #[test]
    fn multi_results_report_first_real_error() {
        let mut ok = Vec::new();
        proto::write_multi_header(&mut ok, op::CREATE, false, 0);
        ok.put_string("/a");
        proto::write_multi_header(&mut ok, op::SET_DATA, false, 0);
        proto::write_stat(&mut ok, &proto::Stat::default());
        proto::write_multi_header(&mut ok, op::DELETE, false, 0);
        proto::write_multi_header(&mut ok, -1, true, -1);
        assert_eq!(multi_error(&ok).unwrap(), 0);

        let mut failed = Vec::new();
        for e in [0, -110, -2] {
            proto::write_multi_header(&mut failed, op::ERROR, false, e);
            failed.put_i32(e);
        }
        proto::write_multi_header(&mut failed, -1, true, -1);
        assert_eq!(multi_error(&failed).unwrap(), -110);
    }

    #[test]
    fn multi_body_is_decodable_by_warden_core() {
        let mut w = Vec::new();
        body::multi_create_set_delete(&mut w, "/m", b"xy");
        match proto::Request::decode(op::MULTI, &mut Reader::new(&w)).unwrap() {
            proto::Request::Multi(ops) => assert_eq!(ops.len(), 3),
            other => panic!("{other:?}"),
        }
    }
}
