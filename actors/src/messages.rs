//! The typed messages actors exchange.

use actix::prelude::*;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;
use warden_core::fourlw::ServerSnapshot;
use warden_core::proto::{ConnectRequest, Id, Request};
use warden_core::server::Output;

/// How other actors reach one client connection: its session handler's
/// counted mailbox, and its write side for frames (shared, one per connection).
pub type ConnAddr = Arc<ConnHandle>;

pub struct ConnHandle {
    pub mailbox: crate::mailbox::Inbox<ToConn>,
    pub out: crate::outbox::Outbox,
    pub info: Arc<crate::stats::ConnInfo>,
    /// The I/O thread the connection lives on.
    pub io: IoThread,
    /// Requests submitted whose replies are not yet on the write queue: a
    /// read is answered on the I/O thread only at zero (`LocalReads`).
    pub unanswered: std::sync::atomic::AtomicU32,
    /// Set once the session has a watch here: its reads then also wait for
    /// watch events in flight.
    pub watching: std::sync::atomic::AtomicBool,
}

/// One of the `warden.ioThreads` arbiters, with its place in their list.
#[derive(Clone)]
pub struct IoThread {
    pub index: usize,
    pub handle: actix_rt::ArbiterHandle,
}

impl ConnHandle {
    pub fn new(mailbox: crate::mailbox::Inbox<ToConn>, out: crate::outbox::Outbox, info: Arc<crate::stats::ConnInfo>, io: IoThread) -> ConnHandle {
        ConnHandle { mailbox, out, info, io, unanswered: Default::default(), watching: Default::default() }
    }

    pub fn do_send(&self, msg: ToConn) {
        self.mailbox.do_send(msg);
    }
}

/// Connection -> processor: a handshake to create or reattach a session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub conn: ConnAddr,
    pub conn_id: u64,
    pub request: ConnectRequest,
}

/// One client request, with the connection's identities.
pub struct Submit {
    pub conn: ConnAddr,
    pub session_id: i64,
    pub xid: i32,
    pub request: Request,
    pub auth: Arc<[Id]>,
    pub received: Instant,
}

/// Connection -> processor: the requests decoded from one read of the
/// socket, in order (one message per read, not per request, so a pipelining
/// client costs one cross-thread hop per read). Counts as its length in the
/// processor's depth.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Submits(pub Vec<Submit>);

/// Connection -> processor (warden.linearizableReads): tell me, with
/// `ToConn::ReadIndex { batch, index: Some(zxid) }`, once the tree has applied `zxid`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AwaitApplied {
    pub zxid: i64,
    pub batch: u64,
    pub conn: ConnAddr,
}

/// Anything -> connection.
#[derive(Message)]
#[rtype(result = "()")]
pub enum ToConn {
    /// The handshake succeeded (its reply is already written): serve queued requests.
    Connected { session_id: i64, timeout_ms: i32 },
    /// The client does not read what is written to it: reset the connection.
    TooSlow,
    /// Write `frame` if any, flush, and close.
    Close { frame: Option<Vec<u8>>, reason: &'static str },
    /// warden.linearizableReads: reads waiting here for `batch` (and
    /// earlier) have read index `index`; None: refused (no leader).
    ReadIndex { batch: u64, index: Option<i64> },
}

/// Processor -> watch dispatcher: what one handled message produced, in zxid
/// order, so notifications always precede replies that observe the change
/// behind them. Counts as its length in the dispatcher's depth.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Dispatches(pub Vec<Dispatch>);

/// One result for the dispatcher to deliver.
pub enum Dispatch {
    /// `received`: when and which operation arrived and whether it wrote, for latency metrics.
    Output {
        conn: Option<ConnAddr>,
        session_id: i64,
        output: Output,
        received: Option<(Instant, &'static str, bool)>,
    },
    Attach {
        session_id: i64,
        conn_id: u64,
        conn: ConnAddr,
        timeout_ms: i32,
        frame: Vec<u8>,
    },
}

/// Connection -> dispatcher when a connection ends: its watches go with it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    pub session_id: i64,
    pub conn_id: u64,
}

/// Session tracker messages.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Tracking {
    /// Start or restart a session's expiry clock with this timeout.
    Track {
        session_id: i64,
        timeout_ms: i32,
    },
    /// These sessions' clients were heard from (one I/O thread's turn).
    Touches(Vec<i64>),
    Untrack {
        session_id: i64,
    },
    /// A local session (localSessionsEnabled, read-only mode): this member
    /// expires it whatever its role.
    TrackLocal {
        session_id: i64,
        timeout_ms: i32,
    },
    /// Ensemble role change: only the leader (or a standalone server)
    /// expires sessions; a learner forwards its touches to the leader.
    Mode {
        expire: bool,
        forward_to: Option<crate::mailbox::Inbox<Touches>>,
    },
}

/// Tracker -> processor on a learner: sessions its clients kept alive.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Touches(pub Vec<i64>);

