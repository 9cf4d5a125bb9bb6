//! The request processor actor: owns the data tree and session table (the
//! pure `Core`), assigns zxids, hands new transactions to the log, and passes
//! every result to the dispatcher in order — holding results back until the
//! transactions before them are durable. It also drives fuzzy snapshots and
//! the container/TTL reaper.

use crate::dispatcher::Dispatcher;
use crate::messages::{Connect, Dispatch, Expire, SnapshotPart, Submit, Synced, TakeSnapshot, ToConn, Tracking};
use crate::snapshotter::Snapshotter;
use crate::stats::ServerStats;
use crate::storage::TxnLog;
use crate::tracker::Tracker;
use actix::prelude::*;
use slog::{error, info, Logger};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warden_core::config::Config;
use warden_core::fourlw::ServerSnapshot;
use warden_core::server::{ConnectOutcome, Core, RequestCtx};
use warden_core::snapshot::SnapshotWriter;

/// Nodes serialized per snapshot step; requests are served between steps.
const SNAPSHOT_CHUNK_NODES: usize = 5000;

pub fn wall_clock_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// ZooKeeper's snapshot spacing: snapCount/2 plus a random part, so members
/// of an ensemble do not all snapshot at once.
fn snapshot_threshold(snap_count: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let half = (snap_count / 2).max(1);
    half + random % half
}

pub struct Processor {
    core: Core,
    dispatcher: Addr<Dispatcher>,
    tracker: Addr<Tracker>,
    txn_log: TxnLog,
    snapshotter: Addr<Snapshotter>,
    config: Arc<Config>,
    stats: Arc<ServerStats>,
    log: Logger,
    /// Highest zxid handed to the log, and highest the log made durable.
    logged_zxid: i64,
    synced_zxid: i64,
    /// Results waiting for the log, with the zxid they wait for.
    held: VecDeque<(i64, Dispatch)>,
    txns_since_snapshot: u64,
    next_snapshot_after: u64,
    snapshot: Option<SnapshotWriter>,
}

impl Processor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(core: Core, dispatcher: Addr<Dispatcher>, tracker: Addr<Tracker>, txn_log: TxnLog, snapshotter: Addr<Snapshotter>, config: Arc<Config>, stats: Arc<ServerStats>, log: Logger) -> Processor {
        let zxid = core.last_zxid();
        let next_snapshot_after = snapshot_threshold(config.snap_count);
        Processor { core, dispatcher, tracker, txn_log, snapshotter, config, stats, log, logged_zxid: zxid, synced_zxid: zxid, held: VecDeque::new(), txns_since_snapshot: 0, next_snapshot_after, snapshot: None }
    }

    /// Sends new transactions to the log; starts a snapshot when due.
    fn flush_log(&mut self, ctx: &mut Context<Self>) {
        let entries = self.core.take_unlogged();
        let Some(last) = entries.last() else { return };
        self.logged_zxid = last.hdr.zxid;
        self.txns_since_snapshot += entries.len() as u64;
        self.txn_log.append(entries);
        if self.snapshot.is_none() && self.txns_since_snapshot >= self.next_snapshot_after {
            self.start_snapshot(ctx);
        }
    }

    /// Delivers now, or after the log has made every earlier transaction durable.
    fn emit(&mut self, d: Dispatch) {
        if self.logged_zxid > self.synced_zxid {
            self.held.push_back((self.logged_zxid, d));
        } else {
            self.dispatcher.do_send(d);
        }
    }

    fn start_snapshot(&mut self, ctx: &mut Context<Self>) {
        self.txns_since_snapshot = 0;
        self.next_snapshot_after = snapshot_threshold(self.config.snap_count);
        // New transactions go to a new segment, so old ones can be purged later.
        self.txn_log.roll();
        let (writer, bytes) = SnapshotWriter::begin(&self.core.db);
        info!(self.log, "starting fuzzy snapshot"; "zxid" => format!("{:#x}", writer.zxid));
        self.snapshotter.do_send(SnapshotPart::Begin { zxid: writer.zxid, bytes });
        self.snapshot = Some(writer);
        self.snapshot_step(ctx);
    }

    fn snapshot_step(&mut self, ctx: &mut Context<Self>) {
        let Some(writer) = self.snapshot.as_mut() else { return };
        let bytes = writer.next_chunk(&self.core.db.tree, SNAPSHOT_CHUNK_NODES);
        let done = writer.is_done();
        let part = if done { SnapshotPart::End(bytes) } else { SnapshotPart::Chunk(bytes) };
        self.snapshotter
            .send(part)
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(Ok(())) if done => act.snapshot = None,
                Ok(Ok(())) => act.snapshot_step(ctx),
                Ok(Err(e)) => {
                    error!(act.log, "snapshot failed; will retry at the next snapCount"; "error" => e);
                    act.snapshot = None;
                }
                Err(e) => {
                    error!(act.log, "snapshotter unreachable"; "error" => %e);
                    act.snapshot = None;
                }
            })
            .spawn(ctx);
    }

    /// ContainerManager: delete empty containers and idle TTL nodes, at most
    /// znode.container.maxPerMinute per minute.
    fn reap(&mut self, ctx: &mut Context<Self>) {
        let interval_ms = self.config.container_check_interval_ms.max(1);
        let budget = ((self.config.container_max_per_minute as u64 * interval_ms) / 60_000).max(1) as usize;
        let now = wall_clock_ms();
        for path in self.core.reap_candidates(now).into_iter().take(budget) {
            if let Some(output) = self.core.reap(&path, now) {
                info!(self.log, "reaped container or TTL node"; "path" => &path);
                self.flush_log(ctx);
                self.emit(Dispatch::Output { conn: None, session_id: 0, output, received: None });
            }
        }
    }
}