/// Processor -> dispatcher: the server stops serving (no leader); close
/// every client connection so clients move to a serving member.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseAll;

/// Tracker -> processor: the session timed out.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Expire {
    pub session_id: i64,
}

/// Who the tracker reports expiries to, and asks to re-send every session
/// after a restart (set once both actors exist).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ExpireTo {
    pub expire: crate::mailbox::Inbox<Expire>,
    pub retrack: crate::mailbox::Inbox<Retrack>,
}

/// Tracker -> processor: the tracker restarted empty; send it every
/// session and the expiry mode again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retrack;

/// Anyone -> processor: the statistics four-letter words report, for the
/// named word (`srst`/`crst` also reset counters). Not a data snapshot: that
/// is `SnapshotNow`.
#[derive(Message)]
#[rtype(result = "ServerSnapshot")]
pub struct ReportStats(pub &'static str);

/// Log thread -> processor: everything up to `zxid` is durable.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Synced {
    pub zxid: i64,
    /// fsyncs done so far, for metrics.
    pub fsyncs: u64,
    /// Log operations (append batches, truncations, snapshot installs)
    /// completed so far, for Zab's per-operation completions.
    pub ops: u64,
}

/// Processor -> snapshotter: the pieces of one snapshot, in order.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub enum SnapshotPart {
    Begin {
        zxid: i64,
        bytes: Vec<u8>,
    },
    /// Nodes copied out of the tree; the snapshotter encodes them.
    Chunk(Vec<warden_core::snapshot::SnapItem>),
    /// The last items; the snapshotter makes the file durable and visible.
    End(Vec<warden_core::snapshot::SnapItem>),
}

/// Stop signal -> processor: `done` is told once no snapshot is being
/// written, so a graceful stop does not throw away one begun just before it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FinishSnapshot {
    pub done: tokio::sync::oneshot::Sender<()>,
}

/// Admin -> processor: start a snapshot now (AdminServer's `snapshot`);
/// answers with the zxid it covers, or None if one is already running.
#[derive(Message)]
#[rtype(result = "Option<i64>")]
pub struct SnapshotNow;

/// Admin -> dispatcher: each session's watched paths.
#[derive(Message)]
#[rtype(result = "std::collections::HashMap<i64, Vec<String>>")]
pub struct WatchData;