impl Actor for Processor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = Duration::from_millis(self.config.container_check_interval_ms.max(1));
        ctx.run_interval(every, |act, ctx| act.reap(ctx));
    }
}

impl Handler<Connect> for Processor {
    type Result = ();

    fn handle(&mut self, msg: Connect, ctx: &mut Context<Self>) {
        match self.core.connect(&msg.request, wall_clock_ms()) {
            ConnectOutcome::Accepted { frame, session_id, timeout_ms, created } => {
                info!(self.log, "session established"; "session" => format!("0x{session_id:x}"), "timeout_ms" => timeout_ms, "new" => created, "conn" => msg.conn_id);
                self.flush_log(ctx);
                self.tracker.do_send(Tracking::Track { session_id, timeout_ms });
                self.emit(Dispatch::Attach { session_id, conn_id: msg.conn_id, conn: msg.conn, timeout_ms, frame });
            }
            ConnectOutcome::Expired { frame } => {
                info!(self.log, "refused reattach to an unknown or expired session, or with a wrong password"; "session" => format!("0x{:x}", msg.request.session_id));
                msg.conn.do_send(ToConn::Close { frame: Some(frame), reason: "session expired" });
            }
            ConnectOutcome::Refused(why) => {
                info!(self.log, "refused connection"; "reason" => &why);
                msg.conn.do_send(ToConn::Close { frame: None, reason: "client zxid ahead of server" });
            }
        }
    }
}

impl Handler<Submit> for Processor {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        let rctx = RequestCtx { session_id: msg.session_id, xid: msg.xid, auth: &msg.auth, now_ms: wall_clock_ms() };
        let output = self.core.process(&rctx, &msg.request);
        if let Some(closed) = output.session_closed {
            info!(self.log, "session closed by client"; "session" => format!("0x{closed:x}"));
            self.tracker.do_send(Tracking::Untrack { session_id: closed });
        }
        self.flush_log(ctx);
        self.emit(Dispatch::Output { conn: Some(msg.conn), session_id: msg.session_id, output, received: Some(msg.received) });
    }
}

impl Handler<Expire> for Processor {
    type Result = ();

    fn handle(&mut self, msg: Expire, ctx: &mut Context<Self>) {
        if let Some(output) = self.core.expire(msg.session_id, wall_clock_ms()) {
            info!(self.log, "expiring session"; "session" => format!("0x{:x}", msg.session_id));
            self.flush_log(ctx);
            self.emit(Dispatch::Output { conn: None, session_id: msg.session_id, output, received: None });
        }
    }
}

impl Handler<Synced> for Processor {
    type Result = ();

    fn handle(&mut self, msg: Synced, _: &mut Context<Self>) {
        self.synced_zxid = self.synced_zxid.max(msg.zxid);
        self.stats.fsyncs.store(msg.fsyncs, Relaxed);
        while self.held.front().is_some_and(|(zxid, _)| *zxid <= self.synced_zxid) {
            let (_, d) = self.held.pop_front().unwrap();
            self.dispatcher.do_send(d);
        }
    }
}

impl Handler<TakeSnapshot> for Processor {
    type Result = MessageResult<TakeSnapshot>;

    fn handle(&mut self, msg: TakeSnapshot, _: &mut Context<Self>) -> Self::Result {
        match msg.0 {
            "srst" => self.stats.reset_server(),
            "crst" => self.stats.reset_connections(),
            _ => {}
        }
        let db = &self.core.db;
        let mut s = ServerSnapshot {
            warden_version: env!("CARGO_PKG_VERSION").to_string(),
            mode: "standalone".into(),
            last_zxid: db.last_zxid(),
            node_count: db.tree.node_count() as u64,
            ephemerals_count: db.tree.ephemeral_count() as u64,
            approximate_data_size: db.tree.approximate_data_size(),
            global_sessions: db.sessions().len() as u64,
            conf: crate::node::zookeeper_conf(&self.config),
            env: crate::node::environment(),
            sessions: db.sessions().iter().map(|(k, v)| (*k, *v)).collect(),
            ephemerals: db.tree.ephemerals().iter().map(|(k, v)| (*k, v.iter().cloned().collect())).collect(),
            data_dir_bytes: crate::node::dir_size(&crate::storage::version_dir(&self.config.data_dir)),
            log_dir_bytes: crate::node::dir_size(&crate::storage::version_dir(&self.config.data_log_dir)),
            ..Default::default()
        };
        self.stats.fill(&mut s);
        MessageResult(s)
    }
}