/// Connection -> dispatcher: the text of `wchs`, `wchc` or `wchp`.
#[derive(Message)]
#[rtype(result = "String")]
pub struct WatchReport(pub &'static str);

/// Processor -> snapshotter: encode the next piece of a SNAP streamed to a
/// learner; answers the framed `Message::SnapChunk` (ready for the peer
/// link) with the stream's crc32c after it and the piece's length.
#[derive(Message)]
#[rtype(result = "SnapChunkFrame")]
pub struct EncodeSnapChunk {
    /// Bytes that go before the items (the file header, in the first piece).
    pub header: Vec<u8>,
    pub items: Vec<warden_core::snapshot::SnapItem>,
    /// crc32c of the stream so far.
    pub crc: u32,
}

pub struct SnapChunkFrame {
    pub frame: Bytes,
    pub crc: u32,
    pub bytes: u64,
}

/// What `srvr`/`mntr` report of the quorum, as the broadcast actor last
/// published it (it writes, the processor only reads).
pub type QuorumView = Arc<std::sync::Mutex<Option<warden_core::fourlw::QuorumStatus>>>;

/// Processor (and start-up) -> broadcast actor.
#[derive(Message)]
#[rtype(result = "()")]
pub enum ToZab {
    /// Start Zab: links, the quorum listener, the election.
    Start { processor: crate::mailbox::Inbox<FromZab>, reads: Arc<crate::lin_reads::ReadIndexBoard> },
    /// Leader: writes the processor numbered (`zab::leader::zxid_after`) and
    /// prepared, in `term` (from `FromZab::Serving`).
    Propose { term: u64, entries: Vec<Arc<warden_core::txn::LogEntry>> },
    /// Learner: a forwarded request or touches, for the leader.
    ToLeader(warden_core::zab::Message),
    /// Leader: the tree digest, for every learner.
    ToLearners(warden_core::zab::Message),
    /// After a SNAP: the config found in the leader's tree.
    ConfigFromTree(Vec<u8>),
    /// A snapshot began: new transactions go to a new log segment.
    RollLog,
    /// Election actor: the round decided; lead or follow.
    Elected(warden_core::zab::Vote),
    /// Election actor: a newer committed config from a peer.
    ConfigAdopted(Vec<u8>),
    /// Election actor: it restarted empty and needs a round.
    ElectionRestarted,
    /// warden.linearizableReads: a read index for the processor's reads `id`.
    ReadIndex { id: u64 },
}

/// Broadcast actor (and start-up) -> election actor.
#[derive(Message)]
#[rtype(result = "()")]
pub enum ToElection {
    Start {
        broadcast: crate::mailbox::Inbox<ToZab>,
    },
    /// The peer links, whenever they change.
    Links(std::collections::BTreeMap<u64, crate::mailbox::Inbox<SendFrame>>),
    /// The replica looks for a leader: run a round from this history.
    Elect(warden_core::zab::Look),
    /// The replica activated a config.
    ConfigActive {
        voters: std::collections::BTreeSet<u64>,
        observers: std::collections::BTreeSet<u64>,
        version: i64,
        data: Vec<u8>,
    },
    /// After a restart: start over with the config in force.
    Reset(Box<warden_core::zab::Config>),
}

/// Broadcast actor -> processor: what Zab decided, in order. Committed
/// transactions come before a snapshot request, so the tree the processor
/// copies for it is exactly at its zxid.
#[derive(Message)]
#[rtype(result = "()")]
pub enum FromZab {
    /// Synced with a quorum: serve clients. A leader numbers its writes
    /// after `last_zxid` and tags them with `term`.
    Serving { leader: u64, me: u64, state: warden_core::zab::PeerState, epoch: u32, last_zxid: i64, term: u64 },
    /// While serving, the role changed (a reconfig promoted an observer).
    Role(warden_core::zab::PeerState),
    /// Stop serving; an election runs.
    LookForLeader { reason: &'static str },
    /// Committed transactions, in zxid order.
    Apply(Vec<warden_core::txn::LogEntry>),
    /// Leader: a learner needs the tree at `zxid`, streamed as SNAP frames
    /// into `out` (bounded: the link takes one when the socket took the last).
    SnapFor { to: u64, zxid: i64, out: tokio::sync::mpsc::Sender<Bytes> },
    /// Learner: the leader's snapshot replaces the tree once the log thread
    /// has made it durable (`ready` gives its file). The tree is fuzzy until
    /// the transactions up to `fuzzy_until` are applied.
    Install { zxid: i64, fuzzy_until: i64, ready: tokio::sync::oneshot::Receiver<Result<std::path::PathBuf, String>> },
    /// Reads `id` may be served once `zxid` is applied (a read index).
    ReadReady { id: u64, zxid: i64 },
    /// Reads `id` got no read index (this member stopped serving).
    ReadRefused { id: u64 },
    /// Leader: itself and the learners synced with it.
    SyncedLearners(std::collections::BTreeSet<u64>),
    /// Runtime traffic from a peer: a forwarded request, touches, a digest.
    FromPeer(warden_core::zab::Message),
}

/// Processor, broadcast or election actor -> peer link: one encoded message.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendFrame(pub Bytes);

/// Peer link -> broadcast and election actors: a connection came up, a
/// message arrived, the connection went down.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum PeerEvent {
    Up { peer: u64, gen: u64 },
    Msg { peer: u64, gen: u64, msg: warden_core::zab::Message },
    Down { peer: u64, gen: u64 },
}

/// Broadcast actor -> link: frames still being made (a SNAP streamed in
/// pieces). They are written as they come and frames sent after this wait
/// until the stream ends, so the link keeps command order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendStream(pub tokio::sync::mpsc::Receiver<Bytes>);

/// Processor -> link: drop the connection (Zab's CloseLink); a dialer redials.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reset;

/// A peer connection: plain TCP, or TLS over it (sslQuorum).
pub trait PeerIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> PeerIo for T {}
pub type PeerStream = Box<dyn PeerIo>;

/// Peer listener -> link: an accepted connection that said Hello, with any
/// bytes the peer sent right behind its Hello (read together with it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Adopt(pub PeerStream, pub bytes::BytesMut);

/// Peer listener -> broadcast actor: a connection that said Hello. The
/// broadcast actor owns the links (members come and go with reconfigs) and picks one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Incoming {
    pub from: u64,
    pub addr: String,
    pub stream: PeerStream,
    pub early: bytes::BytesMut,
}

/// Processor (or start-up / shutdown) -> auditor: events in the order they happened.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Audit(pub Vec<warden_core::audit::AuditEvent>);

/// Start-up timer -> snapshotter: run autopurge now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Purge;

/// Admin -> processor: walk the tree into `out` for a consistent backup
/// (`zkfiles::backup`); refused while another backup walks.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct TakeBackup {
    pub out: tokio::sync::mpsc::Sender<BackupPiece>,
}

/// Processor -> admin: the walk's pieces, then what was taken at its end.
pub enum BackupPiece {
    /// The walk's file header (first), then its items, in order.
    Header(Vec<u8>),
    Items(Vec<warden_core::snapshot::SnapItem>),
    Tail(Box<warden_core::zkfiles::backup::BackupTail>),
    Failed(String),
}

/// Admin -> processor: replace the data with `db`; answers the zxid it now stands at.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RestoreDatabase {
    pub db: warden_core::database::Database,
    pub reply: tokio::sync::oneshot::Sender<Result<i64, String>>,
}
